#!/usr/bin/env python3
"""Play (and augment) samples of an SDB, a CSV data set or one audio file (Mozilla's bin/play.py).

    bin/play.py train.sdb --start 17 --number 3
    bin/play.py train.csv --random --augment "overlay[source=noise.sdb,snr=10]" --clock 0.2
    bin/play.py train.sdb --start -1 --pipe > last.wav

Samples are played in order from ``--start`` (negative: from the end), ``--number`` of them (-1: on
and on) or at random. ``--augment`` applies the trainer's waveform augmentations (sample and signal
domain; the others change only features) at training clock ``--clock``. Sound goes to ``aplay``
(ALSA) or sox's ``play``; ``--pipe`` writes the first sample as a WAV file to stdout instead.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

from deepspeech.audio import to_int16  # noqa: E402
from deepspeech_training.augment import Augmenter, AugmentError, parse_augmentations  # noqa: E402
from deepspeech_training.data import DataError, Row, read_rows  # noqa: E402
from deepspeech_training.features import AudioError, FeatureConfig, load_any  # noqa: E402
from deepspeech_training.sdb import SDBError, is_sdb_path, wav_bytes  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402

PLAYERS = (("aplay", ["aplay", "-q", "-"]), ("play", ["play", "-q", "-t", "wav", "-"]))


class PlayError(ValueError):
    """A source or sample that cannot be played; the message names it."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="SDB, CSV or audio file to play samples from")
    parser.add_argument("--start", type=int, default=0,
                        help="sample index to start at (negative numbers count from the end)")
    parser.add_argument("--number", type=int, default=-1, help="number of samples to play (-1: endless)")
    parser.add_argument("--random", action="store_true", help="play samples in random order")
    parser.add_argument("--augment", action="append", default=[], help="augmentation spec, repeatable "
                        "(the trainer's --augment syntax)")
    parser.add_argument("--clock", type=float, default=0.5,
                        help="training clock of start:end augmentation values, 0.0 (start) to 1.0 (end)")
    parser.add_argument("--pipe", action="store_true", help="write the first sample as WAV to stdout")
    parser.add_argument("--quiet", action="store_true", help="no sample names and transcripts on stderr")
    parser.add_argument("--audio_sample_rate", type=int, default=16000, help="sample rate to play at")
    parser.add_argument("--random_seed", type=int, default=None, help="seed of --random and augmentations")
    return parser.parse_args(argv)


def source_rows(source: str) -> list[Row]:
    if is_sdb_path(source) or source.lower().endswith(".csv"):
        rows = read_rows(source, labeled=False)
    elif os.path.isfile(source):
        rows = [Row(source, "", source)]
    else:
        raise PlayError(f"{source}: file not found")
    if not rows:
        raise PlayError(f"{source}: no samples")
    return rows


def play_order(count: int, start: int, number: int, shuffle: bool, rng: random.Random):
    """Indices to play, as Mozilla: from ``start`` on (wrapping around), ``number`` of them (-1: endless)."""
    if not shuffle and not -count <= start < count:
        raise PlayError(f"no sample with index {start} (the source holds {count})")
    index, played = start % count, 0
    while number < 0 or played < number:
        yield rng.randrange(count) if shuffle else index
        played += 1
        index = (index + 1) % count


def sample_audio(row: Row, index: int, augmenter: Augmenter, features: FeatureConfig):
    audio = load_any(row.path, row.record, features.sample_rate)
    if augmenter:
        import tensorflow as tf
        labels = tf.strings.unicode_decode(row.transcript, "UTF-8")  # characters stand in for labels
        audio, _ = augmenter.augment_sample(tf.constant(audio), labels, tf.constant(index, tf.int64),
                                            tf.constant(index, tf.int64))
        audio = audio.numpy()
    return to_int16(audio)


def player_command():
    for tool, command in PLAYERS:
        if shutil.which(tool):
            return command
    return None


def play(args) -> int:
    features = FeatureConfig(sample_rate=args.audio_sample_rate)
    augmenter = Augmenter(parse_augmentations(args.augment), features, time_stride=1,
                          seed=args.random_seed or 0).with_clock(args.clock)
    command = None if args.pipe else player_command()
    if not args.pipe and command is None:
        raise PlayError("no audio player found: install aplay (alsa-utils) or play (sox), or use --pipe")
    rows = source_rows(args.source)
    number = 1 if args.pipe else args.number
    played = 0
    for index in play_order(len(rows), args.start, number, args.random, random.Random(args.random_seed)):
        row = rows[index]
        if not args.quiet:
            print(f'Sample "{row.path}:{row.record}"' if row.record >= 0 else f'Sample "{row.path}"',
                  file=sys.stderr)
            if row.transcript:
                print(f'  "{row.transcript}"', file=sys.stderr)
        wav = wav_bytes(sample_audio(row, index, augmenter, features), features.sample_rate)
        if args.pipe:
            sys.stdout.buffer.write(wav)
            sys.stdout.buffer.flush()
        else:
            subprocess.run(command, input=wav, check=False)
        played += 1
    return played


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(3 if args.quiet else 1)
    try:
        play(args)
    except (PlayError, AugmentError, DataError, AudioError, SDBError, ValueError, OSError) as err:
        log.error("%s", err)
        return 1
    except KeyboardInterrupt:
        print(" Stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
