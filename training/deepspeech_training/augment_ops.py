"""The ``--augment`` augmentations as TensorFlow ops: Mozilla DeepSpeech 0.9's set, plus ``speed``.

Parameter names, defaults and domains are Mozilla's. Waveforms are float32 [N] in [-1, 1] at the model's
sample rate; spectrograms are the log power spectrogram [T, F] before the model's per-bin
normalization. Where Mozilla zeroes a linear power spectrogram (masks, dropout), a log spectrogram gets
the bin's mean over the utterance instead: "no information" at the level the model expects (about 0
after normalization, SpecAugment's choice), not log(0), an extreme value it never sees otherwise.
Levels are Mozilla's peak dBFS: 20 log10(max |x|) + 3.0103, so a full-scale peak is 3.0103 dBFS.
"""
from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tensorflow as tf

from .augment import Augmentation, SampleContext, ValueRange, float_param, int_param, register
from .data import read_rows, row_audio_info
from .features import AudioError, FeatureConfig, audio_tensor, is_native_wav
from .sdb import SDBError
from .util import opus
from .util.log import log

FULL_SCALE_DBFS = 3.0103  # Mozilla's dBFS of a peak of 1.0 (a full-scale sine's RMS is 0 dBFS)
REVERB_PRIMES = (17, 19, 23, 29, 31)  # Mozilla's delay-line ratios: primes keep comb echoes apart
MIN_FACTOR = 0.1  # tempo and speed factors below this count as this (a negative one has no meaning)


# --- levels and band-limited filters --------------------------------------------------------------

def peak_dbfs(audio: tf.Tensor) -> tf.Tensor:
    peak = tf.maximum(tf.reduce_max(tf.abs(audio)), 1e-16)
    return 20.0 * tf.math.log(peak) / math.log(10.0) + FULL_SCALE_DBFS


def gain_ratio(db: tf.Tensor) -> tf.Tensor:
    return tf.pow(10.0, tf.cast(db, tf.float32) / 20.0)


def normalize_peak(audio: tf.Tensor, dbfs: tf.Tensor) -> tf.Tensor:
    """Scale so the peak is at ``dbfs`` (clipped to [-1, 1] above full scale), Mozilla's normalize_audio."""
    return tf.clip_by_value(audio * gain_ratio(dbfs - peak_dbfs(audio)), -1.0, 1.0)


def mix_at_snr(audio: tf.Tensor, noise: tf.Tensor, snr_db: tf.Tensor) -> tf.Tensor:
    """audio + noise with the noise's peak ``snr_db`` below the audio's, at the audio's original peak."""
    gain = peak_dbfs(audio) - peak_dbfs(noise) - snr_db
    return normalize_peak(audio + noise * gain_ratio(gain), peak_dbfs(audio))


def _fft_length(n: tf.Tensor) -> tf.Tensor:
    """A power of two >= n: fast for any clip length (TF's FFT of a prime length is slow)."""
    bits = tf.math.ceil(tf.math.log(tf.cast(tf.maximum(n, 2), tf.float64)) / math.log(2.0) - 1e-9)
    return tf.cast(2 ** tf.cast(bits, tf.int32), tf.int32)


def fft_lowpass(audio: tf.Tensor, cutoff_hz: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Remove everything above ``cutoff_hz`` (what a down- and up-sampling round trip does)."""
    n = tf.size(audio)
    length = _fft_length(2 * n)  # room for the filter's ringing instead of a circular wrap-around
    spectrum = tf.signal.rfft(audio, [length])
    freqs = tf.cast(tf.range(length // 2 + 1), tf.float32) * (sample_rate / tf.cast(length, tf.float32))
    spectrum = tf.where(freqs <= tf.cast(cutoff_hz, tf.float32), spectrum, tf.zeros_like(spectrum))
    return tf.signal.irfft(spectrum, [length])[:n]


def fft_convolve(audio: tf.Tensor, response: tf.Tensor) -> tf.Tensor:
    """Linear convolution, truncated to len(audio)."""
    n = tf.size(audio)
    length = _fft_length(n + tf.size(response))
    product = tf.signal.rfft(audio, [length]) * tf.signal.rfft(response, [length])
    return tf.signal.irfft(product, [length])[:n]


def fft_resample(audio: tf.Tensor, n_out: tf.Tensor) -> tf.Tensor:
    """Band-limited resampling of the whole clip to ``n_out`` samples (features.resample in TF)."""
    n = tf.size(audio)
    length = _fft_length(n)
    out_length = tf.maximum(tf.cast(tf.round(tf.cast(length, tf.float64) * tf.cast(n_out, tf.float64)
                                             / tf.cast(n, tf.float64)), tf.int32), 2)
    spectrum = tf.signal.rfft(audio, [length])
    keep = out_length // 2 + 1
    spectrum = tf.pad(spectrum[:keep], [[0, tf.maximum(keep - tf.size(spectrum), 0)]])
    scale = tf.cast(out_length, tf.float32) / tf.cast(length, tf.float32)
    return tf.signal.irfft(spectrum, [out_length])[:n_out] * scale


# --- helpers shared by the masks --------------------------------------------------------------------

def bin_means(spec: tf.Tensor) -> tf.Tensor:
    """[1, F]: each bin's mean over the utterance, what masked log-spectrogram values become."""
    return tf.reduce_mean(spec, axis=0, keepdims=True)


def intervals(length: tf.Tensor, sizes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """bool [length]: the union of len(sizes) intervals of those sizes at uniform random starts.

    As Mozilla: a size is clipped to [1, length-1], its start uniform in [0, length - size).
    """
    sizes = tf.maximum(1, tf.minimum(length - 1, sizes))
    room = tf.cast(tf.maximum(length - sizes, 0), tf.float32)
    starts = tf.cast(tf.floor(tf.random.stateless_uniform(tf.shape(sizes), seed) * room), tf.int32)
    positions = tf.range(length)[None, :]
    inside = (positions >= starts[:, None]) & (positions < (starts + sizes)[:, None])
    return tf.reduce_any(inside, axis=0)


def resize(spec: tf.Tensor, frames: tf.Tensor, bins: tf.Tensor, method: str = "bilinear") -> tf.Tensor:
    return tf.image.resize(spec[:, :, None], tf.stack([frames, bins]), method=method)[:, :, 0]


def dense_warp(image: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """out[t, f] = image[t - flow[t, f, 0], f - flow[t, f, 1]], bilinear, clamped at the edges
    (tfa.image.dense_image_warp / tf.contrib's, which Mozilla used, for one 2-D image)."""
    shape = tf.shape(image)
    rows, cols = shape[0], shape[1]
    t = tf.cast(tf.range(rows), tf.float32)[:, None] - flow[:, :, 0]
    f = tf.cast(tf.range(cols), tf.float32)[None, :] - flow[:, :, 1]
    t = tf.clip_by_value(t, 0.0, tf.cast(rows - 1, tf.float32))
    f = tf.clip_by_value(f, 0.0, tf.cast(cols - 1, tf.float32))
    t0, f0 = tf.cast(tf.floor(t), tf.int32), tf.cast(tf.floor(f), tf.int32)
    t1, f1 = tf.minimum(t0 + 1, rows - 1), tf.minimum(f0 + 1, cols - 1)
    at, af = t - tf.cast(t0, tf.float32), f - tf.cast(f0, tf.float32)
    flat = tf.reshape(image, [-1])

    def at_(r, c):
        return tf.gather(flat, r * cols + c)

    top = at_(t0, f0) + af * (at_(t0, f1) - at_(t0, f0))
    bottom = at_(t1, f0) + af * (at_(t1, f1) - at_(t1, f0))
    return top + at * (bottom - top)


# --- sample domain (the waveform) -------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def noise_clips(source: str, sample_rate: int) -> tuple[tuple[str, ...], tuple[bool, ...], tuple[int, ...]]:
    """(paths, native WAV?, SDB sample numbers) of the readable, non-empty clips of an overlay CSV or
    SDB (transcripts optional)."""
    rows = read_rows(source, labeled=False)

    def info(row):
        try:
            return row_audio_info(row) if row.record >= 0 or os.path.isfile(row.path) else None
        except (AudioError, SDBError):
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(info, rows))
    usable = [(row, is_native_wav(i, sample_rate)) for row, i in zip(rows, infos) if i and i.frames]
    if len(usable) < len(rows):
        log.warning("overlay source %s: %d of %d clips are missing, unreadable or empty and not used",
                    source, len(rows) - len(usable), len(rows))
    if not usable:
        raise ValueError(f"source={source} holds no usable audio")
    return (tuple(r.path for r, _ in usable), tuple(n for _, n in usable),
            tuple(r.record for r, _ in usable))


@register("overlay")
@dataclass(frozen=True)
class Overlay(Augmentation):
    """Mix in audio from the CSV or SDB ``source`` (noise, or speech for babble) ``snr`` dB below the sample.

    Each of ``layers`` layers is stitched from random clips (from a random offset of the first) to the
    sample's length. SNR between peak levels, and the result at the sample's peak, as Mozilla.
    """

    source: str = ""
    snr: ValueRange = float_param("3.0")
    layers: ValueRange = int_param("1")
    domain = "sample"

    def __post_init__(self):
        super().__post_init__()
        if not self.source:
            raise ValueError("source=CSV (the audio to overlay) is required")
        if not os.path.isfile(self.source):
            raise ValueError(f"source={self.source}: file not found")

    def prepare(self, features: FeatureConfig) -> None:
        noise_clips(self.source, features.sample_rate)

    def apply(self, audio, ctx: SampleContext):
        clips = tuple(tf.constant(c) for c in noise_clips(self.source, ctx.features.sample_rate))
        n = tf.size(audio)
        layers = self.layers.pick(ctx.clock, ctx.draw(1))

        def add_layer(i, total):
            seed = tf.random.experimental.stateless_fold_in(ctx.draw(2), i)
            return i + 1, total + self._layer(n, clips, seed, ctx.features)

        _, noise = tf.while_loop(lambda i, _: i < layers, add_layer, (0, tf.zeros_like(audio)))
        return mix_at_snr(audio, noise, self.snr.pick(ctx.clock, ctx.draw(3)))

    @staticmethod
    def _layer(n, clips, seed, features):
        """n samples stitched from random clips."""
        paths, native, records = clips

        def add_clip(k, stitched):
            draw = tf.random.experimental.stateless_fold_in(seed, k)
            pick = tf.random.stateless_uniform([], draw, 0, tf.size(paths), dtype=tf.int32)
            clip = audio_tensor(paths[pick], native[pick], features, records[pick])
            # the first clip starts at a random offset: short samples do not all get the clips' openings
            start = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(draw, 1))
            offset = tf.where(k == 0, tf.cast(start * tf.cast(tf.size(clip), tf.float32), tf.int32), 0)
            return k + 1, tf.concat([stitched, clip[offset:]], 0)

        _, stitched = tf.while_loop(lambda k, s: tf.size(s) < n, add_clip, (0, tf.zeros([0])),
                                    shape_invariants=(tf.TensorShape([]), tf.TensorShape([None])),
                                    maximum_iterations=10000)
        stitched = stitched[:n]
        return tf.pad(stitched, [[0, n - tf.size(stitched)]])


@register("reverb")
@dataclass(frozen=True)
class Reverb(Augmentation):
    """Mozilla's simplified Schroeder reverb: the dry sample plus five feedback comb filters whose
    delays are ``delay`` ms x 17/17, 19/17, 23/17, 29/17, 31/17, each echo ``decay`` dB quieter;
    the result at the sample's original peak. Computed exactly, as one FFT convolution."""

    delay: ValueRange = float_param("20.0")
    decay: ValueRange = float_param("10.0")
    domain = "sample"

    def apply(self, audio, ctx: SampleContext):
        delay, decay = self.delay.pick(ctx.clock, ctx.draw(1)), self.decay.pick(ctx.clock, ctx.draw(2))
        echo = gain_ratio(-decay)
        per_ms = ctx.features.sample_rate / 1000.0
        steps = [tf.maximum(16, tf.cast(tf.floor(delay * (prime / REVERB_PRIMES[0]) * per_ms), tf.int32))
                 for prime in REVERB_PRIMES]  # Mozilla's floor of 16 samples
        # echoes 120 dB down are left out (float32 cannot tell): a short response, a short FFT
        audible = tf.where(decay > 0, tf.math.ceil(120.0 / tf.maximum(decay, 1e-3)), 1e9)
        taps = tf.cast(tf.minimum(audible * tf.cast(steps[-1], tf.float32) + 1,
                                  tf.cast(tf.size(audio), tf.float32)), tf.int32)
        positions = tf.range(taps)
        response = tf.cast(tf.equal(positions, 0), tf.float32) * (1 + len(REVERB_PRIMES))
        for step in steps:
            # y[n] = x[n] + echo * y[n - step]: impulse response echo^k at every k * step
            on_echo = tf.equal(positions % step, 0) & (positions > 0)
            response += tf.where(on_echo, tf.pow(echo, tf.cast(positions // step, tf.float32)), 0.0)
        return normalize_peak(fft_convolve(audio, response), peak_dbfs(audio))


@register("resample")
@dataclass(frozen=True)
class Resample(Augmentation):
    """Down-sample to ``rate`` Hz and back: everything above rate/2 is lost (band-limited, FFT)."""

    rate: ValueRange = int_param("8000")
    domain = "sample"

    def apply(self, audio, ctx: SampleContext):
        rate = self.rate.pick(ctx.clock, ctx.draw(1))
        return tf.cond(rate < ctx.features.sample_rate,
                       lambda: fft_lowpass(audio, tf.cast(rate, tf.float32) / 2, ctx.features.sample_rate),
                       lambda: audio)


@register("codec")
@dataclass(frozen=True)
class Codec(Augmentation):
    """Opus encode/decode round trip at ``bitrate`` bit/s, as Mozilla: libopus in 60 ms frames
    (util/opus.py, through tf.numpy_function). Opus's floor is about 5 kbit/s of actual output."""

    bitrate: ValueRange = int_param("3200")
    domain = "sample"

    def prepare(self, features: FeatureConfig) -> None:
        if features.sample_rate not in opus.RATES:
            raise ValueError(f"codec: Opus works at {', '.join(map(str, opus.RATES))} Hz, not at "
                             f"--audio_sample_rate {features.sample_rate}")
        if opus.backend() != "libopus":
            log.warning("codec: libopus not found, using libsndfile's Opus (6-256 kbit/s, slower)")

    def apply(self, audio, ctx: SampleContext):
        bitrate = self.bitrate.pick(ctx.clock, ctx.draw(1))
        out = tf.numpy_function(opus.round_trip, [audio, bitrate, ctx.features.sample_rate], tf.float32,
                                stateful=False)
        return tf.ensure_shape(out, [None])


@register("volume")
@dataclass(frozen=True)
class Volume(Augmentation):
    """Normalise the peak to ``dbfs`` dBFS (3.0103 = full scale)."""

    dbfs: ValueRange = float_param("3.0103")
    domain = "sample"

    def apply(self, audio, ctx: SampleContext):
        return normalize_peak(audio, self.dbfs.pick(ctx.clock, ctx.draw(1)))


@register("speed")
@dataclass(frozen=True)
class Speed(Augmentation):
    """Play faster by ``factor`` (tempo and pitch together, as speed perturbation in Kaldi): the clip
    is resampled to 1/factor of its length. Not in Mozilla. Never shorter than the transcript needs."""

    factor: ValueRange = float_param("1.0~0.1")
    domain = "sample"

    def apply(self, audio, ctx: SampleContext):
        n = tf.size(audio)
        factor = tf.maximum(self.factor.pick(ctx.clock, ctx.draw(1)), MIN_FACTOR)
        longest = tf.cast(n, tf.float32) / tf.cast(tf.maximum(ctx.min_samples, 1), tf.float32)
        factor = tf.minimum(factor, tf.maximum(longest, 1.0))  # CTC needs enough frames
        n_out = tf.maximum(1, tf.cast(tf.round(tf.cast(n, tf.float32) / factor), tf.int32))
        return tf.cond(tf.equal(n_out, n), lambda: audio, lambda: fft_resample(audio, n_out))


# --- spectrogram domain (the log power spectrogram before normalization) ----------------------------

@register("pitch")
@dataclass(frozen=True)
class Pitch(Augmentation):
    """Scale the frequency axis by ``pitch`` (2.0: an octave up), bilinear; cropped at the top, or
    padded there with the utterance's quietest value (Mozilla pads zero power) when lowered."""

    pitch: ValueRange = float_param("1.075~0.125")
    domain = "spectrogram"

    def apply(self, spec, ctx: SampleContext):
        frames, bins = tf.shape(spec)[0], tf.shape(spec)[1]
        pitch = self.pitch.pick(ctx.clock, ctx.draw(1))
        new_bins = tf.maximum(1, tf.cast(tf.cast(bins, tf.float32) * pitch, tf.int32))
        scaled = resize(spec, frames, new_bins)[:, :bins]
        return tf.pad(scaled, [[0, 0], [0, bins - tf.shape(scaled)[1]]], constant_values=tf.reduce_min(spec))


@register("tempo")
@dataclass(frozen=True)
class Tempo(Augmentation):
    """Scale the time axis by 1/``factor`` (2.0: twice as fast), bilinear, at most ``max_time`` ms long
    (-1: no limit), and never shorter than the transcript needs for CTC."""

    factor: ValueRange = float_param("1.1")
    max_time: float = -1.0
    domain = "spectrogram"

    def apply(self, spec, ctx: SampleContext):
        frames, bins = tf.shape(spec)[0], tf.shape(spec)[1]
        factor = tf.maximum(self.factor.pick(ctx.clock, ctx.draw(1)), MIN_FACTOR)
        new_frames = tf.cast(tf.cast(frames, tf.float32) / factor, tf.int32)
        if self.max_time > 0:
            new_frames = tf.minimum(new_frames, int(self.max_time / ctx.features.win_step_ms))
        new_frames = tf.maximum(tf.maximum(new_frames, ctx.min_frames), 1)
        return resize(spec, new_frames, bins)


@register("warp")
@dataclass(frozen=True)
class Warp(Augmentation):
    """Random smooth warp (SpecAugment's time warping, generalised as Mozilla's): a grid of ``nt`` x
    ``nf`` inner points, zero at the edges, shifted by normal draws whose standard deviation is ``wt``
    (``wf``) times half the grid spacing, interpolated bicubically to a dense flow."""

    nt: ValueRange = int_param("1")
    nf: ValueRange = int_param("1")
    wt: ValueRange = float_param("0.1")
    wf: ValueRange = float_param("0.0")
    domain = "spectrogram"

    def apply(self, spec, ctx: SampleContext):
        frames, bins = tf.shape(spec)[0], tf.shape(spec)[1]
        num_t = tf.maximum(self.nt.pick(ctx.clock, ctx.draw(1)), 0)
        num_f = tf.maximum(self.nf.pick(ctx.clock, ctx.draw(2)), 0)

        def flow(size, count, warp, k):
            spacing = tf.cast(size, tf.float32) / tf.cast(2 * (count + 1), tf.float32)
            shifts = tf.random.stateless_normal([num_t, num_f], ctx.draw(k)) * warp * spacing
            return tf.pad(shifts, [[1, 1], [1, 1]])  # no shift at the edges

        grid = tf.stack([flow(frames, num_t, self.wt.pick(ctx.clock, ctx.draw(3)), 4),
                         flow(bins, num_f, self.wf.pick(ctx.clock, ctx.draw(5)), 6)], axis=-1)
        dense = tf.image.resize(grid, tf.stack([frames, bins]), method="bicubic")
        return dense_warp(spec, dense)


@register("frequency_mask")
@dataclass(frozen=True)
class FrequencyMask(Augmentation):
    """SpecAugment frequency masks: ``n`` bands of ``size`` bins each take their mean over time."""

    n: ValueRange = int_param("3")
    size: ValueRange = int_param("2")
    domain = "spectrogram"

    def apply(self, spec, ctx: SampleContext):
        count = tf.maximum(self.n.pick(ctx.clock, ctx.draw(1)), 0)
        sizes = self.size.pick(ctx.clock, ctx.draw(2), shape=[count])
        masked = intervals(tf.shape(spec)[1], sizes, ctx.draw(3))
        return tf.where(masked[None, :], bin_means(spec), spec)


def _units_per_ms(domain: str, features: FeatureConfig) -> float:
    return features.sample_rate / 1000.0 if domain == "signal" else 1.0 / features.win_step_ms


@dataclass(frozen=True)
class MultiDomain(Augmentation):
    """An augmentation that works on the waveform (``domain=signal``) or the spectrogram."""

    def __post_init__(self):
        super().__post_init__()
        if self.domain not in ("signal", "spectrogram", "features"):
            raise ValueError(f"domain={self.domain} is not one of signal, spectrogram, features")

    def blank(self, x: tf.Tensor, where: tf.Tensor) -> tf.Tensor:
        """Silence (signal) or the bin means (spectrogram, features) at ``where`` (broadcast to x)."""
        fill = tf.zeros_like(x) if self.domain == "signal" else tf.broadcast_to(bin_means(x), tf.shape(x))
        return tf.where(tf.broadcast_to(where, tf.shape(x)), fill, x)


@register("time_mask")
@dataclass(frozen=True)
class TimeMask(MultiDomain):
    """SpecAugment time masks: ``n`` intervals of ``size`` ms each are silenced (signal) or take the
    bins' mean (spectrogram, features)."""

    domain: str = "spectrogram"
    n: ValueRange = int_param("3")
    size: ValueRange = float_param("10.0")

    def apply(self, x, ctx: SampleContext):
        count = tf.maximum(self.n.pick(ctx.clock, ctx.draw(1)), 0)
        sizes = self.size.pick(ctx.clock, ctx.draw(2), shape=[count])  # in ms
        sizes = sizes * _units_per_ms(self.domain, ctx.features)
        masked = intervals(tf.shape(x)[0], tf.cast(sizes, tf.int32), ctx.draw(3))
        return self.blank(x, masked if self.domain == "signal" else masked[:, None])


@register("dropout")
@dataclass(frozen=True)
class Dropout(MultiDomain):
    """Each element is dropped with probability ``rate`` (silenced, or its bin's mean). Mozilla's
    documented meaning; its 0.9.3 code kept only a ``rate`` share instead."""

    domain: str = "spectrogram"
    rate: ValueRange = float_param("0.05")

    def apply(self, x, ctx: SampleContext):
        rate = tf.maximum(self.rate.pick(ctx.clock, ctx.draw(1)), 0.0)
        return self.blank(x, tf.random.stateless_uniform(tf.shape(x), ctx.draw(2)) < rate)


@register("add")
@dataclass(frozen=True)
class Add(MultiDomain):
    """Add normal noise N(0, ``stddev``) to every element."""

    domain: str = "features"
    stddev: ValueRange = float_param("5")

    def apply(self, x, ctx: SampleContext):
        stddev = self.stddev.pick(ctx.clock, ctx.draw(1))
        return x + tf.random.stateless_normal(tf.shape(x), ctx.draw(2)) * stddev


@register("multiply")
@dataclass(frozen=True)
class Multiply(MultiDomain):
    """Multiply every element by N(1, ``stddev``)."""

    domain: str = "features"
    stddev: ValueRange = float_param("5")

    def apply(self, x, ctx: SampleContext):
        stddev = self.stddev.pick(ctx.clock, ctx.draw(1))
        return x * (1.0 + tf.random.stateless_normal(tf.shape(x), ctx.draw(2)) * stddev)
