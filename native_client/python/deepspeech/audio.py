"""Reading audio files, without TensorFlow: any format libsndfile reads, mixed to mono, resampled.

The trainer (``deepspeech_training.features``) re-exports these, so training, evaluation and the
client decode and resample audio with one implementation.
"""
from __future__ import annotations

import numpy as np
import soundfile


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited (FFT) resampling of a whole clip."""
    if source_rate == target_rate:
        return audio
    n_out = int(round(len(audio) * target_rate / source_rate))
    spectrum = np.fft.rfft(audio)
    keep = n_out // 2 + 1
    out = np.zeros(keep, dtype=spectrum.dtype)
    n = min(keep, len(spectrum))
    out[:n] = spectrum[:n]
    return (np.fft.irfft(out, n_out) * (n_out / len(audio))).astype(np.float32)


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Any format libsndfile reads -> (mono float32 in [-1, 1], its own sample rate)."""
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for unreadable files
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    return audio.mean(axis=1), rate


def load_audio(path: str, sample_rate: int) -> np.ndarray:
    """Any format libsndfile reads -> mono float32 at ``sample_rate``."""
    audio, rate = read_audio(path)
    return resample(audio, rate, sample_rate)


def audio_info(path: str) -> soundfile._SoundFileInfo:
    try:
        return soundfile.info(path)
    except Exception as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1] -> int16 (the client API's input); 16-bit audio round-trips exactly."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def from_int16(audio: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1), as libsndfile and TensorFlow's WAV decoder scale them."""
    return np.asarray(audio, np.int16).astype(np.float32) / 32768.0
