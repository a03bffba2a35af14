#!/usr/bin/env python3
"""Noise for the augmentation experiment: noise collections and a noisy copy of a held-out set.

    .venv/bin/python bench/make_noisy_set.py --train_csv data/espeak-en/train.csv \
        --test_csv data/espeak-en/test.csv --out_dir .cache/bench/noisy

Writes, under --out_dir:
- ``noise_train.csv``: unlabeled noise clips for ``--augment overlay[source=...]`` (white, pink and brown
  noise, and babble: several training utterances spoken at once);
- ``test_noisy.csv``: every --test_csv clip mixed with a *different* noise clip (other seeds, babble
  from other utterances) at an SNR drawn uniformly from --snr_min..--snr_max dB, same transcripts.
Deterministic under --seed; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from deepspeech_training.data import read_csv_rows  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402

RATE = 16000
KINDS = ("white", "pink", "brown", "babble")


def colored_noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) noise, unit RMS."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    spectrum *= {"white": 1.0, "pink": 1 / np.sqrt(f), "brown": 1 / f}[kind]
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise ** 2))


def babble(paths: list[str], seconds: float, talkers: int, rng: np.random.Generator) -> np.ndarray:
    """``talkers`` utterances (looped to length) spoken at once, unit RMS."""
    n = int(seconds * RATE)
    mix = np.zeros(n)
    for path in rng.choice(paths, talkers, replace=False):
        speech, _ = soundfile.read(path, dtype="float64")
        speech = speech / (np.sqrt(np.mean(speech ** 2)) + 1e-9)
        mix += np.resize(speech, n)
    return mix / np.sqrt(np.mean(mix ** 2))


def noise_clip(kind: str, seconds: float, speech_paths: list[str], rng: np.random.Generator) -> np.ndarray:
    if kind == "babble":
        return babble(speech_paths, seconds, int(rng.integers(3, 7)), rng)
    return colored_noise(kind, seconds, rng)


def write_wav(path: str, audio: np.ndarray) -> None:
    peak = np.max(np.abs(audio))
    soundfile.write(path, audio / peak * 0.9 if peak > 0.99 else audio, RATE, subtype="PCM_16")


def write_csv(path: str, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["wav_filename", "wav_filesize", "transcript"])
        for wav, transcript in rows:
            out.writerow([os.path.relpath(wav, os.path.dirname(path)), os.path.getsize(wav), transcript])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_csv", required=True, help="training set: babble for the training noise")
    parser.add_argument("--test_csv", required=True, help="held-out set to copy with noise")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--noise_clips", type=int, default=40, help="training noise clips (10 s each)")
    parser.add_argument("--snr_min", type=float, default=5.0)
    parser.add_argument("--snr_max", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    setup_logging(1)
    os.makedirs(os.path.join(args.out_dir, "noise"), exist_ok=True)
    os.makedirs(os.path.join(args.out_dir, "test"), exist_ok=True)
    speech = [r.path for r in read_csv_rows(args.train_csv)]
    half = len(speech) // 2  # babble for training noise and for test noise from different utterances
    rng = np.random.default_rng([args.seed, 0])
    noise_rows = []
    for i in range(args.noise_clips):
        kind = KINDS[i % len(KINDS)]
        path = os.path.join(args.out_dir, "noise", f"{kind}-{i:03d}.wav")
        write_wav(path, 0.1 * noise_clip(kind, 10.0, speech[:half], rng))
        noise_rows.append((path, ""))
    write_csv(os.path.join(args.out_dir, "noise_train.csv"), noise_rows)
    rng = np.random.default_rng([args.seed, 1])
    test_rows, snrs = [], []
    for i, row in enumerate(read_csv_rows(args.test_csv)):
        clean, rate = soundfile.read(row.path, dtype="float64")
        if rate != RATE:
            raise SystemExit(f"{row.where}: {rate} Hz; this tool mixes {RATE} Hz clips")
        noise = noise_clip(KINDS[i % len(KINDS)], len(clean) / RATE + 0.01, speech[half:], rng)[:len(clean)]
        snr = rng.uniform(args.snr_min, args.snr_max)
        speech_rms = np.sqrt(np.mean(clean ** 2))
        mixed = clean + noise * speech_rms / 10 ** (snr / 20)
        path = os.path.join(args.out_dir, "test", os.path.basename(row.path))
        write_wav(path, mixed)
        test_rows.append((path, row.transcript))
        snrs.append(snr)
    write_csv(os.path.join(args.out_dir, "test_noisy.csv"), test_rows)
    log.info("Wrote %d noise clips and %d noisy test clips (SNR %.1f-%.1f dB, mean %.1f)", len(noise_rows),
             len(test_rows), min(snrs), max(snrs), float(np.mean(snrs)))


if __name__ == "__main__":
    main()
