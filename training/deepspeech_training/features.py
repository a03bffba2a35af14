"""Audio loading and the model's input features: the log power spectrogram (Deep Speech 2, the paper's
input) or Mozilla DeepSpeech 0.9's 26 MFCC (its model family, ``kind="mfcc"``).

The feature parameters live in ``FeatureConfig``, which is saved with every checkpoint and export so
that evaluation and inference compute exactly what training did.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from deepspeech.audio import AudioError, audio_info, load_audio, resample  # noqa: F401 (one implementation)
from deepspeech.features import Framing

from .sdb import read_audio as read_sdb_audio
from .mozilla import MFCC_CHANNELS, MFCC_LOWER_HZ, MFCC_UPPER_HZ, N_INPUT as MFCC_COEFFICIENTS

KINDS = ("log_spectrogram", "mfcc")  # the MFCC: Mozilla DeepSpeech 0.9's (its util/feeding.py)


@dataclass(frozen=True)
class FeatureConfig(Framing):
    """Framing (sample rate, window and step, shared with the client) plus what training records."""

    kind: str = "log_spectrogram"  # or "mfcc": Mozilla's AudioSpectrogram + Mfcc (26 coefficients)
    normalization: str = "per_bin_training_set"  # mean/std per bin, measured on training data; or "none"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown feature kind {self.kind!r} ({', '.join(KINDS)})")
        for name in ("win_len_ms", "win_step_ms"):
            if (getattr(self, name) * self.sample_rate) % 1000:
                raise ValueError(f"--feature_{name[:-3]} of {getattr(self, name)} ms is not a whole "
                                 f"number of samples at {self.sample_rate} Hz")

    @property
    def n_features(self) -> int:
        return MFCC_COEFFICIENTS if self.kind == "mfcc" else super().n_features

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (at least one)."""
        return max(1, 1 + (num_samples - self.frame_length) // self.frame_step)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def spectrogram(audio: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """float32 waveform [N] in [-1, 1] -> the model's features [T, F]: the log power spectrogram
    (Hann window, F = len/2+1), or with ``kind="mfcc"`` Mozilla's MFCC [T, 26]."""
    short = config.frame_length - tf.shape(audio)[0]
    audio = tf.pad(audio, [[0, tf.maximum(short, 0)]])  # a clip shorter than one window: one frame
    if config.kind == "mfcc":
        return mfcc(audio, config)
    stft = tf.signal.stft(audio, config.frame_length, config.frame_step,
                          fft_length=config.frame_length, pad_end=False)
    power = tf.math.real(stft) ** 2 + tf.math.imag(stft) ** 2
    return tf.math.log(power + 1e-10)


def mfcc(audio: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """Mozilla's audio_to_features: TensorFlow's AudioSpectrogram (periodic Hann, |FFT|^2, no padding)
    and Mfcc (40 mel channels from 20 Hz to 8 kHz, 26 coefficients) -> [T, 26]; no normalization."""
    power = tf.raw_ops.AudioSpectrogram(input=audio[:, None], window_size=config.frame_length,
                                        stride=config.frame_step, magnitude_squared=True)
    coefficients = tf.raw_ops.Mfcc(spectrogram=power, sample_rate=config.sample_rate,
                                   upper_frequency_limit=MFCC_UPPER_HZ, lower_frequency_limit=MFCC_LOWER_HZ,
                                   filterbank_channel_count=MFCC_CHANNELS,
                                   dct_coefficient_count=MFCC_COEFFICIENTS)
    return tf.reshape(coefficients, [-1, MFCC_COEFFICIENTS])


def is_native_wav(info, sample_rate: int) -> bool:
    """True when TensorFlow's own WAV decoder can read the file as-is (no resampling needed)."""
    return info.format == "WAV" and info.subtype == "PCM_16" and info.samplerate == sample_rate


def load_any(path: str, record: int, sample_rate: int) -> np.ndarray:
    """An audio file (``record`` < 0) or sample ``record`` of the SDB ``path`` -> mono float32."""
    if record >= 0:
        return read_sdb_audio(path, record, sample_rate)
    return load_audio(path, sample_rate)


def _text(value) -> str:
    """A string tensor's value in a numpy_function: bytes in tf.data, a 0-d array when run eagerly."""
    return (value.item() if isinstance(value, np.ndarray) else value).decode()


def audio_tensor(path: tf.Tensor, native_wav: tf.Tensor, config: FeatureConfig,
                 record: tf.Tensor | None = None) -> tf.Tensor:
    """Decode inside tf.data: TF's WAV decoder for 16-bit WAV at the model rate, else libsndfile, or
    with ``record`` >= 0 sample ``record`` of the SDB ``path`` (then ``native_wav`` is False)."""
    def native():
        wav = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=-1)
        return tf.reduce_mean(wav.audio, axis=1)

    def other():
        if record is None:
            return tf.numpy_function(lambda p: load_audio(p.decode(), config.sample_rate),
                                     [path], tf.float32, stateful=False)
        return tf.numpy_function(lambda p, r: load_any(_text(p), int(r), config.sample_rate),
                                 [path, record], tf.float32, stateful=False)

    audio = tf.cond(native_wav, native, other)
    return tf.ensure_shape(audio, [None])


def _write_atomically(path: bytes, data: bytes) -> np.bool_:
    """Write via a temporary file: a run killed mid-write never leaves a truncated cache entry."""
    path = path.decode()
    temporary = f"{path}.{os.getpid()}.{id(data)}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
    return np.bool_(True)


class FeatureCache:
    """``--feature_cache``: the un-augmented features of the training files on disk, one file each.

    An entry is computed the first time its file is used and read back afterwards; its name hashes the
    file's path, size and modification time and the feature config, so a changed file or config is
    never served stale. Augmentations run after the cache, so cached features never freeze them.
    ``generation`` (--cache_for_epochs) starts a fresh cache; older generations are deleted.
    """

    def __init__(self, directory: str, config: FeatureConfig, generation: int = 0):
        self.directory = os.path.join(directory, f"generation-{generation}")
        for stale in glob.glob(os.path.join(glob.escape(directory), "generation-*")):
            if os.path.abspath(stale) != os.path.abspath(self.directory):
                shutil.rmtree(stale, ignore_errors=True)
        os.makedirs(self.directory, exist_ok=True)
        self.config = config
        self._config_key = json.dumps(config.to_dict(), sort_keys=True)

    def file_for(self, path: str, record: int = -1) -> str:
        """The entry of an audio file, or of sample ``record`` (>= 0) of the SDB ``path``."""
        stat = os.stat(path)
        sample = f"{os.path.abspath(path)}:{record}" if record >= 0 else os.path.abspath(path)
        key = f"{sample}|{stat.st_size}|{stat.st_mtime_ns}|{self._config_key}"
        return os.path.join(self.directory, hashlib.sha1(key.encode()).hexdigest() + ".tensor")

    def spectrogram(self, cache_file: tf.Tensor, load_audio) -> tf.Tensor:
        """Inside tf.data: the cached spectrogram, or compute it from ``load_audio()`` and store it."""
        return cached_spectrogram(cache_file, load_audio, self.config)


def cached_spectrogram(cache_file: tf.Tensor, load_audio, config: FeatureConfig) -> tf.Tensor:
    """Graph code: the spectrogram stored in ``cache_file``, or computed from ``load_audio()`` and stored
    there (the cache file names come from ``FeatureCache.file_for``)."""
    def read():
        return tf.io.parse_tensor(tf.io.read_file(cache_file), tf.float32)

    def compute():
        spec = spectrogram(load_audio(), config)
        written = tf.numpy_function(_write_atomically, [cache_file, tf.io.serialize_tensor(spec)],
                                    tf.bool, stateful=True)
        with tf.control_dependencies([written]):
            return tf.identity(spec)

    exists = tf.numpy_function(lambda p: np.bool_(os.path.exists(p.decode())), [cache_file], tf.bool,
                               stateful=True)
    spec = tf.cond(tf.reshape(exists, []), read, compute)
    bins = config.n_features
    return tf.ensure_shape(tf.reshape(spec, [-1, bins]), [None, bins])
