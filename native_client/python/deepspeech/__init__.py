"""Speech to text with an exported Deep Speech 2 model: Mozilla DeepSpeech 0.9's Python API.

    import deepspeech, numpy as np
    model = deepspeech.Model("output_graph.tflite")      # .pb, .pbmm, .tflite or a SavedModel folder
    model.enableExternalScorer("kenlm.scorer")
    text = model.stt(np.frombuffer(wav_frames, np.int16))  # 16-bit samples at model.sampleRate()

    stream = model.createStream()
    for chunk in chunks:
        stream.feedAudioContent(chunk)
        print(stream.intermediateDecode())
    print(stream.finishStream())

Models: this trainer's exports, and Mozilla DeepSpeech 0.9's / Coqui STT 1.x's (``.pb``, ``.pbmm``,
``.tflite``; ``mozilla_model.py``), recognized by their content.

Failures raise ``RuntimeError`` (``errors.DeepSpeechError``) with Mozilla's messages and codes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ds_ctcdecoder import DecoderState, Scorer, ScorerError

from . import errors
from .acoustic import AcousticModel, open_runtime
from .audio import from_int16
from .errors import DeepSpeechError
from .metadata import CandidateTranscript, Metadata, TokenMetadata, candidate_from_result
from .mozilla_model import open_mozilla_model

__version__ = (Path(__file__).resolve().parent / "VERSION").read_text().strip()
__all__ = ["Model", "Stream", "Metadata", "CandidateTranscript", "TokenMetadata", "DeepSpeechError",
           "version"]

# Mozilla's streaming decoder hard-codes these; the one-shot decode uses the same.
CUTOFF_PROB = 1.0
CUTOFF_TOP_N = 40


def version() -> str:
    """The client's version (Mozilla's ``deepspeech.version()``)."""
    return __version__


class _Decoding:
    """What a decode uses, fixed when a stream is created (as Mozilla's decoder state)."""

    def __init__(self, acoustic: AcousticModel, beam_width: int, scorer, hot_words: dict,
                 cutoff: tuple[float, int, float, int] = (CUTOFF_PROB, CUTOFF_TOP_N, 0.0, 0)):
        self.acoustic, self.beam_width, self.scorer = acoustic, beam_width, scorer
        self.hot_words = dict(hot_words) if scorer is not None else {}
        self.cutoff_prob, self.cutoff_top_n, self.beam_threshold, self.settle_after = cutoff

    def state(self) -> DecoderState:
        """A beam search that takes frames as they come (Mozilla's decoder state of a stream)."""
        return DecoderState(self.acoustic.alphabet, max(1, int(self.beam_width)), self.cutoff_prob, self.cutoff_top_n,
                            self.scorer, self.hot_words, self.beam_threshold, self.settle_after)

    def decode(self, probs, num_results: int) -> Metadata:
        if probs is None or len(probs) == 0:
            return Metadata((CandidateTranscript((), 0.0),))
        state = self.state()
        state.next(probs)
        return self.metadata(state, num_results)

    def metadata(self, state: DecoderState, num_results: int) -> Metadata:
        acoustic = self.acoustic
        if state.frames == 0:
            return Metadata((CandidateTranscript((), 0.0),))
        return Metadata(tuple(candidate_from_result(r, acoustic.alphabet, acoustic.frame_seconds, acoustic.utf8)
                              for r in state.decode(max(1, int(num_results)))))


def _samples(audio_buffer, call: str) -> np.ndarray:
    """The API's audio: 16-bit samples (numpy int16, or integers that fit), mono."""
    audio = np.asarray(audio_buffer)
    if audio.dtype == np.int16:
        pass
    elif audio.size == 0:
        audio = audio.astype(np.int16)
    elif np.issubdtype(audio.dtype, np.integer) and audio.min() >= -32768 and audio.max() <= 32767:
        audio = audio.astype(np.int16)
    else:
        raise TypeError(f"{call}: audio must be 16-bit samples (a numpy int16 array), got {audio.dtype} "
                        f"values; scale float audio in [-1, 1] by 32767 and convert it with .astype(np.int16)")
    if audio.ndim > 1 and sum(n > 1 for n in audio.shape) > 1:
        raise ValueError(f"{call}: audio must be mono (one channel), got an array of shape {audio.shape}")
    return audio.reshape(-1)


class Model:
    """An exported model: ``Model(model_path)`` (``.pb``, ``.pbmm``, ``.tflite`` or a SavedModel)."""

    def __init__(self, model_path: str):
        self._impl = None  # as Mozilla's: present even when loading fails
        self._impl = _open_acoustic(str(model_path) if model_path else "")
        self._beam_width = int(self._impl.metadata.get("beam_width") or 500)
        self._scorer = None
        self._hot_words: dict[str, float] = {}
        self._cutoff = (CUTOFF_PROB, CUTOFF_TOP_N, 0.0, 0)

    # --- decoder settings
    def beamWidth(self) -> int:  # noqa: N802 (Mozilla's names)
        return self._beam_width

    def setBeamWidth(self, beam_width: int) -> int:  # noqa: N802
        """Returns 0 (Mozilla's status). A width below 1 decodes with width 1."""
        self._beam_width = int(beam_width)
        return errors.ERR_OK

    def setBeamPruning(self, cutoff_prob: float, cutoff_top_n: int, beam_threshold: float = 0.0,  # noqa: N802
                       settle_after: int = 0) -> int:
        """Not in Mozilla's API (its client always searches all labels, as the defaults 1.0 and 40):
        at each frame try only the most likely labels whose probabilities add up to ``cutoff_prob``,
        at most ``cutoff_top_n`` of them (the trainer's --cutoff_prob/--cutoff_top_n; Deep Speech 2's
        deployment used 0.99 and 40); ``beam_threshold`` > 0: drop prefixes more than this many nats
        below the best after each frame (flashlight's; 0: none); ``settle_after`` > 0: text more than
        this many labels before the best prefix's end becomes final (see ``DecoderState``). Returns 0."""
        if not 0.0 < float(cutoff_prob) <= 1.0 or int(cutoff_top_n) < 1 or float(beam_threshold) < 0 \
                or int(settle_after) < 0:
            raise ValueError(f"setBeamPruning: cutoff_prob must be in (0, 1], cutoff_top_n at least 1, "
                             f"beam_threshold and settle_after not negative, got {cutoff_prob}, {cutoff_top_n}, "
                             f"{beam_threshold} and {settle_after}")
        self._cutoff = (float(cutoff_prob), int(cutoff_top_n), float(beam_threshold), int(settle_after))
        return errors.ERR_OK

    def sampleRate(self) -> int:  # noqa: N802
        return self._impl.sample_rate

    def enableExternalScorer(self, scorer_path: str) -> None:  # noqa: N802
        try:
            scorer = Scorer(None, None, str(scorer_path), self._impl.alphabet)
            scorer.load()  # load the LM and vocabulary now, not at the first decode
        except ScorerError as err:
            raise DeepSpeechError("EnableExternalScorer", _scorer_error_code(err), str(err)) from None
        self._scorer = scorer

    def disableExternalScorer(self) -> int:  # noqa: N802
        self._scorer = None
        return errors.ERR_OK

    def setScorerAlphaBeta(self, alpha: float, beta: float) -> int:  # noqa: N802
        """Returns 0, or ERR_SCORER_NOT_ENABLED (0x2004) without a scorer (as Mozilla's)."""
        if self._scorer is None:
            return errors.ERR_SCORER_NOT_ENABLED
        self._scorer.reset_params(alpha, beta)
        return errors.ERR_OK

    # --- hot words (need a scorer, as Mozilla's)
    def addHotWord(self, word: str, boost: float) -> None:  # noqa: N802
        self._need_scorer("AddHotWord")
        if word in self._hot_words:
            raise DeepSpeechError("AddHotWord", errors.ERR_FAIL_INSERT_HOTWORD, f"{word!r} is already a hot word")
        self._hot_words[word] = float(boost)

    def eraseHotWord(self, word: str) -> None:  # noqa: N802
        self._need_scorer("EraseHotWord")
        if self._hot_words.pop(word, None) is None:
            raise DeepSpeechError("EraseHotWord", errors.ERR_FAIL_ERASE_HOTWORD, f"{word!r} is not a hot word")

    def clearHotWords(self) -> None:  # noqa: N802
        self._need_scorer("ClearHotWords")
        self._hot_words.clear()

    def _need_scorer(self, call: str) -> None:
        if self._scorer is None:
            raise DeepSpeechError(call, errors.ERR_SCORER_NOT_ENABLED, "enable a scorer first")

    # --- speech to text
    def stt(self, audio_buffer) -> str:
        """16-bit mono samples at ``sampleRate()`` -> the best transcript."""
        return str(self.sttWithMetadata(audio_buffer, 1).transcripts[0])

    def sttWithMetadata(self, audio_buffer, num_results: int = 1) -> Metadata:  # noqa: N802
        audio = from_int16(_samples(audio_buffer, "sttWithMetadata"))
        probs = self._impl.probs(self._impl.features(audio))
        return self._decoding().decode(probs, num_results)

    def createStream(self) -> "Stream":  # noqa: N802
        return Stream(self._impl, self._decoding())

    def _decoding(self) -> _Decoding:
        return _Decoding(self._impl, self._beam_width, self._scorer, self._hot_words, self._cutoff)


def _open_acoustic(path: str):
    """A Mozilla-interface model (Mozilla's or Coqui's export), else an export of this trainer."""
    model = open_mozilla_model(path)
    return model if model is not None else AcousticModel(open_runtime(path), __version__)


def _scorer_error_code(err: ScorerError) -> int:
    text = str(err)
    if "not found" in text or "cannot read" in text:
        return errors.ERR_SCORER_UNREADABLE
    if "version" in text:
        return errors.ERR_SCORER_VERSION_MISMATCH
    if "KenLM" in text or "not a scorer" in text:
        return errors.ERR_SCORER_INVALID_LM
    return errors.ERR_INVALID_SCORER


class Stream:
    """Streaming inference: ``feedAudioContent`` chunks, decode at any time, ``finishStream`` at the end.

    Unidirectional ('step') models run as the audio arrives and their beam search goes on with each new
    output frame only (as Mozilla's decoder state); bidirectional ('forward') models run on all the
    audio received so far when a result is asked for, and that is decoded anew. The final transcript
    equals ``stt`` of the whole audio.
    """

    def __init__(self, acoustic: AcousticModel, decoding: _Decoding):
        self._impl = acoustic.stream()
        self._frames = acoustic.frame_stream()
        self._decoding = decoding
        self._search = decoding.state() if acoustic.streaming else None  # step models: incremental
        self._last = (None, None)  # ((output frames, num_results), Metadata): nothing new, no new decode

    def _decode(self, probs, num_results: int) -> Metadata:
        if self._search is None:
            return self._decoding.decode(probs, num_results)
        self._catch_up(probs)
        return self._decoding.metadata(self._search, num_results)

    def _catch_up(self, probs) -> None:
        """The incremental search takes the output frames it has not seen yet."""
        if probs is not None and len(probs) > self._search.frames:
            self._search.next(probs[self._search.frames:])

    def _check(self, action: str) -> None:
        if self._impl is None:
            raise RuntimeError(f"Stream object is not valid. Trying to {action} an already finished stream?")

    def feedAudioContent(self, audio_buffer) -> None:  # noqa: N802
        self._check("feed")
        audio = from_int16(_samples(audio_buffer, "feedAudioContent"))
        self._impl.feed(self._frames.feed(audio))

    def intermediateDecode(self) -> str:  # noqa: N802
        if self._search is None:
            return str(self.intermediateDecodeWithMetadata(1).transcripts[0])
        self._check("decode")
        self._catch_up(self._impl.current())
        return self._search.transcript()  # the text only: a long stream's settled text is not walked again

    def intermediateDecodeWithMetadata(self, num_results: int = 1) -> Metadata:  # noqa: N802
        self._check("decode")
        probs = self._impl.current()
        key = (0 if probs is None else len(probs), num_results)
        if self._last[0] != key:
            self._last = (key, self._decode(probs, num_results))
        return self._last[1]

    def finishStream(self) -> str:  # noqa: N802
        return str(self.finishStreamWithMetadata(1).transcripts[0])

    def finishStreamWithMetadata(self, num_results: int = 1) -> Metadata:  # noqa: N802
        self._check("finish")
        probs_stream, self._impl = self._impl, None
        probs_stream.feed(self._frames.finish())
        return self._decode(probs_stream.finish(), num_results)

    def freeStream(self) -> None:  # noqa: N802
        self._check("free")
        self._impl = None
