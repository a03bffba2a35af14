"""Mozilla DeepSpeech's alphabet file: one label a line, '#' comments, '\\#' for a literal '#'."""
from __future__ import annotations

import collections
import os
from typing import Iterable


class AlphabetError(ValueError):
    pass


class Alphabet:
    """Labels <-> ids. The CTC blank is not a label: it is id ``len(alphabet)`` (the last class)."""

    def __init__(self, labels: Iterable[str]):
        self.labels = list(labels)
        if not self.labels:
            raise AlphabetError("the alphabet has no labels")
        self._ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._ids) != len(self.labels):
            dupes = [k for k, n in collections.Counter(self.labels).items() if n > 1]
            raise AlphabetError(f"duplicate labels in the alphabet: {dupes}")

    @classmethod
    def from_file(cls, path: str) -> "Alphabet":
        try:
            with open(path, encoding="utf-8", newline="") as f:
                lines = f.read().split("\n")
        except OSError as err:
            raise AlphabetError(f"cannot read alphabet {path}: {err.strerror}") from err
        if lines and lines[-1] == "":
            lines.pop()
        labels = []
        for line in lines:
            line = line[:-1] if line.endswith("\r") else line
            if line.startswith("#") or line == "":
                continue
            labels.append("#" if line == "\\#" else line)
        try:
            return cls(labels)
        except AlphabetError as err:
            raise AlphabetError(f"{path}: {err}") from err

    @classmethod
    def from_transcripts(cls, transcripts: Iterable[str]) -> "Alphabet":
        """Every character used, most frequent first (how a Mandarin character alphabet is made)."""
        counts = collections.Counter()
        for text in transcripts:
            counts.update(text)
        return cls(sorted(counts, key=lambda c: (-counts[c], c)))

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
