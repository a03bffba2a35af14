"""Mozilla DeepSpeech's features in numpy: TensorFlow's ``AudioSpectrogram`` and ``Mfcc`` ops.

Mozilla's models take 26 MFCC per 32 ms window (512 samples at 16 kHz), one window every 20 ms, from
``AudioSpectrogram(window_size=512, stride=320, magnitude_squared=True)`` then ``Mfcc(sample_rate,
upper_frequency_limit=8000, lower_frequency_limit=20, filterbank_channel_count=40,
dct_coefficient_count=26)``. These functions compute what those kernels compute (TensorFlow's
spectrogram.cc, mfcc.cc, mfcc_mel_filterbank.cc, mfcc_dct.cc), in double precision as they do:

- spectrogram: periodic Hann window, FFT length = the next power of two of the window, |X|^2, one
  frame per full window (no padding), float32 out;
- mel filterbank: HTK-like triangles on mel = 1127 ln(1 + f/700), channel centres evenly spaced in
  mel between the limits, applied to the *magnitude* (sqrt of the power); bins below
  ``1.5 + lower / hz_per_bin`` (so never DC) and above ``upper / hz_per_bin`` are left out, where
  ``hz_per_bin = rate / 2 / (bins - 1)``;
- log with a floor of 1e-12, then a DCT-II scaled by sqrt(2 / channels) for every coefficient.
"""
from __future__ import annotations

import functools

import numpy as np

FILTERBANK_FLOOR = 1e-12


def fft_length(window_size: int) -> int:
    """The FFT length TensorFlow's spectrogram uses: the next power of two."""
    return 1 << max(int(window_size) - 1, 0).bit_length()


@functools.lru_cache(maxsize=8)
def _periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def audio_spectrogram(audio: np.ndarray, window_size: int, stride: int,
                      magnitude_squared: bool = True) -> np.ndarray:
    """``tf.raw_ops.AudioSpectrogram`` of mono audio [N] -> [frames, fft_length // 2 + 1] float32
    (the op's output without its channel axis); no frame when N < window_size."""
    audio = np.asarray(audio, np.float32).reshape(-1).astype(np.float64)
    count = 0 if len(audio) < window_size else 1 + (len(audio) - window_size) // stride
    n_fft = fft_length(window_size)
    if count == 0:
        return np.zeros((0, n_fft // 2 + 1), np.float32)
    starts = np.arange(count)[:, None] * stride
    frames = audio[starts + np.arange(window_size)[None, :]] * _periodic_hann(window_size)
    spectrum = np.fft.rfft(frames, n=n_fft, axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return (power if magnitude_squared else np.sqrt(power)).astype(np.float32)


def _freq_to_mel(freq):
    return 1127.0 * np.log1p(np.asarray(freq, np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def mel_weights(input_length: int, sample_rate: float, channels: int, lower: float,
                upper: float) -> np.ndarray:
    """TensorFlow's MfccMelFilterbank as a matrix [input_length, channels]: the filterbank output of a
    magnitude spectrum ``m`` [input_length] is ``m @ mel_weights(...)``."""
    mel_low, mel_high = _freq_to_mel(lower), _freq_to_mel(upper)
    spacing = (mel_high - mel_low) / (channels + 1)
    centres = mel_low + spacing * np.arange(1, channels + 2)  # one more: the top edge of the last
    hz_per_bin = 0.5 * sample_rate / (input_length - 1)
    start, end = int(1.5 + lower / hz_per_bin), int(upper / hz_per_bin)
    matrix = np.zeros((input_length, channels), np.float64)
    channel = 0
    for i in range(start, min(end, input_length - 1) + 1):
        mel = _freq_to_mel(i * hz_per_bin)
        while channel < channels and centres[channel] < mel:
            channel += 1
        band = channel - 1  # the channel whose downward slope holds bin i (-1: none)
        if band >= 0:
            weight = (centres[band + 1] - mel) / (centres[band + 1] - centres[band])
            matrix[i, band] += weight
        else:
            weight = (centres[0] - mel) / (centres[0] - mel_low)
        if band + 1 < channels:
            matrix[i, band + 1] += 1.0 - weight  # the next channel's upward slope
    return matrix


@functools.lru_cache(maxsize=8)
def dct_matrix(channels: int, coefficients: int) -> np.ndarray:
    """TensorFlow's MfccDct as a matrix [channels, coefficients]."""
    i = np.arange(coefficients)[None, :]
    j = np.arange(channels)[:, None]
    return np.sqrt(2.0 / channels) * np.cos(i * (np.pi / channels) * (j + 0.5))


def mfcc(spectrogram: np.ndarray, sample_rate: int, upper_frequency_limit: float = 4000.0,
         lower_frequency_limit: float = 20.0, filterbank_channel_count: int = 40,
         dct_coefficient_count: int = 13) -> np.ndarray:
    """``tf.raw_ops.Mfcc`` of a power spectrogram [frames, bins] -> [frames, coefficients] float32
    (the op's defaults; Mozilla uses upper 8000 and 26 coefficients)."""
    power = np.asarray(spectrogram, np.float32).astype(np.float64)
    weights = mel_weights(power.shape[-1], float(sample_rate), int(filterbank_channel_count),
                          float(lower_frequency_limit), float(upper_frequency_limit))
    mel = np.sqrt(power) @ weights
    log_mel = np.log(np.maximum(mel, FILTERBANK_FLOOR))
    return (log_mel @ dct_matrix(int(filterbank_channel_count), int(dct_coefficient_count))).astype(np.float32)


class MfccFeatures:
    """A Mozilla model's feature geometry: ``frames(audio)`` one-shot, ``stream()`` incremental.

    As Mozilla's native client (deepspeech.cc): one MFCC frame per full window as the audio arrives,
    and at the end of the stream one more, of what is left in the window buffer zero-padded to a
    window (always: even an empty stream gives that one frame). N >= window samples thus give
    ``2 + (N - window) // step`` frames.
    """

    def __init__(self, sample_rate: int = 16000, window: int = 512, step: int = 320, n_features: int = 26,
                 upper_hz: float = 8000.0, lower_hz: float = 20.0, channels: int = 40):
        self.sample_rate, self.window, self.step, self.n_features = sample_rate, window, step, n_features
        self.upper_hz, self.lower_hz, self.channels = upper_hz, lower_hz, channels

    def compute(self, audio: np.ndarray) -> np.ndarray:
        """MFCC [frames, n_features] of the full windows of ``audio`` (float32 in [-1, 1])."""
        spectrum = audio_spectrogram(audio, self.window, self.step)
        return mfcc(spectrum, self.sample_rate, self.upper_hz, self.lower_hz, self.channels, self.n_features)

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """All the frames of a whole clip, those of a stream fed this audio and finished."""
        stream = self.stream()
        return np.concatenate([stream.feed(audio), stream.finish()])

    def stream(self) -> "MfccStream":
        return MfccStream(self)


class MfccStream:
    """``feed(audio)`` -> the MFCC frames completed; ``finish()`` -> the last, zero-padded frame."""

    def __init__(self, features: MfccFeatures):
        self.features = features
        self._pending = np.zeros(0, np.float32)  # the window buffer: fewer than `window` samples

    def feed(self, audio: np.ndarray) -> np.ndarray:
        window, step = self.features.window, self.features.step
        self._pending = np.concatenate([self._pending, np.asarray(audio, np.float32).reshape(-1)])
        if len(self._pending) < window:
            return np.zeros((0, self.features.n_features), np.float32)
        count = 1 + (len(self._pending) - window) // step
        frames = self.features.compute(self._pending[:(count - 1) * step + window])
        self._pending = self._pending[count * step:]
        return frames

    def finish(self) -> np.ndarray:
        padded = np.zeros(self.features.window, np.float32)
        padded[:len(self._pending)] = self._pending
        self._pending = np.zeros(0, np.float32)
        return self.features.compute(padded)
