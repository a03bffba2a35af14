#!/usr/bin/env python3
"""Write data sets (Mozilla's bin/data_set_tool.py), optionally augmented; look at and listen to what
``--augment`` feeds the model.

    bin/data_set_tool.py train.csv preview/aug.csv --number 8 --plots \\
        --augment "overlay[source=noise.csv,snr=15~15]" --augment reverb[p=0.5] --augment frequency_mask

Reads the source CSVs (merged, in order), writes ``TARGET.csv`` and one 16-bit WAV per sample into the
folder ``TARGET`` (without .csv). ``--augment`` takes the trainer's specs; the WAVs carry the waveform
(sample- and signal-domain) augmentations, so a pre-augmented set can be written. With ``--plots`` a PNG
next to each WAV shows the sample's log spectrogram before and after all augmentations, spectrogram
ones included: exactly the features training would use (before the model's normalization).
``--clock`` stands for the training clock (0 = start, 1 = end of training) of ``start:end`` ranges.
Only CSV targets with WAV audio are written (no SDB, tar or Opus).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepspeech_training.augment import AugmentError, Augmenter, parse_augmentations  # noqa: E402
from deepspeech_training.data import DataError, read_csv_rows  # noqa: E402
from deepspeech_training.features import (AudioError, FeatureConfig, audio_info, audio_tensor,  # noqa: E402
                                          is_native_wav, spectrogram)
from deepspeech_training.util.log import log, setup_logging  # noqa: E402
from deepspeech_training.util.plots import plot_augmented_sample  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="source CSV files")
    parser.add_argument("target", help="CSV file to write; the WAVs go into a folder of the same name")
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
    if not args.target.endswith(".csv"):
        parser.error(f"{args.target}: only .csv targets are written (no .sdb or .tar)")
    return args


def readable_rows(sources, labeled, sample_rate):
    """(row, native_wav) of every source row whose audio can be read; the others are named."""
    usable = []
    for source in sources:
        for row in read_csv_rows(source, labeled=labeled):
            try:
                info = audio_info(row.path)
            except AudioError as err:
                log.warning("skipping %s: %s", row.where, err)
                continue
            usable.append((row, is_native_wav(info, sample_rate)))
    return usable


def augmented_samples(rows, augmenter: Augmenter, features: FeatureConfig):
    """tf.data of (index, original spectrogram, augmented waveform, augmented spectrogram)."""
    paths = tf.constant([row.path for row, _ in rows])
    native = tf.constant([n for _, n in rows])
    transcripts = tf.constant([row.transcript for row, _ in rows])

    def load(index, path, native_wav, transcript):
        audio = audio_tensor(path, native_wav, features)
        # characters stand in for labels: tempo and speed keep one frame per character for CTC
        labels = tf.strings.unicode_decode(transcript, "UTF-8")
        wave, spec = augmenter.augment_sample(audio, labels, index, index)
        return index, spectrogram(audio, features), wave, spec

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(rows), dtype=tf.int64), paths, native, transcripts))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(4)


def write(args, rows, augmenter, features) -> int:
    folder = args.target[:-len(".csv")]
    os.makedirs(folder, exist_ok=True)
    base = os.path.dirname(os.path.abspath(args.target))
    with open(args.target, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize", "transcript"])
        for index, original, wave, spec in augmented_samples(rows, augmenter, features):
            row = rows[int(index)][0]
            wav = os.path.join(folder, f"{int(index):06d}.wav")
            soundfile.write(wav, np.clip(wave.numpy(), -1.0, 1.0), features.sample_rate, subtype="PCM_16")
            name = os.path.abspath(wav) if args.absolute_paths else os.path.relpath(wav, base)
            writer.writerow([name, os.path.getsize(wav), row.transcript])
            if args.plots:
                title = f"{row.where}: {row.transcript[:80]}"
                plot_augmented_sample(original.numpy(), spec.numpy(), wav[:-4] + ".png", title,
                                      frame_ms=features.win_step_ms)
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
    except (AugmentError, DataError, AudioError, ValueError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %d samples to %s%s", count, args.target, " with spectrogram PNGs" if args.plots else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
