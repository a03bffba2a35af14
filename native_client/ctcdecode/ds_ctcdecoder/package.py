"""The .scorer file: a KenLM binary with the decoder's settings and vocabulary after it.

Layout written here (all integers little-endian)::

    KenLM binary, verbatim (build_binary output; KenLM ignores what follows it)
    b"DS2SCORE"  uint32 version (1)  uint8 mode (0 words, 1 characters)  3 zero bytes
    float64 default alpha  float64 default beta
    uint32 n  alphabet in Mozilla's Alphabet.Serialize() form (n bytes)
    uint64 n  vocabulary: UTF-8 words joined by "\\n" (n bytes)
    uint64 offset of b"DS2SCORE" from the start of the file  b"DS2SCORE"

Mozilla DeepSpeech 0.9 / Coqui STT scorers are read too: a KenLM binary, then int32 'TRIE' (bytes
"EIRT"), int32 version 6, a bool for bytes (UTF-8) mode, float64 alpha and beta, then an OpenFST
ConstFst of the vocabulary whose arc labels are alphabet ids + 1. Their vocabulary is read from
that FST, as Mozilla's decoder does (the KenLM binary of those files holds no words).
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

log = logging.getLogger("deepspeech.ctcdecode")

MAGIC = b"DS2SCORE"
VERSION = 1
KENLM_MAGIC = b"mmap lm "
MOZILLA_MAGIC = struct.pack("<i", 0x54524945)  # the C++ multi-character constant 'TRIE'
MOZILLA_VERSION = 6
FST_MAGIC = 2125659606
KENLM_ORDER_OFFSET = 88  # KenLM's binary header: Sanity (magic + checks), then the order byte


class ScorerError(ValueError):
    pass


@dataclass(frozen=True)
class ScorerPackage:
    path: str
    alpha: float
    beta: float
    utf8_mode: bool  # True: every LM token is one character (Mandarin); False: words
    vocabulary: tuple[str, ...]
    alphabet: Alphabet | None  # stored in our packages; None in Mozilla's
    mozilla: bool
    order: int  # the n of the n-gram model


def write_package(path: str, lm_path: str, vocabulary: list[str], alphabet: Alphabet | None,
                  alpha: float, beta: float, utf8_mode: bool) -> None:
    """Write a .scorer atomically (a partial file never replaces a good one)."""
    with open(lm_path, "rb") as f:
        lm = f.read()
    if not lm.startswith(KENLM_MAGIC):
        raise ScorerError(f"{lm_path}: not a KenLM binary (build it with build_binary)")
    serialized = alphabet.Serialize() if alphabet is not None else b""
    words = "\n".join(vocabulary).encode("utf-8")
    header = (MAGIC + struct.pack("<IB3x", VERSION, int(utf8_mode)) + struct.pack("<dd", alpha, beta)
              + struct.pack("<I", len(serialized)) + serialized + struct.pack("<Q", len(words)) + words)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(lm)
        f.write(header)
        f.write(struct.pack("<Q", len(lm)) + MAGIC)
    os.replace(tmp, path)


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
        raise ScorerError(f"{path}: cannot read the scorer ({err})") from err
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ScorerError(f"{path}: truncated or corrupt scorer ({err})") from err


def _read_ours(path: str, data, order: int) -> ScorerPackage:
    (start,) = struct.unpack_from("<Q", data, len(data) - len(MAGIC) - 8)
    if start <= 0 or data[start:start + len(MAGIC)] != MAGIC:
        raise ScorerError(f"{path}: truncated or corrupt scorer (bad header offset)")
    pos = start + len(MAGIC)
    version, mode = struct.unpack_from("<IB3x", data, pos)
    if version != VERSION:
        raise ScorerError(f"{path}: scorer format version {version}, this decoder reads {VERSION}")
    alpha, beta = struct.unpack_from("<dd", data, pos + 8)
    (n,) = struct.unpack_from("<I", data, pos + 24)
    pos += 28
    alphabet = Alphabet.Deserialize(data[pos:pos + n]) if n else None
    (m,) = struct.unpack_from("<Q", data, pos + n)
    pos += n + 8
    if pos + m > len(data) - len(MAGIC) - 8:
        raise ScorerError(f"{path}: truncated or corrupt scorer (vocabulary runs past the end)")
    words = data[pos:pos + m].decode("utf-8")
    return ScorerPackage(path, alpha, beta, bool(mode), tuple(words.split("\n")) if words else (),
                         alphabet, mozilla=False, order=order)


def _read_mozilla(path: str, data, order: int) -> ScorerPackage:
    start = data.find(MOZILLA_MAGIC + struct.pack("<i", MOZILLA_VERSION))
    if start < 0:
        if data.find(MOZILLA_MAGIC) >= 0:
            raise ScorerError(f"{path}: a Mozilla scorer of an unsupported version (this reads "
                              f"version {MOZILLA_VERSION})")
        raise ScorerError(f"{path}: a bare KenLM model or a truncated scorer: no scorer header after "
                          f"the language model (package it with generate_scorer_package)")
    utf8 = bool(data[start + 8])
    alpha, beta = struct.unpack_from("<dd", data, start + 9)
    ids = _fst_words(path, data, start + 25)
    return ScorerPackage(path, alpha, beta, utf8, tuple(ids), None, mozilla=True, order=order)


def _fst_words(path: str, data, pos: int) -> list[tuple[int, ...]]:
    """The label sequences (alphabet id + 1 each) accepted by an OpenFST ConstFst (acyclic)."""
    (magic,) = struct.unpack_from("<i", data, pos)
    if magic != FST_MAGIC:
        raise ScorerError(f"{path}: no vocabulary FST after the Mozilla scorer header")
    pos += 4
    strings = []
    for _ in range(2):  # FST type, arc type
        (n,) = struct.unpack_from("<i", data, pos)
        strings.append(bytes(data[pos + 4:pos + 4 + n]).decode())
        pos += 4 + n
    version, flags = struct.unpack_from("<ii", data, pos)
    start, n_states, n_arcs = struct.unpack_from("<qqq", data, pos + 16)
    pos += 40
    if strings != ["const", "standard"]:
        raise ScorerError(f"{path}: vocabulary FST of type {strings}, expected const/standard")
    if flags & 0x3:  # input/output symbol tables follow the header; Mozilla writes none
        raise ScorerError(f"{path}: vocabulary FST with symbol tables is not supported")
    if version == 1:  # aligned write: sections start on 16-byte boundaries of the file
        pos += -pos % 16
    states = [struct.unpack_from("<fIIII", data, pos + 20 * i) for i in range(n_states)]
    pos += 20 * n_states
    if version == 1:
        pos += -pos % 16
    arcs = [struct.unpack_from("<iifi", data, pos + 16 * i) for i in range(n_arcs)]
    words, stack = [], [(start, ())]
    while stack:
        state, prefix = stack.pop()
        final, first, count = states[state][0], states[state][1], states[state][2]
        if final != float("inf"):
            words.append(prefix)
        for ilabel, _, _, nxt in arcs[first:first + count]:
            stack.append((nxt, prefix + (ilabel,)))
    return words


def set_default_params(path: str, alpha: float, beta: float) -> None:
    """Rewrite the default alpha and beta of a scorer (ours or Mozilla's) atomically."""
    package = read_package(path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if package.mozilla:
        at = data.find(MOZILLA_MAGIC + struct.pack("<i", MOZILLA_VERSION)) + 9
    else:
        (start,) = struct.unpack_from("<Q", data, len(data) - len(MAGIC) - 8)
        at = start + len(MAGIC) + 8
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
    words = []
    for ids in package.vocabulary:
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
        write_package(args.package, args.lm, vocabulary, alphabet, args.default_alpha,
                      args.default_beta, utf8)
    except (OSError, AlphabetError, ScorerError, UnicodeDecodeError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %s: %d %s, %s mode, alpha %g, beta %g", args.package, len(vocabulary),
             "characters" if utf8 else "words", "character" if utf8 else "word",
             args.default_alpha, args.default_beta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
