"""Mozilla DeepSpeech's alphabet file: one label a line, '#' comments, '\\#' for a literal '#'.

``Alphabet`` keeps Mozilla's ``ds_ctcdecoder`` methods (``Encode``, ``Decode``, ``GetSize``,
``Serialize`` ...) beside the Python ones the trainer uses. The CTC blank is not a label: it is id
``len(alphabet)``, the last class of the model's output.
"""
from __future__ import annotations

import collections
import os
import struct
from typing import Iterable


class AlphabetError(ValueError):
    pass


class Alphabet:
    """Labels <-> ids, from an alphabet file (Mozilla's ``Alphabet(config_path)``) or from labels."""

    def __init__(self, config_path: str | None = None, labels: Iterable[str] | None = None):
        if (config_path is None) == (labels is None):
            raise AlphabetError("give an alphabet file or a list of labels")
        self.labels = _read_labels(config_path) if config_path is not None else list(labels)
        where = f"{config_path}: " if config_path else ""
        if not self.labels:
            raise AlphabetError(f"{where}the alphabet has no labels")
        self._ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._ids) != len(self.labels):
            dupes = [k for k, n in collections.Counter(self.labels).items() if n > 1]
            raise AlphabetError(f"{where}duplicate labels in the alphabet: {dupes}")

    @classmethod
    def from_file(cls, path: str) -> "Alphabet":
        return cls(config_path=path)

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "Alphabet":
        return cls(labels=labels)

    @classmethod
    def from_transcripts(cls, transcripts: Iterable[str]) -> "Alphabet":
        """Every character used, most frequent first (how a Mandarin character alphabet is made)."""
        counts = collections.Counter()
        for text in transcripts:
            counts.update(text)
        return cls(labels=sorted(counts, key=lambda c: (-counts[c], c)))

    def to_file(self, path: str, comment: str = "") -> None:
        lines = [f"# {line}" for line in comment.splitlines()] if comment else []
        lines += ["\\#" if label == "#" else label for label in self.labels]
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and self.labels == other.labels

    @property
    def blank_id(self) -> int:
        return len(self.labels)

    def missing(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self._ids})

    def encode(self, text: str) -> list[int]:
        missing = self.missing(text)
        if missing:
            raise AlphabetError(f"characters not in the alphabet: {''.join(missing)!r}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.labels[i] for i in ids if 0 <= i < len(self.labels))

    # Mozilla's ds_ctcdecoder.Alphabet methods
    def CanEncodeSingle(self, label: str) -> bool:  # noqa: N802
        return label in self._ids

    def CanEncode(self, text: str) -> bool:  # noqa: N802
        return not self.missing(text)

    def EncodeSingle(self, label: str) -> int:  # noqa: N802
        return self.encode(label)[0]

    def Encode(self, text: str) -> list[int]:  # noqa: N802
        return self.encode(text)

    def DecodeSingle(self, label_id: int) -> str:  # noqa: N802
        return self.labels[label_id]

    def Decode(self, ids: Iterable[int]) -> str:  # noqa: N802
        return self.decode(ids)

    def GetSize(self) -> int:  # noqa: N802
        return len(self.labels)

    def Serialize(self) -> bytes:  # noqa: N802
        """Mozilla's binary form: uint16 count, then (uint16 id, uint16 length, UTF-8 label) each."""
        out = [struct.pack("<H", len(self.labels))]
        for i, label in enumerate(self.labels):
            raw = self._label_bytes(label)
            out.append(struct.pack("<HH", i, len(raw)) + raw)
        return b"".join(out)

    def _label_bytes(self, label: str) -> bytes:
        return label.encode("utf-8")

    @classmethod
    def Deserialize(cls, data: bytes) -> "Alphabet":  # noqa: N802
        (count,), pos, raw = struct.unpack_from("<H", data), 2, {}
        for _ in range(count):
            key, length = struct.unpack_from("<HH", data, pos)
            raw[key] = bytes(data[pos + 4:pos + 4 + length])
            pos += 4 + length
        if count == 255 and all(raw.get(i) == bytes([i + 1]) for i in range(count)):
            return UTF8Alphabet()  # a bytes-output model's alphabet, as Mozilla exports it
        try:
            return cls(labels=[raw[i].decode("utf-8") for i in range(count)])
        except (KeyError, UnicodeDecodeError) as err:
            raise AlphabetError(f"not a serialized alphabet ({err})") from None


class UTF8Alphabet(Alphabet):
    """Mozilla's bytes output mode: 255 labels, label i is the byte i + 1 (the blank is 255).

    ``decode`` keeps only whole, valid UTF-8 characters (see ``utf8_characters``): a transcript is
    always valid UTF-8 and never holds U+FFFD for bytes the model got wrong.
    """

    def __init__(self):
        super().__init__(labels=[chr(b) for b in range(1, 256)])

    def encode(self, text: str) -> list[int]:
        return [b - 1 for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(char for char, _ in utf8_characters(list(ids)))

    def missing(self, text: str) -> list[str]:
        return []

    def CanEncodeSingle(self, label: str) -> bool:  # noqa: N802
        return len(label.encode("utf-8")) == 1

    def DecodeSingle(self, label_id: int) -> str:  # noqa: N802
        return bytes([label_id + 1]).decode("latin-1")

    def _label_bytes(self, label: str) -> bytes:  # Mozilla serializes each label as its one raw byte
        return label.encode("latin-1")


def utf8_sequence_length(byte: int) -> int:
    """How many bytes the UTF-8 character that starts with ``byte`` has; 0: it cannot start one."""
    if byte < 0x80:
        return 1
    if 0xC2 <= byte <= 0xDF:
        return 2
    if 0xE0 <= byte <= 0xEF:
        return 3
    if 0xF0 <= byte <= 0xF4:
        return 4
    return 0  # a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF (F5-FF)


def utf8_characters(ids: list[int], timesteps: list[int] | None = None) -> list[tuple[str, int]]:
    """Byte labels (byte - 1) -> [(character, its first byte's timestep)], valid UTF-8 only.

    The one policy for bytes-mode output (greedy, beam search without a scorer, the client's
    metadata): a byte sequence that is not a whole valid character -- a stray continuation byte, a
    lead byte without its continuation bytes (also at the end), an overlong form or a surrogate -- is
    dropped, never shown as U+FFFD. Decoding resumes at the next byte that can start a character.
    """
    raw = [i + 1 for i in ids]
    steps = timesteps if timesteps is not None else range(len(raw))
    steps = list(steps)
    out, pos = [], 0
    while pos < len(raw):
        need = utf8_sequence_length(raw[pos]) if 1 <= raw[pos] <= 255 else 0
        chunk = raw[pos:pos + need] if need else []
        if need and len(chunk) == need and all(0x80 <= b <= 0xBF for b in chunk[1:]):
            try:
                out.append((bytes(chunk).decode("utf-8"), steps[pos]))
                pos += need
                continue
            except UnicodeDecodeError:  # overlong (E0 80..9F, F0 80..8F), surrogate, beyond U+10FFFF
                pass
        pos += 1
    return out


def _read_labels(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
    except OSError as err:
        raise AlphabetError(f"cannot read alphabet {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise AlphabetError(f"{path}: not a UTF-8 alphabet file ({err.reason})") from err
    if lines and lines[-1] == "":
        lines.pop()
    labels = []
    for line in lines:
        line = line[:-1] if line.endswith("\r") else line
        if line.startswith("#") or line == "":
            continue
        labels.append("#" if line == "\\#" else line)
    return labels
