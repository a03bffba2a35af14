"""ctypes binding of the C++ prefix beam search (src/prefix_search.cc, built by ``make install`` into
libctcdecode.so beside this file). The calls release the GIL, so threads decode in parallel."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

LIBRARY = Path(__file__).with_name("libctcdecode.so")
WORDS, BYTES, CHARACTERS = 0, 1, 2  # scorer modes: LM tokens are words, UTF-8 characters of byte labels,
# or the labels of a character alphabet

_P, _INT, _DOUBLE = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
_SIGNATURES = {
    "ds2_scorer_new": (_P, [ctypes.c_char_p, _INT, _INT, _INT, ctypes.POINTER(ctypes.c_char_p),
                            ctypes.POINTER(_INT), ctypes.POINTER(_INT), _INT, ctypes.c_char_p, _INT]),
    "ds2_scorer_free": (None, [_P]),
    "ds2_scorer_order": (_INT, [_P]),
    "ds2_search_new": (_P, [_INT, _INT, _INT, _DOUBLE, _INT, _P, _DOUBLE, _DOUBLE,
                            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_float), _INT]),
    "ds2_search_next": (None, [_P, ctypes.POINTER(_DOUBLE), _INT, _INT]),
    "ds2_search_set_threshold": (None, [_P, _DOUBLE]),
    "ds2_search_set_settle_after": (None, [_P, _INT]),
    "ds2_search_decode": (_P, [_P, _INT]),
    "ds2_search_best": (_INT, [_P, _INT, ctypes.POINTER(_INT), _INT, ctypes.POINTER(_INT)]),
    "ds2_search_free": (None, [_P]),
    "ds2_results_count": (_INT, [_P]),
    "ds2_result_confidence": (_DOUBLE, [_P, _INT]),
    "ds2_result_length": (_INT, [_P, _INT]),
    "ds2_result_tokens": (None, [_P, _INT, ctypes.POINTER(_INT), ctypes.POINTER(_INT)]),
    "ds2_results_free": (None, [_P]),
}
_lib = None


class NativeLibraryError(OSError):
    """The decoder library is missing or does not load (an OSError, as ctypes raises for a bad one)."""


def library():
    global _lib
    if _lib is None:
        path = os.environ.get("DS_CTCDECODE_LIBRARY", str(LIBRARY))
        if not os.path.isfile(path):
            raise NativeLibraryError(f"{path} is missing: build the decoder with `make install` "
                                     f"(native_client/ctcdecode/build.sh)")
        lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        _lib = lib
    return _lib


def _strings(items: list[str]):
    return (ctypes.c_char_p * max(1, len(items)))(*[s.encode("utf-8") for s in items])


class NativeScorer:
    """KenLM plus the vocabulary lexicon, loaded once and shared by every search (read-only)."""

    def __init__(self, lm_path: str, mode: int, space: int, labels: list[str], spellings: list[list[int]]):
        lib = library()
        flat = np.ascontiguousarray([i for s in spellings for i in s] or [0], dtype=np.intc)
        lengths = np.ascontiguousarray([len(s) for s in spellings] or [0], dtype=np.intc)
        error = ctypes.create_string_buffer(1024)
        self._lib = lib
        self.handle = lib.ds2_scorer_new(str(lm_path).encode(), mode, space, len(labels), _strings(labels),
                                         flat.ctypes.data_as(ctypes.POINTER(_INT)),
                                         lengths.ctypes.data_as(ctypes.POINTER(_INT)), len(spellings), error, 1024)
        if not self.handle:
            raise ValueError(error.value.decode("utf-8", "replace") or "cannot load the language model")
        self.order = lib.ds2_scorer_order(self.handle)

    def __del__(self):
        if getattr(self, "handle", None):
            self._lib.ds2_scorer_free(self.handle)
            self.handle = None


class NativeSearch:
    """One utterance's beam: ``next`` takes more frames of probabilities, ``decode`` ranks the beam
    (it may be called at any time; the search goes on after it)."""

    def __init__(self, alphabet_size: int, space: int, beam_size: int, cutoff_prob: float, cutoff_top_n: int,
                 scorer: NativeScorer | None, alpha: float, beta: float, hot_words: dict[str, float],
                 beam_threshold: float = 0.0, settle_after: int = 0):
        self._lib = library()
        self._scorer = scorer  # kept alive as long as the search uses it
        words = list(hot_words)
        boosts = (ctypes.c_float * max(1, len(words)))(*[float(hot_words[w]) for w in words])
        self.handle = self._lib.ds2_search_new(alphabet_size, space, int(beam_size), float(cutoff_prob),
                                               int(cutoff_top_n), scorer.handle if scorer else None,
                                               float(alpha), float(beta), _strings(words), boosts, len(words))
        if beam_threshold > 0:
            self._lib.ds2_search_set_threshold(self.handle, float(beam_threshold))
        if settle_after > 0:
            self._lib.ds2_search_set_settle_after(self.handle, int(settle_after))
        self.classes = alphabet_size + 1

    def next(self, probs: np.ndarray) -> None:
        probs = np.ascontiguousarray(probs, dtype=np.float64)
        if len(probs):
            self._lib.ds2_search_next(self.handle, probs.ctypes.data_as(ctypes.POINTER(_DOUBLE)),
                                      probs.shape[0], probs.shape[1])

    def decode(self, num_results: int) -> list[tuple[float, list[int], list[int]]]:
        """Best ``num_results`` as (confidence, label ids, the frame where each label starts)."""
        lib = self._lib
        results = lib.ds2_search_decode(self.handle, max(1, int(num_results)))
        try:
            out = []
            for i in range(lib.ds2_results_count(results)):
                n = lib.ds2_result_length(results, i)
                tokens, frames = (_INT * max(1, n))(), (_INT * max(1, n))()
                lib.ds2_result_tokens(results, i, tokens, frames)
                out.append((lib.ds2_result_confidence(results, i), tokens[:n], frames[:n]))
            return out
        finally:
            lib.ds2_results_free(results)

    def best(self, offset: int = 0) -> tuple[int, int, list[int]]:
        """The best transcript (``decode(1)``'s) -> (its length in labels, how many of its first labels
        are settled, its labels from ``offset`` on)."""
        settled, capacity = _INT(), 256
        while True:
            tokens = (_INT * capacity)()
            n = self._lib.ds2_search_best(self.handle, offset, tokens, capacity, ctypes.byref(settled))
            if n - offset <= capacity:
                return n, settled.value, tokens[:max(0, n - offset)]
            capacity = n - offset

    def __del__(self):
        if getattr(self, "handle", None):
            self._lib.ds2_search_free(self.handle)
            self.handle = None
