"""CTC beam search (Mozilla's ``ctc_beam_search_decoder`` API) on our C++ prefix search (native.py).

The search has Mozilla DeepSpeech 0.9's semantics, so that the same probabilities and scorer give
the same transcripts as Mozilla's decoder (tests/test_mozilla_runtime.py checks it against
libdeepspeech.so): the paper's objective Q(y) = log p_ctc(y|x) + alpha log p_lm(y) + beta wc(y),
prefixes in a trie with their blank/non-blank path probabilities summed, the scorer's vocabulary as a
lexicon, the LM scored at each word (or character in bytes/character mode) and on the last word at
the end (no end-of-sentence probability), Mozilla's pruning (``cutoff_prob``, ``cutoff_top_n``, and
candidates that cannot reach a full beam are skipped).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .alphabet import Alphabet, UTF8Alphabet
from .native import NativeSearch
from .scorer import Scorer

log = logging.getLogger("deepspeech.ctcdecode")


class DecodeResult(tuple):
    """(confidence, transcript), as Mozilla's decoder returns, plus Coqui's ``tokens`` and
    ``timesteps`` (the output frame at which each label of the transcript starts)."""

    def __new__(cls, confidence: float, transcript: str, tokens: list[int], timesteps: list[int]):
        self = super().__new__(cls, (confidence, transcript))
        self.tokens, self.timesteps = tokens, timesteps
        return self

    def __reduce__(self):
        return DecodeResult, (self[0], self[1], self.tokens, self.timesteps)

    confidence = property(lambda self: self[0])
    transcript = property(lambda self: self[1])


class DecoderState:
    """An incremental beam search over one stream: ``next(probs)`` adds frames, ``decode()`` gives the
    best transcripts so far (Mozilla's DecoderState; the client's streaming uses it).
    ``beam_threshold`` > 0 (not in Mozilla's): after each frame, prefixes more than this many nats below
    the best leave the beam (flashlight's beam threshold); ``settle_after`` > 0 (not in Mozilla's): once
    the best prefix is twice this many labels past the last settled point, prefixes that do not share
    its first (length - settle_after) labels leave the beam, so a long stream's older text is final and
    the search's cost stays flat. 0 for both keeps Mozilla's search."""

    def __init__(self, alphabet: Alphabet, beam_size: int, cutoff_prob: float = 1.0, cutoff_top_n: int = 40,
                 scorer: Scorer | None = None, hot_words: dict | None = None, beam_threshold: float = 0.0,
                 settle_after: int = 0):
        self.alphabet = alphabet
        hot = _usable_hot_words(scorer, hot_words or {})
        native = scorer.load() if scorer is not None else None
        alpha, beta = (scorer.alpha, scorer.beta) if scorer is not None else (0.0, 0.0)
        space = alphabet.EncodeSingle(" ") if alphabet.CanEncodeSingle(" ") else -1
        self._search = NativeSearch(len(alphabet), space, max(1, int(beam_size)), cutoff_prob, cutoff_top_n,
                                    native, alpha, beta, hot, beam_threshold, settle_after)
        self.frames = 0
        # (labels, their text): the settled start of the transcript, for transcript() (a character
        # alphabet's text is the concatenation of its labels'; UTF-8 bytes are decoded whole)
        self._settled = None if isinstance(alphabet, UTF8Alphabet) else (0, "")

    def next(self, probs) -> None:
        probs = _check_probs(probs, self.alphabet)
        self._search.next(probs)
        self.frames += len(probs)

    def transcript(self) -> str:
        """``decode(1)[0].transcript`` (not in Mozilla's), for partial results: with ``settle_after``
        the settled text is kept between calls, so that a long stream's partial costs its unsettled
        text only, not the whole transcript again."""
        if self._settled is None:
            return self.alphabet.decode(self._search.best()[2])
        offset, text = self._settled
        _, settled, tail = self._search.best(offset)
        if settled > offset:
            self._settled = (settled, text + self.alphabet.decode(tail[:settled - offset]))
        return text + self.alphabet.decode(tail)

    def decode(self, num_results: int = 1) -> list[DecodeResult]:
        results = [DecodeResult(confidence, self.alphabet.decode(tokens), list(tokens), list(frames))
                   for confidence, tokens, frames in self._search.decode(num_results)]
        return results or [DecodeResult(0.0, "", [], [])]


def ctc_beam_search_decoder(probs_seq, alphabet: Alphabet, beam_size: int, cutoff_prob: float = 1.0,
                            cutoff_top_n: int = 40, scorer: Scorer | None = None,
                            hot_words: dict | None = None, num_results: int = 1) -> list[DecodeResult]:
    """Decode one utterance's softmax output [T, len(alphabet) + 1] -> best ``num_results``."""
    state = DecoderState(alphabet, beam_size, cutoff_prob, cutoff_top_n, scorer, hot_words)
    state.next(probs_seq)
    return state.decode(num_results)


def ctc_beam_search_decoder_batch(probs_seq, seq_lengths, alphabet: Alphabet, beam_size: int,
                                  num_processes: int, cutoff_prob: float = 1.0, cutoff_top_n: int = 40,
                                  scorer: Scorer | None = None, hot_words: dict | None = None,
                                  num_results: int = 1) -> list[list[DecodeResult]]:
    """Decode a batch [B, T, C] (each item cut to its ``seq_lengths`` entry) on ``num_processes``
    threads (the search runs outside the GIL)."""
    probs_seq = np.asarray(probs_seq)
    lengths = np.asarray(seq_lengths, dtype=np.int64).reshape(-1)
    if probs_seq.ndim != 3 or len(lengths) != len(probs_seq):
        raise ValueError(f"probs_seq must be [batch, time, classes] with one length per item, got shape "
                         f"{probs_seq.shape} and {len(lengths)} lengths")
    items = [_check_probs(probs_seq[i, :max(0, min(int(n), probs_seq.shape[1]))], alphabet,
                          f"batch item {i}: ") for i, n in enumerate(lengths)]
    if scorer is not None:
        scorer.load()  # once, before the threads share it

    def one(probs):
        return ctc_beam_search_decoder(probs, alphabet, beam_size, cutoff_prob, cutoff_top_n, scorer,
                                       hot_words, num_results)

    workers = max(1, min(int(num_processes or 1), len(items)))
    if workers == 1:
        return [one(p) for p in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items))


_WARNED: set[tuple[str, str]] = set()


def _usable_hot_words(scorer: Scorer | None, hot_words: dict) -> dict[str, float]:
    """Mozilla accepts any hot word; one the scorer cannot spell can never be boosted (warned once)."""
    if not hot_words or scorer is None:
        return {}
    for word in hot_words:
        if (scorer.scorer_path, word) not in _WARNED and word not in scorer.vocabulary_set:
            _WARNED.add((scorer.scorer_path, word))
            log.warning("Hot word %r is not in the scorer's vocabulary: it cannot be boosted", word)
    return {w: float(b) for w, b in hot_words.items()}


def _check_probs(probs_seq, alphabet: Alphabet, where: str = "") -> np.ndarray:
    probs = np.asarray(probs_seq, dtype=np.float64)
    classes = len(alphabet) + 1
    if probs.ndim != 2 or probs.shape[1] != classes:
        raise ValueError(f"{where}probabilities of shape {probs.shape}: expected [time, {classes}] "
                         f"({len(alphabet)} alphabet labels + blank)")
    if not np.isfinite(probs).all():
        raise ValueError(f"{where}probabilities contain NaN or infinity")
    return probs
