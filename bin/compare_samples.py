#!/usr/bin/env python3
"""Check whether two samples, or two sample sets sample by sample, hold the same audio (Mozilla's
bin/compare_samples.py).

    bin/compare_samples.py a.wav b.wav
    bin/compare_samples.py train.csv train.sdb --threshold -20      # an Opus SDB against its source

Two samples differ when their audio formats (rate, channels, sample width) or durations differ, or when
the level of their difference exceeds ``--threshold`` dBFS (Mozilla's mean dBFS: the RMS in dB plus
3.0103). ``--if-differ`` inverts the check (different formats or durations still fail). Sets (CSV or SDB)
are compared in file order and must hold as many samples. Exit status 0 when every pair passes, else 1;
each failing pair is reported on stderr.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections import namedtuple

import numpy as np
import soundfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

from deepspeech_training.data import DataError, Row, read_rows  # noqa: E402
from deepspeech_training.sdb import AUDIO_OPUS, SDBError, is_sdb_path, open_sdb  # noqa: E402

AudioFormat = namedtuple("AudioFormat", "rate channels width")
WIDTHS = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


class CompareError(ValueError):
    """A sample or set that cannot be read; the message names it."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sample1", help="audio file (or CSV/SDB sample set) 1 to compare")
    parser.add_argument("sample2", help="audio file (or CSV/SDB sample set) 2 to compare")
    parser.add_argument("--threshold", type=float, default=-60.0,
                        help="dB of sample deltas above which they are considered different")
    parser.add_argument("--if-differ", action="store_true",
                        help="succeed on different signals and fail on equal ones (formats and durations "
                             "must still be equal)")
    parser.add_argument("--no-success-output", action="store_true", help="stay silent on success")
    return parser.parse_args(argv)


def is_set(path: str) -> bool:
    return is_sdb_path(path) or path.lower().endswith(".csv")


def sample_rows(path: str) -> list[Row]:
    if is_set(path):
        return read_rows(path, labeled=False)
    if not os.path.isfile(path):
        raise CompareError(f"{path}: file not found")
    return [Row(path, "", path)]


def read_sample(row: Row) -> tuple[np.ndarray, AudioFormat]:
    """-> (float32 audio [frames, channels], its format)."""
    if row.record >= 0:
        reader = open_sdb(row.path)
        if reader.audio_type == AUDIO_OPUS:
            pcm, rate = reader.pcm(row.record)
            return pcm.astype(np.float32) / 32768.0, AudioFormat(rate, pcm.shape[1], 2)
        data = io.BytesIO(reader.audio_bytes(row.record))
    else:
        data = row.path
    try:
        info = soundfile.info(data)
        if isinstance(data, io.BytesIO):
            data.seek(0)
        audio, rate = soundfile.read(data, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for unreadable audio
        raise CompareError(f"{row.where}: cannot read audio ({err})") from err
    return audio, AudioFormat(rate, audio.shape[1], WIDTHS.get(info.subtype, 0))


def mean_dbfs(audio: np.ndarray) -> float:
    rms = math.sqrt(float(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * math.log10(max(1e-16, rms)) + 3.0103


def compare_pair(row1: Row, row2: Row, args) -> tuple[bool, str]:
    """-> (passed, message) for one pair of samples."""
    (audio1, format1), (audio2, format2) = read_sample(row1), read_sample(row2)
    if format1 != format2:
        return False, f"Samples differ on: audio-format ({format1} and {format2})"
    if len(audio1) != len(audio2):
        return False, (f"Samples differ on: duration ({len(audio1) / format1.rate} and "
                       f"{len(audio2) / format2.rate})")
    diff = mean_dbfs(audio1 - audio2)
    equal = diff <= args.threshold
    if equal:
        return not args.if_differ, f"Samples are considered equal ({diff:0.2f} dB difference)"
    return args.if_differ, f"Samples differ on: sample data ({diff:0.2f} dB difference)"


def compare(args) -> int:
    rows1, rows2 = sample_rows(args.sample1), sample_rows(args.sample2)
    if len(rows1) != len(rows2):
        print(f"Sets differ on: sample count ({len(rows1)} and {len(rows2)})", file=sys.stderr)
        return 1
    several = len(rows1) > 1 or is_set(args.sample1) or is_set(args.sample2)
    failed = 0
    for row1, row2 in zip(rows1, rows2):
        passed, message = compare_pair(row1, row2, args)
        failed += not passed
        if several:
            message = f"{row1.where} / {row2.where}: {message}"
        if not passed or not args.no_success_output:
            print(message, file=sys.stderr, flush=True)
    if several and (failed or not args.no_success_output):
        print(f"{failed} of {len(rows1)} pairs failed the check", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return compare(args)
    except (CompareError, DataError, SDBError) as err:
        print(err, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
