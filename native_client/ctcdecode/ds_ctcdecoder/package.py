"""The .scorer file: a KenLM binary, Mozilla DeepSpeech 0.9's scorer header and vocabulary FST, then ours.

Layout written here (format version 2; all integers little-endian). Mozilla's runtime
(``libdeepspeech.so``, ``DS_EnableExternalScorer``) reads parts 1-3 and stops after the FST; this
package reads the trailer (part 4), found from the end of the file::

    1. KenLM binary, verbatim (build_binary -v: no vocabulary strings, so the KenLM data ends
       exactly where KenLM's GetEndOfSearchOffset() says, which is where Mozilla seeks to)
    2. Mozilla's scorer header, 25 bytes at offset L = size of the KenLM binary:
         int32 0x54524945 (the C++ constant 'TRIE'; bytes b"EIRT")   int32 version 6
         uint8 bytes (UTF-8) mode: 1 every LM token is one character, 0 words
         float64 default alpha   float64 default beta      (the only copy of alpha, beta and mode)
    3. the vocabulary as an OpenFST ConstFst<StdArc> at offset L + 25, exactly as OpenFST 1.6.7's
       aligned ConstFst::Write lays it out (byte by byte in fst.py): header (version 1, flags
       IS_ALIGNED), zero padding to a 16-byte file offset, 20-byte states, padding, 16-byte arcs.
       A minimal deterministic acyclic acceptor, arcs sorted by label, states in topological order.
       Its paths are what Mozilla's generate_scorer_package puts there:
         word mode:  (alphabet id + 1) of each character, then (space id + 1): every word ends with
                     the space label, only the state after it is final. Words the alphabet cannot
                     spell, and <s>, <unk>, </s>, are left out.
         bytes mode: the UTF-8 bytes of the word, label = byte value (Mozilla's UTF8Alphabet id of a
                     byte b is b - 1, plus 1), no space after; every entry but <s>, <unk>, </s>.
    4. our trailer, at offset T (just after the FST's last arc):
         b"DS2SCORE"  uint32 version (2)  uint64 L (offset of Mozilla's header)
         uint32 n  the alphabet in Mozilla's Alphabet.Serialize() form (n bytes; 0: none given)
         uint64 n  the vocabulary as given: UTF-8 words joined by "\\n" (n bytes)
         uint64 T  b"DS2SCORE"                             (the last 16 bytes of the file)

Version 1 packages (written before Mozilla's layout) are read too: the KenLM binary, then
b"DS2SCORE" uint32 1, uint8 mode, 3 zero bytes, float64 alpha, beta, the alphabet and the vocabulary as
above, and the same last 16 bytes. Mozilla DeepSpeech 0.9 / Coqui STT scorers (parts 1-3 only) are read
with their vocabulary taken from the FST, as Mozilla's decoder does (their KenLM binary holds no words).
"""
from __future__ import annotations

import argparse
import logging
import mmap
import os
import struct
import sys
from dataclasses import dataclass

from .alphabet import Alphabet, AlphabetError, UTF8Alphabet
from .fst import FstError, const_fst_bytes, fst_words, minimal_dfa, read_const_fst

log = logging.getLogger("deepspeech.ctcdecode")

MAGIC = b"DS2SCORE"
VERSION = 2
KENLM_MAGIC = b"mmap lm "
MOZILLA_MAGIC = struct.pack("<i", 0x54524945)  # the C++ multi-character constant 'TRIE'
MOZILLA_VERSION = 6
MOZILLA_HEADER = struct.Struct("<4si?dd")  # magic, version, bytes mode, alpha, beta: 25 bytes
KENLM_ORDER_OFFSET = 88  # KenLM's binary header: Sanity (magic + checks), then the order byte
KENLM_HAS_VOCABULARY_OFFSET = 100  # FixedWidthParameters.has_vocabulary (set without build_binary -v)
SPECIAL_TOKENS = ("<s>", "<unk>", "</s>")  # never in Mozilla's FST


class ScorerError(ValueError):
    pass


@dataclass(frozen=True)
class ScorerPackage:
    path: str
    alpha: float
    beta: float
    utf8_mode: bool  # True: every LM token is one character (Mandarin); False: words
    vocabulary: tuple  # words (str) in our packages; FST label sequences in Mozilla's
    alphabet: Alphabet | None  # stored in our packages; None in Mozilla's
    mozilla: bool
    order: int  # the n of the n-gram model


def fst_labels(vocabulary: list[str], alphabet: Alphabet | None, utf8_mode: bool) -> list[tuple[int, ...]]:
    """The FST paths Mozilla's generate_scorer_package makes of a vocabulary (see the module doc).

    An alphabet without a space label gets no label after each word (Mozilla's tool would append
    label -1 there; such a word-mode scorer cannot work in Mozilla's decoder anyway).
    """
    words = [w for w in vocabulary if w not in SPECIAL_TOKENS]
    if utf8_mode:
        return [tuple(w.encode("utf-8")) for w in words if w]
    if alphabet is None:
        raise ScorerError("a word-mode scorer needs the alphabet")
    space = (alphabet.EncodeSingle(" ") + 1,) if alphabet.CanEncodeSingle(" ") else ()
    return [tuple(i + 1 for i in alphabet.encode(w)) + space for w in words if w and alphabet.CanEncode(w)]


def write_package(path: str, lm_path: str, vocabulary: list[str], alphabet: Alphabet | None,
                  alpha: float, beta: float, utf8_mode: bool) -> int:
    """Write a .scorer atomically (a partial file never replaces a good one); the FST's word count."""
    with open(lm_path, "rb") as f:
        lm = f.read()
    if not lm.startswith(KENLM_MAGIC) or len(lm) <= KENLM_HAS_VOCABULARY_OFFSET:
        raise ScorerError(f"{lm_path}: not a KenLM binary (build it with build_binary)")
    if lm[KENLM_HAS_VOCABULARY_OFFSET]:
        raise ScorerError(f"{lm_path}: the KenLM binary holds its vocabulary strings, which Mozilla's "
                          f"runtime would read as the scorer header; rebuild it with build_binary -v")
    labels = fst_labels(vocabulary, alphabet, utf8_mode)
    try:
        dfa = minimal_dfa(labels)
    except FstError as err:
        raise ScorerError(f"{path}: {err} (no vocabulary entry can be spelled with the alphabet)") from None
    header = MOZILLA_HEADER.pack(MOZILLA_MAGIC, MOZILLA_VERSION, utf8_mode, alpha, beta)
    fst = const_fst_bytes(dfa, len(lm) + len(header))
    serialized = alphabet.Serialize() if alphabet is not None else b""
    words = "\n".join(vocabulary).encode("utf-8")
    trailer = (MAGIC + struct.pack("<IQ", VERSION, len(lm)) + struct.pack("<I", len(serialized)) + serialized
               + struct.pack("<Q", len(words)) + words
               + struct.pack("<Q", len(lm) + len(header) + len(fst)) + MAGIC)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        for part in (lm, header, fst, trailer):
            f.write(part)
    os.replace(tmp, path)
    return len(set(labels))


def read_package(path: str) -> ScorerPackage:
    """Read the settings and vocabulary of one of our packages or of a Mozilla/Coqui scorer."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not data[:len(KENLM_MAGIC)] == KENLM_MAGIC:
                raise ScorerError(f"{path}: not a scorer (it does not start with a KenLM binary)")
            order = data[KENLM_ORDER_OFFSET]
            if data[-len(MAGIC):] == MAGIC:
                return _read_ours(path, data, order)
            return _read_mozilla(path, data, order)
    except FileNotFoundError:
        raise ScorerError(f"{path}: scorer file not found") from None
    except (OSError, ValueError) as err:  # mmap of an empty file, unreadable file
        if isinstance(err, ScorerError):
            raise
        if isinstance(err, FstError):
            raise ScorerError(f"{path}: {err}") from None
        raise ScorerError(f"{path}: cannot read the scorer ({err})") from err
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ScorerError(f"{path}: truncated or corrupt scorer ({err})") from err


def _trailer_start(path: str, data) -> int:
    (start,) = struct.unpack_from("<Q", data, len(data) - len(MAGIC) - 8)
    if start <= 0 or data[start:start + len(MAGIC)] != MAGIC:
        raise ScorerError(f"{path}: truncated or corrupt scorer (bad header offset)")
    return start


def _mozilla_header_at(path: str, data, at: int) -> tuple[bool, float, float]:
    magic, version, utf8, alpha, beta = MOZILLA_HEADER.unpack_from(data, at)
    if magic != MOZILLA_MAGIC or version != MOZILLA_VERSION:
        raise ScorerError(f"{path}: truncated or corrupt scorer (no Mozilla header at offset {at})")
    return utf8, alpha, beta


def _read_ours(path: str, data, order: int) -> ScorerPackage:
    pos = _trailer_start(path, data) + len(MAGIC)
    (version,) = struct.unpack_from("<I", data, pos)
    if version == 1:
        (mode,) = struct.unpack_from("<B3x", data, pos + 4)
        alpha, beta = struct.unpack_from("<dd", data, pos + 8)
        utf8, pos = bool(mode), pos + 24
    elif version == VERSION:
        (header,) = struct.unpack_from("<Q", data, pos + 4)
        utf8, alpha, beta = _mozilla_header_at(path, data, header)
        pos += 12
    else:
        raise ScorerError(f"{path}: scorer format version {version}, this decoder reads 1 and {VERSION}")
    (n,) = struct.unpack_from("<I", data, pos)
    alphabet = Alphabet.Deserialize(data[pos + 4:pos + 4 + n]) if n else None
    (m,) = struct.unpack_from("<Q", data, pos + 4 + n)
    pos += n + 12
    if pos + m > len(data) - len(MAGIC) - 8:
        raise ScorerError(f"{path}: truncated or corrupt scorer (vocabulary runs past the end)")
    words = data[pos:pos + m].decode("utf-8")
    return ScorerPackage(path, alpha, beta, utf8, tuple(words.split("\n")) if words else (),
                         alphabet, mozilla=False, order=order)


def _mozilla_header(path: str, data) -> int:
    """Where a Mozilla scorer's header starts (right after the KenLM binary)."""
    start = data.find(MOZILLA_MAGIC + struct.pack("<i", MOZILLA_VERSION))
    if start < 0:
        if data.find(MOZILLA_MAGIC) >= 0:
            raise ScorerError(f"{path}: a Mozilla scorer of an unsupported version (this reads "
                              f"version {MOZILLA_VERSION})")
        raise ScorerError(f"{path}: a bare KenLM model or a truncated scorer: no scorer header after "
                          f"the language model (package it with generate_scorer_package)")
    return start


def _read_mozilla(path: str, data, order: int) -> ScorerPackage:
    start = _mozilla_header(path, data)
    utf8, alpha, beta = _mozilla_header_at(path, data, start)
    dfa, end = read_const_fst(data, start + MOZILLA_HEADER.size)
    if data[end:end + len(MAGIC)] == MAGIC:  # one of ours whose last bytes are missing
        raise ScorerError(f"{path}: truncated or corrupt scorer (the end of its trailer is missing)")
    ids = fst_words(dfa)
    return ScorerPackage(path, alpha, beta, utf8, tuple(ids), None, mozilla=True, order=order)


def set_default_params(path: str, alpha: float, beta: float) -> None:
    """Rewrite the default alpha and beta of a scorer (ours or Mozilla's) atomically."""
    package = read_package(path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if package.mozilla:
        at = _mozilla_header(path, data) + 9
    else:
        pos = _trailer_start(path, data) + len(MAGIC)
        (version,) = struct.unpack_from("<I", data, pos)
        at = pos + 8 if version == 1 else struct.unpack_from("<Q", data, pos + 4)[0] + 9
    struct.pack_into("<dd", data, at, alpha, beta)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def vocabulary_for(package: ScorerPackage, alphabet: Alphabet) -> list[str]:
    """The package's words as text, after checking that the scorer fits the model's alphabet."""
    utf8_alphabet = isinstance(alphabet, UTF8Alphabet)
    if package.alphabet is not None and not utf8_alphabet and package.alphabet != alphabet:
        theirs, ours = package.alphabet.labels, alphabet.labels
        diff = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        raise ScorerError(f"{package.path}: built for another alphabet ({len(theirs)} labels, the model "
                          f"has {len(ours)}; first difference at label {diff})")
    if utf8_alphabet and not package.utf8_mode:
        raise ScorerError(f"{package.path}: a word scorer cannot decode a bytes-output (UTF8Alphabet) "
                          f"model; build a bytes-mode scorer (generate_scorer_package "
                          f"--force_bytes_output_mode)")
    if not package.mozilla:
        return list(package.vocabulary)
    if package.utf8_mode:  # Mozilla spells in bytes (UTF8Alphabet): FST label = byte label + 1 = byte
        return _byte_words(package)
    space = alphabet.EncodeSingle(" ") + 1 if alphabet.CanEncodeSingle(" ") else None
    words = []
    for ids in package.vocabulary:
        if ids and ids[-1] == space:  # Mozilla ends every word with the space label
            ids = ids[:-1]
        if any(i < 1 or i > len(alphabet) for i in ids):
            raise ScorerError(f"{package.path}: its vocabulary uses label ids beyond the model's "
                              f"alphabet of {len(alphabet)} labels")
        words.append(alphabet.decode(i - 1 for i in ids))
    return words


def _byte_words(package: ScorerPackage) -> list[str]:
    """A Mozilla bytes-mode vocabulary (label id tuples, each id a byte) -> its characters."""
    words, bad = [], 0
    for ids in package.vocabulary:
        try:
            words.append(bytes(ids).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):  # an id beyond 255, or not UTF-8
            bad += 1
    if bad:
        log.warning("%s: %d vocabulary entries are not UTF-8 byte sequences and are left out",
                    package.path, bad)
    return words


def main(argv: list[str] | None = None) -> int:
    """generate_scorer_package: Mozilla's command line, in Python."""
    parser = argparse.ArgumentParser(prog="generate_scorer_package", description=__doc__.split("\n")[0])
    parser.add_argument("--alphabet", default="", help="alphabet file of the model (optional in bytes mode)")
    parser.add_argument("--lm", required=True, help="KenLM binary (build_binary output)")
    parser.add_argument("--vocab", required=True, help="vocabulary: words separated by whitespace")
    parser.add_argument("--package", required=True, help="the .scorer file to write")
    parser.add_argument("--default_alpha", type=float, required=True, help="default LM weight alpha")
    parser.add_argument("--default_beta", type=float, required=True, help="default word insertion weight beta")
    parser.add_argument("--force_bytes_output_mode", action="store_true",
                        help="character mode: every LM token is one character (Mandarin); detected "
                             "automatically when every vocabulary entry is a single character")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        alphabet = Alphabet(args.alphabet) if args.alphabet else None
        with open(args.vocab, encoding="utf-8") as f:
            vocabulary = list(dict.fromkeys(f.read().split()))
        utf8 = args.force_bytes_output_mode or all(len(w) == 1 for w in vocabulary)
        if alphabet is None and not utf8:
            raise ScorerError("--alphabet is required for a word-level scorer")
        if alphabet is not None:
            unusable = [w for w in vocabulary if not alphabet.CanEncode(w)]
            if unusable:
                log.warning("%d vocabulary entries use characters outside %s and can never be decoded, "
                            "e.g. %s", len(unusable), args.alphabet, unusable[:5])
        in_fst = write_package(args.package, args.lm, vocabulary, alphabet, args.default_alpha,
                               args.default_beta, utf8)
    except (OSError, AlphabetError, ScorerError, UnicodeDecodeError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %s: %d %s (%d in Mozilla's vocabulary FST), %s mode, alpha %g, beta %g", args.package,
             len(vocabulary), "characters" if utf8 else "words", in_fst, "bytes" if utf8 else "word",
             args.default_alpha, args.default_beta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
