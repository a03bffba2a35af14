"""The model's input features in numpy: the trainer's log power spectrogram, one-shot or incremental.

``spectrogram`` computes exactly what ``deepspeech_training.features.spectrogram`` computes with
TensorFlow (``tf.signal.stft``: periodic Hann window, FFT length = window length, no padding at the end,
a clip shorter than one window zero-padded to one frame; then log(|X|^2 + 1e-10)).

``FrameStream`` computes the same frames from audio that arrives in chunks of any size: the frames of
a stream, once finished, are those of the whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class Framing:
    """The feature geometry of an export (its metadata's ``features`` object)."""

    sample_rate: int = 16000
    win_len_ms: int = 20
    win_step_ms: int = 10

    @classmethod
    def from_metadata(cls, features: dict) -> "Framing":
        return cls(int(features["sample_rate"]), int(features["win_len_ms"]), int(features["win_step_ms"]))

    @property
    def frame_length(self) -> int:
        return self.win_len_ms * self.sample_rate // 1000

    @property
    def frame_step(self) -> int:
        return self.win_step_ms * self.sample_rate // 1000

    @property
    def n_features(self) -> int:
        return self.frame_length // 2 + 1


def _hann(length: int) -> np.ndarray:
    """TensorFlow's default (periodic) Hann window."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)


def _log_power(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(frames * window, n=frames.shape[1], axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(power.astype(np.float32) + np.float32(LOG_FLOOR)).astype(np.float32)


def spectrogram(audio: np.ndarray, framing: Framing) -> np.ndarray:
    """float32 waveform [N] in [-1, 1] -> log power spectrogram [T, F] (T >= 1)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    length, step = framing.frame_length, framing.frame_step
    if len(audio) < length:
        audio = np.pad(audio, (0, length - len(audio)))
    count = 1 + (len(audio) - length) // step
    starts = np.arange(count)[:, None] * step
    frames = audio[starts + np.arange(length)[None, :]]
    return _log_power(frames, _hann(length))


class FrameStream:
    """Spectrogram frames of audio that arrives in chunks: ``feed`` returns the frames completed so far,
    ``finish`` the rest (one zero-padded frame when the whole stream was shorter than a window)."""

    def __init__(self, framing: Framing):
        self.framing = framing
        self._window = _hann(framing.frame_length)
        self._pending = np.zeros(0, np.float32)  # samples not yet consumed by a frame step
        self.frames_out = 0

    def feed(self, audio: np.ndarray) -> np.ndarray:
        length, step = self.framing.frame_length, self.framing.frame_step
        self._pending = np.concatenate([self._pending, np.asarray(audio, np.float32).reshape(-1)])
        if len(self._pending) < length:
            return np.zeros((0, self.framing.n_features), np.float32)
        count = 1 + (len(self._pending) - length) // step
        starts = np.arange(count)[:, None] * step
        frames = self._pending[starts + np.arange(length)[None, :]]
        self._pending = self._pending[count * step:]
        self.frames_out += count
        return _log_power(frames, self._window)

    def finish(self) -> np.ndarray:
        if self.frames_out:
            return np.zeros((0, self.framing.n_features), np.float32)
        self.frames_out = 1
        return spectrogram(self._pending, self.framing)
