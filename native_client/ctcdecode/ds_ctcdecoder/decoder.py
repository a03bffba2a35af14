"""CTC beam search (Mozilla's ``ctc_beam_search_decoder`` API) on flashlight-text's C++ decoders.

The paper's objective Q(y) = log p_ctc(y|x) + alpha log p_lm(y) + beta wc(y):
- word scorer: flashlight's lexicon decoder; the search only spells words of the scorer's vocabulary
  (a trie), the LM scores each word as it completes, beta is added per word;
- character scorer (Mandarin): the same decoder with one-character words, so the LM and beta act on
  every character;
- bytes-mode scorer with a UTF8Alphabet model: flashlight's lexicon-free decoder over the byte labels,
  its LM spelling the scorer's characters in UTF-8 bytes (bytes_lm.py);
- no scorer: flashlight's lexicon-free decoder with no LM (plain prefix beam search).
Paths that spell the same hypothesis are summed (log-add), as CTC defines its probability.
Pruning (the paper's): at each frame only the fewest labels whose probabilities add up to
``cutoff_prob``, at most ``cutoff_top_n`` of them, are tried.
"""
from __future__ import annotations

import logging
import multiprocessing

import numpy as np

from .alphabet import Alphabet
from .bytes_lm import is_bytes_mode, spelled_lm
from .scorer import LN10, Scorer

log = logging.getLogger("deepspeech.ctcdecode")

PRUNED = -1e30  # log-probability of a label cut by cutoff_prob (never extended)
# The synthetic last frame's cost for anything but a space: finite, so that when no hypothesis can end
# on a word (the audio ends inside a word the scorer does not know) they still rank by their scores
# instead of all tying at -1e30 (an arbitrary pick); far beyond the beam threshold, so a hypothesis
# that completes a word always wins.
UNFINISHED_WORD = -1000.0
BEAM_THRESHOLD = 12.0  # hypotheses this far (natural log) below the best are dropped (bench/ctc_decode.sh)


class DecodeResult(tuple):
    """(confidence, transcript), as Mozilla's decoder returns, plus Coqui's ``tokens`` and
    ``timesteps`` (the output frame at which each character of the transcript starts)."""

    def __new__(cls, confidence: float, transcript: str, tokens: list[int], timesteps: list[int]):
        self = super().__new__(cls, (confidence, transcript))
        self.tokens, self.timesteps = tokens, timesteps
        return self

    def __reduce__(self):  # results come back from worker processes
        return DecodeResult, (self[0], self[1], self.tokens, self.timesteps)

    confidence = property(lambda self: self[0])
    transcript = property(lambda self: self[1])


def ctc_beam_search_decoder(probs_seq, alphabet: Alphabet, beam_size: int, cutoff_prob: float = 1.0,
                            cutoff_top_n: int = 40, scorer: Scorer | None = None,
                            hot_words: dict | None = None, num_results: int = 1,
                            beam_threshold: float = BEAM_THRESHOLD) -> list[DecodeResult]:
    """Decode one utterance's softmax output [T, len(alphabet) + 1] -> best ``num_results``.

    ``beam_threshold`` (not in Mozilla's API): hypotheses scoring this much (natural log) below the
    best are dropped, so a confident model is decoded with few hypotheses whatever ``beam_size``.
    """
    probs = _check_probs(probs_seq, alphabet)
    decoder, _lm = _make_decoder(alphabet, beam_size, cutoff_top_n, scorer, hot_words or {}, beam_threshold)
    return _decode(decoder, probs, cutoff_prob, alphabet, scorer, num_results)


def ctc_beam_search_decoder_batch(probs_seq, seq_lengths, alphabet: Alphabet, beam_size: int,
                                  num_processes: int, cutoff_prob: float = 1.0, cutoff_top_n: int = 40,
                                  scorer: Scorer | None = None, hot_words: dict | None = None,
                                  num_results: int = 1,
                                  beam_threshold: float = BEAM_THRESHOLD) -> list[list[DecodeResult]]:
    """Decode a batch [B, T, C] (each item cut to its ``seq_lengths`` entry) in parallel processes."""
    probs_seq = np.asarray(probs_seq)
    lengths = np.asarray(seq_lengths, dtype=np.int64).reshape(-1)
    if probs_seq.ndim != 3 or len(lengths) != len(probs_seq):
        raise ValueError(f"probs_seq must be [batch, time, classes] with one length per item, got shape "
                         f"{probs_seq.shape} and {len(lengths)} lengths")
    items = [_check_probs(probs_seq[i, :max(0, min(int(n), probs_seq.shape[1]))], alphabet,
                          f"batch item {i}: ") for i, n in enumerate(lengths)]
    if scorer is not None:
        scorer.lexicon()  # built once here, inherited by the worker processes
    job = (items, alphabet, beam_size, cutoff_prob, cutoff_top_n, scorer, hot_words or {}, num_results,
           beam_threshold)
    workers = max(1, min(int(num_processes or 1), len(items)))
    if workers == 1:
        return _decode_items(job, range(len(items)))
    global _JOB
    _JOB = job  # handed to forked workers by copy-on-write, not pickled
    try:
        chunks = np.array_split(np.arange(len(items)), workers * 4)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_decode_chunk, [c.tolist() for c in chunks if len(c)])
    finally:
        _JOB = None
    return [r for part in parts for r in part]


_JOB = None


def _decode_chunk(indices: list[int]) -> list[list[DecodeResult]]:
    return _decode_items(_JOB, indices)


def _decode_items(job, indices) -> list[list[DecodeResult]]:
    items, alphabet, beam_size, cutoff_prob, cutoff_top_n, scorer, hot_words, num_results, threshold = job
    decoder, _lm = _make_decoder(alphabet, beam_size, cutoff_top_n, scorer, hot_words, threshold)
    return [_decode(decoder, items[i], cutoff_prob, alphabet, scorer, num_results) for i in indices]


def _check_probs(probs_seq, alphabet: Alphabet, where: str = "") -> np.ndarray:
    probs = np.asarray(probs_seq, dtype=np.float32)
    classes = len(alphabet) + 1
    if probs.ndim != 2 or probs.shape[1] != classes:
        raise ValueError(f"{where}probabilities of shape {probs.shape}: expected [time, {classes}] "
                         f"({len(alphabet)} alphabet labels + blank)")
    if not np.isfinite(probs).all():
        raise ValueError(f"{where}probabilities contain NaN or infinity")
    return probs


def _make_decoder(alphabet, beam_size, cutoff_top_n, scorer, hot_words, beam_threshold=BEAM_THRESHOLD):
    from flashlight.lib.text import decoder as fl

    classes = len(alphabet) + 1
    top_n = max(1, min(int(cutoff_top_n), classes))
    if scorer is None:
        options = fl.LexiconFreeDecoderOptions(
            beam_size=int(beam_size), beam_size_token=top_n, beam_threshold=float(beam_threshold), lm_weight=0.0,
            sil_score=0.0, log_add=True, criterion_type=fl.CriterionType.CTC)
        space = alphabet.EncodeSingle(" ") if alphabet.CanEncodeSingle(" ") else alphabet.blank_id
        lm = fl.ZeroLM()
        return fl.LexiconFreeDecoder(options, lm, space, alphabet.blank_id, []), lm
    lexicon = scorer.lexicon()
    if is_bytes_mode(alphabet):  # byte labels, character LM: the LM wrapper spells the characters
        lm = spelled_lm(lexicon.trie, _hot_word_lm(lexicon, hot_words) if hot_words else lexicon.lm,
                        scorer.alpha * LN10, scorer.beta)
        options = fl.LexiconFreeDecoderOptions(
            beam_size=int(beam_size), beam_size_token=top_n, beam_threshold=float(beam_threshold),
            lm_weight=1.0, sil_score=0.0, log_add=True, criterion_type=fl.CriterionType.CTC)
        return fl.LexiconFreeDecoder(options, lm, alphabet.blank_id, alphabet.blank_id, []), lm
    options = fl.LexiconDecoderOptions(
        beam_size=int(beam_size), beam_size_token=top_n, beam_threshold=float(beam_threshold),
        lm_weight=scorer.alpha * LN10, word_score=scorer.beta, unk_score=float("-inf"), sil_score=0.0,
        log_add=True, criterion_type=fl.CriterionType.CTC)
    lm = _hot_word_lm(lexicon, hot_words) if hot_words else lexicon.lm
    decoder = fl.LexiconDecoder(options, lexicon.trie, lm, lexicon.separator, alphabet.blank_id,
                                lexicon.unk_index, [], False)
    return decoder, lm  # a Python LM must outlive the decoder that calls it


def _hot_word_lm(lexicon, hot_words: dict):
    """KenLM plus Mozilla's ``addHotWord`` boosts.

    As Mozilla's decoder: each time the LM scores a word, the boost of every hot word among the last
    n words (the n-gram being scored) is added to the log-probability, so a hot word also lifts the
    words that follow it. The decoder weighs the sum by alpha.
    """
    from flashlight.lib.text.decoder import LM

    boosts = {}
    for word, boost in hot_words.items():
        index = lexicon.words.get_index(word)
        if index == lexicon.unk_index:
            log.warning("Hot word %r is not in the scorer's vocabulary: it cannot be boosted", word)
            continue
        boosts[index] = float(boost) / LN10  # the LM speaks log10; alpha * ln 10 weighs it
    keep = max(0, lexicon.order - 1)

    class HotWordLM(LM):
        def __init__(self):
            LM.__init__(self)
            self.history = {}  # LM state -> the last n-1 words; KenLM states are unique per history

        def start(self, start_with_nothing):
            self.history.clear()
            state = lexicon.lm.start(start_with_nothing)
            self.history[state] = ()
            return state

        def score(self, state, index):
            next_state, score = lexicon.lm.score(state, index)
            window = self.history.get(state, ()) + (index,)
            self.history[next_state] = window[-keep:] if keep else ()
            return next_state, score + sum(boosts.get(w, 0.0) for w in window)

        def finish(self, state):
            return lexicon.lm.finish(state)

    return HotWordLM()


def _decode(decoder, probs: np.ndarray, cutoff_prob: float, alphabet: Alphabet, scorer,
            num_results: int) -> list[DecodeResult]:
    if len(probs) == 0:
        return [DecodeResult(0.0, "", [], [])]
    emissions = _prune(probs, cutoff_prob)
    if scorer is not None and scorer.lexicon().separator != alphabet.blank_id:
        # one certain space after the last frame completes the last word (spelled with its space)
        end = np.full((1, emissions.shape[1]), UNFINISHED_WORD, np.float32)
        end[0, scorer.lexicon().separator] = 0.0
        emissions = np.concatenate([emissions, end])
    emissions = np.ascontiguousarray(emissions)
    hyps = sorted(decoder.decode(emissions.ctypes.data, *emissions.shape), key=lambda h: -h.score)
    results, seen = [], set()
    for hyp in hyps:
        result = _to_result(hyp, alphabet)
        if result.transcript not in seen:
            seen.add(result.transcript)
            results.append(result)
        if len(results) == num_results:
            break
    return results or [DecodeResult(float("-inf"), "", [], [])]


def _prune(probs: np.ndarray, cutoff_prob: float) -> np.ndarray:
    """Log-probabilities, with the labels outside each frame's cutoff_prob mass set to PRUNED."""
    logp = np.log(np.maximum(probs, 1e-30), dtype=np.float32)
    if cutoff_prob >= 1.0:
        return logp
    order = np.argsort(-probs, axis=1)
    ranked = np.take_along_axis(probs, order, axis=1)
    keep_ranked = (np.cumsum(ranked, axis=1) - ranked) < cutoff_prob  # up to the label that reaches p
    keep = np.empty_like(keep_ranked)
    np.put_along_axis(keep, order, keep_ranked, axis=1)
    return np.where(keep, logp, PRUNED).astype(np.float32)


def _to_result(hyp, alphabet: Alphabet) -> DecodeResult:
    """Collapse the frame path into characters with the frame each starts at."""
    path = hyp.tokens[1:-1]  # flashlight pads the path with a token at each end
    blank, space = alphabet.blank_id, alphabet.EncodeSingle(" ") if alphabet.CanEncodeSingle(" ") else -1
    tokens, timesteps, previous = [], [], -1
    for t, token in enumerate(path):
        if token != previous and token != blank and not (token == space and (not tokens or tokens[-1] == space)):
            tokens.append(token)
            timesteps.append(t)
        previous = token
    while tokens and tokens[-1] == space:
        tokens.pop()
        timesteps.pop()
    return DecodeResult(float(hyp.score), alphabet.decode(tokens), tokens, timesteps)
