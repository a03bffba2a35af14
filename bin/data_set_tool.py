#!/usr/bin/env python3
"""Write data sets (Mozilla's bin/data_set_tool.py), optionally augmented; look at and listen to what
``--augment`` feeds the model.

    bin/data_set_tool.py train.csv train.sdb                      # Opus SDB (--audio-type wav: lossless)
    bin/data_set_tool.py noise/*.csv noise.sdb --unlabeled        # a noise set for overlay[source=...]
    bin/data_set_tool.py train.sdb train.tar.gz                   # samples/ + samples.csv, as Mozilla
    bin/data_set_tool.py train.csv preview/aug.csv --number 8 --plots \\
        --augment "overlay[source=noise.sdb,snr=15~15]" --augment reverb[p=0.5] --augment frequency_mask

Reads the source CSVs and SDBs (merged, in order) and writes the target by its extension: ``.csv`` (and
one 16-bit WAV per sample in the folder ``TARGET`` without .csv), ``.sdb`` (Mozilla's Sample DataBase,
Opus at libopus's default or ``--bitrate`` bit/s, or WAV) or ``.tar``/``.tar.gz``/``.tgz`` (Mozilla's
layout: ``samples/sample00000000.wav``... and ``samples.csv``; ``--include`` adds files to its root).
Samples are written mono, 16-bit, at ``--audio_sample_rate``. ``--augment`` takes the trainer's specs;
the audio carries the waveform (sample- and signal-domain) augmentations, so a pre-augmented set can be
written. With ``--plots`` (CSV targets) a PNG next to each WAV shows the sample's log spectrogram before
and after all augmentations, spectrogram ones included: exactly the features training would use (before
the model's normalization). ``--clock`` stands for the training clock (0 = start, 1 = end of training)
of ``start:end`` ranges.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

import tensorflow as tf  # noqa: E402
from deepspeech.audio import to_int16  # noqa: E402

from deepspeech_training.augment import AugmentError, Augmenter, parse_augmentations  # noqa: E402
from deepspeech_training.data import DataError, read_rows, row_audio_info  # noqa: E402
from deepspeech_training.features import (AudioError, FeatureConfig, audio_tensor,  # noqa: E402
                                          is_native_wav, spectrogram)
from deepspeech_training.sample_sets import TARGET_KINDS, open_writer, ordered_map, target_kind  # noqa: E402
from deepspeech_training.sdb import AUDIO_TYPES, SDBError  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402
from deepspeech_training.util.plots import plot_augmented_sample  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="source CSV and SDB files")
    parser.add_argument("target", help="the .csv (its WAVs go into a folder of the same name), .sdb, .tar, "
                        ".tar.gz or .tgz to write")
    parser.add_argument("--audio-type", default="opus", choices=sorted(AUDIO_TYPES),
                        help="audio inside an SDB target: Opus (lossy, small) or WAV")
    parser.add_argument("--bitrate", type=int, help="Opus bitrate (bit/s) of an SDB target (default: libopus's)")
    parser.add_argument("--workers", type=int, default=None, help="encoding threads (default: one per CPU)")
    parser.add_argument("--include", action="append", default=[], help="a file to add to the root of a "
                        ".tar(.gz) target (repeatable)")
    parser.add_argument("--augment", action="append", default=[], help="augmentation spec, repeatable "
                        "(the trainer's --augment syntax)")
    parser.add_argument("--clock", type=float, default=0.5, help="training clock for start:end values (0-1)")
    parser.add_argument("--random_seed", type=int, default=4568, help="seed of the augmentations' draws")
    parser.add_argument("--start", type=int, default=0, help="skip this many source rows")
    parser.add_argument("--number", type=int, default=-1, help="write at most this many samples (-1 = all)")
    parser.add_argument("--plots", action="store_true", help="also write a spectrogram PNG per sample")
    parser.add_argument("--unlabeled", action="store_true", help="sources without transcripts (noise sets)")
    parser.add_argument("--absolute-paths", action="store_true", help="absolute WAV paths in the CSV")
    parser.add_argument("--audio_sample_rate", type=int, default=16000, help="sample rate of the WAVs")
    parser.add_argument("--feature_win_len", type=int, default=20, help="spectrogram window (ms), for plots")
    parser.add_argument("--feature_win_step", type=int, default=10, help="spectrogram step (ms), for plots")
    args = parser.parse_args(argv)
    if target_kind(args.target) is None:
        parser.error(f"{args.target}: unknown target kind (use {', '.join(TARGET_KINDS)})")
    if args.plots and target_kind(args.target) != ".csv":
        parser.error("--plots writes a PNG beside each WAV: it needs a .csv target")
    return args


def readable_rows(sources, labeled, sample_rate):
    """(row, native_wav) of every source row whose audio can be read; the others are named."""
    usable = []
    for source in sources:
        for row in read_rows(source, labeled=labeled):
            try:
                info = row_audio_info(row)
            except (AudioError, SDBError) as err:
                log.warning("skipping %s: %s", row.where, err)
                continue
            usable.append((row, is_native_wav(info, sample_rate)))
    return usable


def augmented_samples(rows, augmenter: Augmenter, features: FeatureConfig, plots: bool = False):
    """tf.data of (index, augmented waveform), with ``plots`` also (original spectrogram, augmented
    spectrogram)."""
    paths = tf.constant([row.path for row, _ in rows])
    native = tf.constant([n for _, n in rows])
    records = tf.constant([row.record for row, _ in rows], tf.int64)
    transcripts = tf.constant([row.transcript for row, _ in rows])

    def load(index, path, native_wav, record, transcript):
        audio = audio_tensor(path, native_wav, features, record)
        # characters stand in for labels: tempo and speed keep one frame per character for CTC
        labels = tf.strings.unicode_decode(transcript, "UTF-8")
        wave, spec = augmenter.augment_sample(audio, labels, index, index)
        return (index, wave, spectrogram(audio, features), spec) if plots else (index, wave)

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(rows), dtype=tf.int64), paths, native, records,
                                             transcripts))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(4)


def write(args, rows, augmenter, features) -> int:
    writer = open_writer(args.target, labeled=not args.unlabeled, audio_type=AUDIO_TYPES[args.audio_type],
                         bitrate=args.bitrate, absolute_paths=args.absolute_paths, include=args.include)

    def encode(item):
        return item, writer.encode(to_int16(item[1].numpy()), features.sample_rate)

    try:
        for item, data in ordered_map(encode, augmented_samples(rows, augmenter, features, args.plots),
                                      args.workers or os.cpu_count() or 1):
            row = rows[int(item[0])][0]
            written = writer.add_encoded(data, None if args.unlabeled else row.transcript)
            if args.plots:
                title = f"{row.where}: {row.transcript[:80]}"
                plot_augmented_sample(item[2].numpy(), item[3].numpy(), written[:-4] + ".png", title,
                                      frame_ms=features.win_step_ms)
    finally:
        writer.close()
    return len(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(1)
    try:
        features = FeatureConfig(sample_rate=args.audio_sample_rate, win_len_ms=args.feature_win_len,
                                 win_step_ms=args.feature_win_step)
        augmenter = Augmenter(parse_augmentations(args.augment), features, time_stride=1,
                              seed=args.random_seed).with_clock(args.clock)
        rows = readable_rows(args.sources, not args.unlabeled, features.sample_rate)[args.start:]
        rows = rows if args.number < 0 else rows[:args.number]
        if not rows:
            raise DataError(f"{', '.join(args.sources)}: no readable samples to write")
        if augmenter:
            log.info("Augmenting with %s at clock %.2f", augmenter.describe(), args.clock)
        count = write(args, rows, augmenter, features)
    except (AugmentError, DataError, AudioError, ValueError, OSError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %d samples to %s%s", count, args.target, " with spectrogram PNGs" if args.plots else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
