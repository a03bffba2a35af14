"""The acoustic model of an export: its metadata checked, features -> per-frame probabilities.

A ``forward`` export (bidirectional) needs the whole utterance: a stream keeps the features and runs
the model on everything received so far when a result is asked for. A ``step`` export
(unidirectional) is run incrementally by the streaming driver (``streaming.py``) as audio arrives.
"""
from __future__ import annotations

import os

import numpy as np
from ds_ctcdecoder import Alphabet, UTF8Alphabet

from .errors import (ERR_FAIL_CREATE_MODEL, ERR_FAIL_INIT_MMAP, ERR_FAIL_RUN_SESS, ERR_INVALID_ALPHABET,
                     ERR_INVALID_SHAPE, ERR_MODEL_INCOMPATIBLE, ERR_NO_MODEL, DeepSpeechError)
from .features import FrameStream, Framing, spectrogram
from .runtime import FORMAT, FORMAT_VERSION, ModelLoadError, load_runtime


def open_runtime(path: str):
    """``runtime.load_runtime`` with its failures turned into ``DeepSpeechError``s."""
    if not path:
        raise DeepSpeechError("CreateModel", ERR_NO_MODEL, "no model path given")
    if not os.path.exists(path):
        raise DeepSpeechError("CreateModel", ERR_FAIL_INIT_MMAP, f"{path}: no such file or directory")
    try:
        return load_runtime(path)
    except ModelLoadError as err:
        raise DeepSpeechError("CreateModel", getattr(err, "code", ERR_FAIL_CREATE_MODEL), str(err)) from None


def _version_tuple(text) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in str(text).strip().lstrip("v").split("."))
    except ValueError:
        return None  # a placeholder such as Mozilla's "<help text>": not a constraint


def check_metadata(metadata: dict, client_version: str) -> None:
    """Refuse what this client cannot run, with Mozilla's error codes."""
    def fail(code, detail):
        raise DeepSpeechError("CreateModel", code, detail)

    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        fail(ERR_MODEL_INCOMPATIBLE, f"not a {FORMAT} model (no such metadata)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        fail(ERR_MODEL_INCOMPATIBLE, f"the model's export format version is {version}, this client "
                                     f"(version {client_version}) reads version {FORMAT_VERSION}")
    needed = _version_tuple(metadata.get("min_ds_version", ""))
    if needed and needed > (_version_tuple(client_version) or ()):
        fail(ERR_MODEL_INCOMPATIBLE, f"the model needs client version {metadata['min_ds_version']} or "
                                     f"newer, this is {client_version}")
    if metadata.get("function") not in ("forward", "step"):
        fail(ERR_MODEL_INCOMPATIBLE, f"unknown model function {metadata.get('function')!r}")
    if metadata["function"] == "step" and not metadata.get("streaming"):
        fail(ERR_INVALID_SHAPE, "a 'step' model without its 'streaming' metadata")
    try:
        framing = Framing.from_metadata(metadata["features"])
        num_classes = int(metadata["model"]["num_classes"])
        sample_rate = int(metadata["sample_rate"])
    except (KeyError, TypeError, ValueError) as err:
        fail(ERR_INVALID_SHAPE, f"incomplete model metadata ({err!r})")
    if sample_rate != framing.sample_rate or sample_rate <= 0:
        fail(ERR_INVALID_SHAPE, f"sample rate {sample_rate} differs from the features' {framing.sample_rate}")
    labels = 255 if metadata.get("utf8") else len(metadata.get("alphabet") or [])
    if labels + 1 != num_classes:
        fail(ERR_INVALID_ALPHABET, f"the alphabet has {labels} labels but the model outputs {num_classes} "
                                   f"classes (labels + blank)")


class AcousticModel:
    """An opened export: its features (``features(audio)`` one-shot, ``frame_stream()`` incremental) and
    its probabilities (``probs(features)`` one-shot, ``stream()`` incremental).

    What ``Model`` and ``Stream`` use, whatever the model family (``mozilla_model.py`` has another):
    ``metadata`` (a dict, ``beam_width`` in it), ``sample_rate``, ``alphabet``, ``utf8``,
    ``frame_seconds`` (one output frame), ``streaming`` (True: run as the audio arrives) and the four
    methods.
    """

    def __init__(self, runtime, client_version: str):
        metadata = runtime.metadata
        check_metadata(metadata, client_version)
        self.runtime, self.metadata = runtime, metadata
        self.framing = Framing.from_metadata(metadata["features"])
        self.sample_rate = int(metadata["sample_rate"])
        self.utf8 = bool(metadata.get("utf8"))
        self.alphabet = UTF8Alphabet() if self.utf8 else Alphabet.from_labels(metadata["alphabet"])
        self.streaming = metadata["function"] == "step"
        self.frame_seconds = self.framing.win_step_ms * self.time_stride / 1000.0

    @property
    def time_stride(self) -> int:
        """Feature frames per output frame (the product of the convolutions' time strides)."""
        stride = 1
        for conv in self.metadata["model"].get("conv", ()):
            stride *= int(conv["stride"][0])
        return stride

    def features(self, audio: np.ndarray) -> np.ndarray:
        """float32 waveform [N] in [-1, 1] of a whole utterance -> its feature frames [T, F]."""
        return spectrogram(audio, self.framing)

    def frame_stream(self) -> FrameStream:
        """The same frames from audio in chunks: ``feed(audio) -> frames``, ``finish() -> frames``."""
        return FrameStream(self.framing)

    def probs(self, features: np.ndarray) -> np.ndarray:
        """Feature frames [T, F] of a whole utterance -> probabilities [T', C]."""
        if self.streaming:
            return _run(lambda: self._driver().run(features))
        return self._forward(features)

    def stream(self) -> "ProbabilityStream":
        return StepStream(self._driver()) if self.streaming else ForwardStream(self._forward)

    def _forward(self, features: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(features[None], np.float32)
        lengths = np.array([len(features)], np.int32)
        return _run(lambda: np.asarray(self.runtime.forward(batch, lengths))[0])

    def _driver(self):
        from .streaming import StreamingDriver

        return StreamingDriver(self.runtime.step, self.metadata["streaming"], self.framing.n_features)


def _run(compute):
    try:
        return compute()
    except DeepSpeechError:
        raise
    except Exception as err:  # whatever the runtime raised: the model could not be run
        raise DeepSpeechError("SpeechToText", ERR_FAIL_RUN_SESS, f"{type(err).__name__}: {err}") from err


class ProbabilityStream:
    """Feature frames in (any number at a time); the probabilities of everything so far out."""

    def feed(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def current(self) -> np.ndarray | None:
        raise NotImplementedError

    def finish(self) -> np.ndarray:
        raise NotImplementedError


class ForwardStream(ProbabilityStream):
    """Bidirectional model: keep the features, run the whole audio so far when asked."""

    def __init__(self, forward):
        self._forward, self._frames, self._cache = forward, [], (0, None)

    def feed(self, frames: np.ndarray) -> None:
        if len(frames):
            self._frames.append(frames)

    def current(self) -> np.ndarray | None:
        count = sum(len(f) for f in self._frames)
        if count == 0:
            return None
        if self._cache[0] != count:
            self._frames = [np.concatenate(self._frames)]
            self._cache = (count, self._forward(self._frames[0]))
        return self._cache[1]

    def finish(self) -> np.ndarray | None:
        return self.current()


class StepStream(ProbabilityStream):
    """Unidirectional model: the driver runs ``step`` as soon as enough frames have arrived."""

    def __init__(self, driver):
        self._driver, self._probs = driver, GrowingFrames()

    def feed(self, frames: np.ndarray) -> None:
        if len(frames):
            self._probs.append(_run(lambda: self._driver.feed(frames)))

    def current(self) -> np.ndarray | None:
        return self._probs.view()

    def finish(self) -> np.ndarray | None:
        self._probs.append(_run(self._driver.finish))
        return self.current()


class GrowingFrames:
    """Rows appended as they come; ``view()`` of all so far without copying them (the buffer doubles
    when full), so that a long stream's ``current()`` does not cost its length each time."""

    def __init__(self):
        self._buffer, self._count = None, 0

    def append(self, rows) -> None:
        rows = np.asarray(rows)
        if not rows.size:
            return
        rows = rows.reshape(-1, rows.shape[-1])
        if self._buffer is None:
            self._buffer = np.empty((max(64, len(rows)), rows.shape[1]), rows.dtype)
        elif self._count + len(rows) > len(self._buffer):
            grown = np.empty((max(2 * len(self._buffer), self._count + len(rows)), rows.shape[1]), self._buffer.dtype)
            grown[:self._count] = self._buffer[:self._count]
            self._buffer = grown
        self._buffer[self._count:self._count + len(rows)] = rows
        self._count += len(rows)

    def view(self) -> np.ndarray | None:
        return None if self._buffer is None else self._buffer[:self._count]
