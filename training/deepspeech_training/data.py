"""Data sets (Mozilla's CSV ``wav_filename,wav_filesize,transcript`` or SDB), validation and tf.data
batches.

Every row is checked before training starts: a missing or unreadable file, an empty transcript, a
character outside the alphabet, or a transcript too long for CTC at the model's output rate is
reported with CSV, line and file, and skipped (or, with ``fail_fast``, raised as ``DataError``).
"""
from __future__ import annotations

import collections
import csv
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import sdb
from .features import (AudioError, FeatureCache, FeatureConfig, audio_info, audio_tensor, cached_spectrogram,
                       is_native_wav, spectrogram)
from ds_ctcdecoder.alphabet import Alphabet, UTF8Alphabet
from .util.log import log

REQUIRED_COLUMNS = ("wav_filename", "transcript")


class DataError(ValueError):
    """A data set problem; the message names the CSV, line and file."""


@dataclass(frozen=True)
class Sample:
    path: str
    transcript: str
    labels: tuple[int, ...]
    duration: float
    native_wav: bool
    where: str  # "train.csv:17" (a CSV's line) or "train.sdb:16" (an SDB's sample) for messages
    record: int = -1  # an SDB's sample number (``path`` is the SDB), -1 for an audio file

    @property
    def name(self) -> str:
        """The audio's name in reports: its file, or "x.sdb:16" (Mozilla's sample id)."""
        return f"{self.path}:{self.record}" if self.record >= 0 else self.path


@dataclass(frozen=True)
class Row:
    path: str
    transcript: str
    where: str
    record: int = -1  # as Sample.record


def ctc_frames_needed(labels) -> int:
    """CTC needs one frame per label plus a blank between each pair of repeated labels."""
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)


def read_csv_rows(csv_path: str, labeled: bool = True) -> list[Row]:
    """Rows of a Mozilla CSV; relative paths resolve against the CSV's folder. Unlabeled sets (noise
    for --augment overlay) may lack the transcript column."""
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: data set CSV not found")
    base = os.path.dirname(os.path.abspath(csv_path))
    rows = []
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        required = REQUIRED_COLUMNS if labeled else REQUIRED_COLUMNS[:1]
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                            f"(expected wav_filename,wav_filesize,transcript)")
        name = os.path.basename(csv_path)
        for line, record in enumerate(reader, start=2):
            path = os.path.join(base, record["wav_filename"] or "")
            rows.append(Row(path, (record.get("transcript") or "").strip(), f"{name}:{line}"))
    return rows


def read_sdb_rows(sdb_path: str, labeled: bool = True) -> list[Row]:
    """One row per sample of an SDB (in file order); an unlabeled SDB (noise) gives empty transcripts."""
    reader = sdb.open_sdb(sdb_path)
    if labeled and not reader.labeled:
        raise DataError(f"{sdb_path}: no transcripts (an unlabeled SDB, for noise)")
    name = os.path.basename(sdb_path)
    return [Row(reader.path, (reader.transcript(i) or "").strip(), f"{name}:{i}", i) for i in range(len(reader))]


def read_rows(path: str, labeled: bool = True) -> list[Row]:
    """The rows of a data set: a CSV or an SDB (by its .sdb extension)."""
    return read_sdb_rows(path, labeled) if sdb.is_sdb_path(path) else read_csv_rows(path, labeled)


def row_audio_info(row: Row):
    """The audio's frames, sample rate, format (soundfile's info, or an SDB sample's); raises AudioError
    or sdb.SDBError."""
    if row.record >= 0:
        return sdb.open_sdb(row.path).info(row.record)
    return audio_info(row.path)


def check_row(row: Row, alphabet: Alphabet, features: FeatureConfig, time_stride: int):
    """-> (Sample, None) or (None, (reason kind, message))."""
    if row.record < 0 and not os.path.isfile(row.path):
        return None, ("missing file", f"{row.where} ({row.path}): file not found")
    try:
        info = row_audio_info(row)
    except (AudioError, sdb.SDBError) as err:
        return None, ("unreadable audio", f"{row.where}: {err}")
    if info.frames == 0:
        return None, ("empty audio", f"{row.where} ({row.path}): no audio samples")
    if not row.transcript:
        return None, ("empty transcript", f"{row.where} ({row.path}): empty transcript")
    missing = alphabet.missing(row.transcript)
    if missing:
        return None, ("characters outside the alphabet",
                      f"{row.where} ({row.path}): characters not in the alphabet: {''.join(missing)!r}")
    labels = tuple(alphabet.encode(row.transcript))
    samples = int(round(info.frames * features.sample_rate / info.samplerate))
    frames = features.num_frames(samples)
    out_frames = -(-frames // time_stride)
    if ctc_frames_needed(labels) > out_frames:
        return None, ("transcript too long for its audio",
                      f"{row.where} ({row.path}): transcript of {len(labels)} "
                      f"{'UTF-8 bytes' if isinstance(alphabet, UTF8Alphabet) else 'characters'} needs "
                      f"{ctc_frames_needed(labels)} output frames, the {info.duration:.2f} s clip gives "
                      f"{out_frames}")
    return Sample(row.path, row.transcript, labels, samples / features.sample_rate,
                  is_native_wav(info, features.sample_rate), row.where, row.record), None


def load_samples(csv_files: list[str], alphabet: Alphabet, features: FeatureConfig, time_stride: int,
                 limit: int = 0, fail_fast: bool = False, progress: bool = True) -> list[Sample]:
    """Read and validate data sets (CSVs or SDBs). Bad rows are reported and skipped."""
    rows = [row for path in csv_files for row in read_rows(path)]
    if limit:
        rows = rows[:limit]
    label = ",".join(os.path.basename(p) for p in csv_files)
    samples, problems = [], collections.Counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda r: check_row(r, alphabet, features, time_stride), rows)
        for sample, problem in tqdm(results, total=len(rows), desc=f"Checking {label}",
                                    disable=not progress, unit=" rows", leave=False):
            if problem is None:
                samples.append(sample)
                continue
            if fail_fast:
                raise DataError(problem[1])
            problems[problem[0]] += 1
            log.warning("skipping %s", problem[1])
    if problems:
        summary = ", ".join(f"{n} {kind}" for kind, n in problems.most_common())
        log.warning("%s: skipped %d of %d rows: %s", label, sum(problems.values()), len(rows), summary)
    if not samples:
        raise DataError(f"{label}: no usable samples")
    decoded = sum(not s.native_wav and s.record < 0 for s in samples)
    if decoded:
        log.warning("%s: %d files are not 16-bit WAV at %d Hz; they are decoded and resampled on the fly",
                    label, decoded, features.sample_rate)
    hours = sum(s.duration for s in samples) / 3600
    log.info("%s: %d samples, %.2f hours", label, len(samples), hours)
    return samples


def batch_order(samples: list[Sample], batch_size: int, epoch: int, sortagrad: bool, seed: int,
                drop_remainder: bool, reverse: bool = False) -> np.ndarray:
    """The epoch's sample order, whose consecutive runs of ``batch_size`` form the batches.

    Batches group samples of similar length so padding stays low. SortaGrad: the first epoch runs
    in increasing length (decreasing with ``reverse``, Mozilla's --reverse_*: the longest batches,
    those that run out of memory, come first); later epochs shuffle the batches (and jitter which
    samples share one).
    """
    durations = np.array([s.duration for s in samples])
    rng = np.random.default_rng([seed, epoch])
    if sortagrad and epoch == 0:
        order = np.argsort(-durations if reverse else durations, kind="stable")
    else:
        jitter = rng.uniform(0.9, 1.1, len(durations))
        order = np.argsort(durations * jitter, kind="stable")
    n_batches = len(order) // batch_size if drop_remainder else -(-len(order) // batch_size)
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]
    if not (sortagrad and epoch == 0):
        rng.shuffle(batches)
    return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)


def padding_efficiency(samples: list[Sample], order: np.ndarray, batch_size: int) -> float:
    """Real frames / padded frames over the batches of ``order``."""
    durations = np.array([samples[i].duration for i in order])
    real = padded = 0.0
    for i in range(0, len(durations), batch_size):
        chunk = durations[i:i + batch_size]
        real += chunk.sum()
        padded += chunk.max() * len(chunk)
    return real / padded if padded else 1.0


@functools.lru_cache(maxsize=16)
def plain_features(features: FeatureConfig, cached: bool):
    """A tf.function (path, is 16-bit WAV at the model rate, SDB record or -1, --feature_cache file) ->
    the un-augmented features, traced once per config: tf.data traces a map function again for every new
    dataset, which cost a fifth of a second per epoch (twice with a dev set), the run time of one-clip
    epochs."""
    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.bool),
                                  tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string)])
    def plain(path, native_wav, record, cache_file):
        def load_audio():
            return audio_tensor(path, native_wav, features, record)

        if cached:
            return cached_spectrogram(cache_file, load_audio, features)
        return spectrogram(load_audio(), features)

    return plain


def make_dataset(samples: list[Sample], order: np.ndarray, features: FeatureConfig, batch_size: int,
                 drop_remainder: bool = False, augment=None, cache: FeatureCache | None = None,
                 positions: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches ((features [B,T,F], lengths [B]), (labels [B,L], label lengths [B]), indices [B]).

    Decoding and featurization run in parallel; batches are prefetched. Training passes ``augment``
    (an augment.Augmenter for the epoch) and ``cache`` (--feature_cache, un-augmented features);
    ``positions``: where each sample sits in the epoch's order (moves the augmentation clock; a worker
    of a multi-worker job reads only some of them).
    """
    order = np.asarray(order, dtype=np.int64)
    paths = tf.constant([samples[i].path for i in order], tf.string)
    native = tf.constant([samples[i].native_wav for i in order], tf.bool)
    records = tf.constant([samples[i].record for i in order], tf.int64)
    # (a worker of a multi-worker job can have no share of a small set: an empty dataset)
    labels = tf.RaggedTensor.from_row_lengths(
        tf.constant([label for i in order for label in samples[i].labels], tf.int32),
        tf.constant([len(samples[i].labels) for i in order], tf.int64))
    cache_files = tf.constant([cache.file_for(samples[i].path, samples[i].record) if cache else ""
                               for i in order], tf.string)
    positions = tf.constant(np.arange(len(order)) if positions is None else positions, tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(((paths, native, records), labels, tf.constant(order), positions,
                                             cache_files))

    plain = plain_features(features, cache is not None)

    def featurize(audio_source, label, index, position, cache_file):
        def load_audio():
            path, native_wav, record = audio_source
            return audio_tensor(path, native_wav, features, record)

        def plain_spectrogram():
            return plain(*audio_source, cache_file)

        if augment:
            spec = augment.spectrogram(load_audio, plain_spectrogram, label, index, position)
        else:
            spec = plain_spectrogram()
        return spec, tf.shape(spec)[0], label, tf.shape(label)[0], index

    ds = ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder,
                         padded_shapes=([None, features.n_features], [], [None], [], []))
    ds = ds.map(lambda x, xl, y, yl, i: ((x, xl), (y, yl), i))
    return ds.prefetch(tf.data.AUTOTUNE)  # sharded by distribute.replica_order, not by tf.data


def feature_statistics(samples: list[Sample], features: FeatureConfig, max_samples: int = 2000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation of the features over (a sample of) the training set."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(samples))[:max_samples]
    total = np.zeros(features.n_features, np.float64)
    total_sq = np.zeros(features.n_features, np.float64)
    count = 0
    for (x, lengths), _, _ in make_dataset(samples, np.sort(pick), features, batch_size=32):
        mask = tf.sequence_mask(lengths, tf.shape(x)[1], dtype=x.dtype)[:, :, None]
        total += tf.reduce_sum(x * mask, axis=[0, 1]).numpy()
        total_sq += tf.reduce_sum(tf.square(x) * mask, axis=[0, 1]).numpy()
        count += int(tf.reduce_sum(lengths))
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)
