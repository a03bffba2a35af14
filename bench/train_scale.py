#!/usr/bin/env python3
"""Scaling on one machine: the trainer CLI under MirroredStrategy over N logical CPU devices vs the default
strategy, at the same global batch (--train_batch_size = global batch / N).

    .venv/bin/python bench/train_scale.py --csv .cache/bench/scale-en/train.csv --devices 1 2

Runs ./DeepSpeech.py (demo geometry: the flag defaults) for --epochs epochs of --limit_train samples, no
dev set, and reads the trainer's own per-epoch "s of audio per second" log line. The first epoch (tracing,
SortaGrad order) is left out; steps per second = audio throughput x steps per epoch / audio per epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "training"))

EPOCH_LINE = re.compile(r"Epoch (\d+): train loss ([\d.naif]+), (\d+) s of audio per second")


def audio_seconds(csv: str, alphabet: str, limit: int) -> float:
    """Seconds of audio in the first ``limit`` rows of ``csv``: what one epoch of the trainer reads."""
    from deepspeech_training.data import load_samples
    from deepspeech_training.features import FeatureConfig
    from ds_ctcdecoder.alphabet import Alphabet

    samples = load_samples([csv], Alphabet.from_file(alphabet), FeatureConfig(), time_stride=3, limit=limit,
                           progress=False)
    return sum(s.duration for s in samples)


def run(devices: int, args, extra: list[str], workers: int = 1) -> dict:
    """One trainer run on ``devices`` logical CPUs, or on ``workers`` processes of one device each
    (MultiWorkerMirroredStrategy over 127.0.0.1, bin/run-multiworker.sh --local)."""
    per_device = args.global_batch // (devices * workers)
    launcher = ["bash", "bin/run-multiworker.sh", "--local", str(workers), "--"] if workers > 1 else \
        [sys.executable, "DeepSpeech.py"]
    with tempfile.TemporaryDirectory() as ck:
        cmd = [*launcher, "--train_files", args.csv,
               "--alphabet_config_path", args.alphabet, "--limit_train", str(args.limit_train),
               "--train_batch_size", str(per_device), "--cpu_devices", str(devices), "--epochs",
               str(args.epochs), "--checkpoint_dir", ck, "--noshow_progressbar", "--summary_dir", "",
               "--load_train", "init", *extra]
        load_before, started = os.getloadavg()[0], time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PY": sys.executable})
        wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"DeepSpeech.py failed:\n{proc.stderr[-3000:]}")
    chief = "\n".join(line for line in proc.stderr.splitlines()  # every worker logs the job's figures
                      if workers == 1 or line.startswith("[worker 0]"))
    epochs = [(int(e), float(loss), float(speed)) for e, loss, speed in EPOCH_LINE.findall(chief)]
    timed = [speed for e, _, speed in epochs if e > 1]
    return {"devices": devices, "workers": workers, "per_device_batch": per_device,
            "epoch_audio_s_per_s": [s for _, _, s in epochs],
            "losses": [loss for _, loss, _ in epochs], "audio_s_per_s": sum(timed) / len(timed),
            "wall_s": wall, "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
            "command": " ".join(cmd[1 if workers == 1 else 0:]).replace(ck, "CHECKPOINT_DIR")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="training CSV")
    parser.add_argument("--alphabet", default="data/alphabet.txt", help="alphabet (relative to the repository)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2],
                        help="logical CPU devices to compare")
    parser.add_argument("--workers", type=int, nargs="*", default=[],
                        help="also: this many worker processes on 127.0.0.1, one device each")
    parser.add_argument("--global_batch", type=int, default=32, help="global batch (split over the devices)")
    parser.add_argument("--limit_train", type=int, default=320, help="training samples per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is not timed")
    parser.add_argument("--output", default="", help="append one JSON line per run to this file")
    parser.add_argument("extra", nargs="*", help="further DeepSpeech.py flags (after --)")
    args = parser.parse_args()
    args.csv = os.path.relpath(os.path.abspath(args.csv), ROOT)
    os.chdir(ROOT)  # the trainer runs from the repository root
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    audio = audio_seconds(args.csv, args.alphabet, args.limit_train)
    steps = args.limit_train // args.global_batch
    rows = []
    for devices, workers in [(d, 1) for d in args.devices] + [(1, w) for w in args.workers]:
        row = run(devices, args, args.extra, workers)
        row.update(global_batch=args.global_batch, steps_per_epoch=steps, audio_s_per_epoch=audio,
                   cpu_threads=os.cpu_count(), timed_epochs=args.epochs - 1)
        row["steps_per_s"] = row["audio_s_per_s"] * steps / audio
        rows.append(row)
        print(f"{workers} process(es) x {devices} device(s) x batch {row['per_device_batch']:3d}: {row['steps_per_s']:.3f} steps/s, "
              f"{row['audio_s_per_s']:.0f} s of audio per second (epochs 2-{args.epochs}; per epoch "
              f"{row['epoch_audio_s_per_s']})", flush=True)
    base = rows[0]["audio_s_per_s"]
    for row in rows:
        row["speedup_vs_first"] = row["audio_s_per_s"] / base
    if args.output:
        with open(args.output, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
