#!/usr/bin/env python3
"""Fine-tuning throughput of the two model families through DeepSpeech.py (issue 15).

    bench/family_throughput.sh                       # all three configurations
    bench/family_throughput.py --data_dir data/espeak-en [--limit_train 1000] [--configs a,b,c]

Configurations, all at batch 32 for ``--epochs`` epochs on the first ``--limit_train`` utterances of
DATA/train.csv, each in a fresh checkpoint folder WORK/<config>/ (removed first):

- ``a`` ``mozilla-release``: Mozilla's geometry at ``--n_hidden`` (2048, the release) fine-tuned from a
  release-format TF1 checkpoint (``tests/mozilla_fixtures.write_release_checkpoint``, cuDNN form as
  Mozilla's release), with Mozilla's own command line: ``--n_hidden 2048 --checkpoint_dir DIR --epochs 2
  --train_files ... --learning_rate 0.0001`` (its default alphabet, data/alphabet.txt);
- ``b`` ``deepspeech2-demo``: Deep Speech 2 with the demo geometry (the flag defaults, as
  bin/run-demo.sh) from scratch;
- ``c`` ``mozilla-matched``: Mozilla's geometry from scratch (``--model_family mozilla``) at the n_hidden
  whose parameter count is closest to ``b``'s as logged (``--matched_n_hidden``, default: computed).

They run in the order b, c, a.

Each DeepSpeech.py runs on all cores (no pinning); its log lines are timestamped as they arrive. A row
per configuration: trainable parameters (the trainer's log), the per-epoch "s of audio per second"
(the steady state is the last epoch: the first also traces the step), the wall time between the
epoch log lines (the epoch plus the previous epoch's checkpoint save) and the whole command's time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
EPOCH = re.compile(r"Epoch (\d+): train loss ([-\d.naninf]+), ([\d.]+) s of audio per second")
PARAMS = re.compile(r"([\d,]+) (?:trainable )?parameters")
SAMPLES = re.compile(r"train\.csv: (\d+) samples, ([\d.]+) hours")
NUM_CLASSES = 29  # English: 28 labels + blank
DEMO_PARAMETERS = 4_599_325  # Deep Speech 2, demo geometry, English (DeepSpeech.py's log)


def mozilla_parameters(n: int, classes: int = NUM_CLASSES, n_input: int = 494) -> int:
    """Trainable parameters of Mozilla's model at ``n_hidden`` n (layers 1-3, LSTM, 5, 6)."""
    return n_input * n + n + 2 * (n * n + n) + 2 * n * 4 * n + 4 * n + n * n + n + n * classes + classes


def matched_n_hidden(parameters: int) -> int:
    return min(range(16, 4096), key=lambda n: abs(mozilla_parameters(n) - parameters))


def train(command: list[str], log_path: str) -> dict:
    """Run ``command`` in the repository root, timestamp and keep its log lines -> parsed results."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.time()
    epochs, result = [], {"command": " ".join(command)}
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            now = time.time() - start
            log.write(f"{now:9.2f} {line}")
            if m := EPOCH.search(line):
                epochs.append({"epoch": int(m[1]), "loss": float(m[2]), "audio_s_per_s": float(m[3]),
                               "at_s": now})
            elif m := PARAMS.search(line):
                result["parameters"] = int(m[1].replace(",", ""))
            elif m := SAMPLES.search(line):
                result.update(samples=int(m[1]), hours=float(m[2]))
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}; log: {log_path}")
    for previous, epoch in zip([None] + epochs, epochs):
        epoch["wall_s"] = epoch["at_s"] - previous["at_s"] if previous else None
    result.update(epochs=epochs, total_s=time.time() - start)
    return result


def command_for(args, config: str, folder: str) -> list[str]:
    train_files = os.path.join(args.data_dir, "train.csv")
    common = ["--train_files", train_files, "--epochs", str(args.epochs), "--train_batch_size", str(args.batch),
              "--limit_train", str(args.limit_train), "--noshow_progressbar", "--checkpoint_dir", folder]
    alphabet = ["--alphabet_config_path", os.path.join(args.data_dir, "alphabet.txt")]
    if config == "a":
        return ["--n_hidden", str(args.n_hidden), *common, "--learning_rate", "0.0001"]
    if config == "b":
        return [*alphabet, *common]
    return [*alphabet, "--model_family", "mozilla", "--n_hidden", str(args.matched_n_hidden), *common]


NAMES = {"a": "mozilla-release", "b": "deepspeech2-demo", "c": "mozilla-matched"}


def run_config(args, config: str) -> dict:
    folder = os.path.join(args.work, NAMES[config])
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    if config == "a":
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from mozilla_fixtures import write_release_checkpoint

        start = time.time()
        write_release_checkpoint(folder, n_hidden=args.n_hidden)
        print(f"release checkpoint n_hidden {args.n_hidden} written in {time.time() - start:.0f} s",
              file=sys.stderr, flush=True)
    command = [sys.executable, "DeepSpeech.py", *command_for(args, config, folder)]
    result = train(command, os.path.join(args.work, f"{NAMES[config]}.log"))
    n_hidden = {"a": args.n_hidden, "c": args.matched_n_hidden}.get(config)
    row = {"config": NAMES[config], "n_hidden": n_hidden, "batch": args.batch, "limit_train": args.limit_train,
           "cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0], **result}
    last = result["epochs"][-1]
    print(f"{NAMES[config]}: {result.get('parameters')} parameters, epoch {last['epoch']} "
          f"{last['audio_s_per_s']:.1f} s/s, {last['wall_s'] or 0:.0f} s", file=sys.stderr, flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return row


def report(rows: list[dict]) -> None:
    lines = [("| configuration | n_hidden | trainable parameters | epoch 1 s of audio / s | epoch 2 (steady) "
             "s of audio / s | epoch 2 wall s | whole command s |"), "|---" * 7 + "|"]
    for r in rows:
        e = {x["epoch"]: x for x in r["epochs"]}
        lines.append(f"| {r['config']} | {r['n_hidden'] or 'demo'} | {r['parameters']:,} | "
                     f"{e[1]['audio_s_per_s']:.1f} | {e[2]['audio_s_per_s']:.1f} | {e[2]['wall_s']:.0f} | "
                     f"{r['total_s']:.0f} |")
    audio = {r["config"]: f"{r.get('samples')} utterances, {r.get('hours', 0) * 3600:.0f} s" for r in rows}
    sys.stdout.write("\n".join(lines) + f"\n\ntraining data: {audio}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="with train.csv and alphabet.txt")
    parser.add_argument("--configs", type=lambda s: s.split(","), default=["a", "b", "c"])
    parser.add_argument("--limit_train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n_hidden", type=int, default=2048, help="Mozilla's release geometry (a)")
    parser.add_argument("--matched_n_hidden", type=int, help="(c); default: parameters closest to (b)'s")
    parser.add_argument("--work", default=os.path.join(ROOT, ".cache", "bench", "family_throughput"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint folders")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "family_throughput.jsonl"))
    args = parser.parse_args()
    args.data_dir = os.path.abspath(args.data_dir)
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for config in sorted(args.configs, key="bca".index):  # (b) first: (c) is sized on its parameters
        if config == "c" and not args.matched_n_hidden:
            demo = [r["parameters"] for r in rows if r["config"] == NAMES["b"]]
            args.matched_n_hidden = matched_n_hidden(demo[0] if demo else DEMO_PARAMETERS)
        rows.append(run_config(args, config))
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    report(rows)


if __name__ == "__main__":
    main()
