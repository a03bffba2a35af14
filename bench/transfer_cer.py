"""Fine-tuning to a new language: dev CER after every epoch of training on a Mandarin corpus, starting from
an English checkpoint with its output layer re-initialized (--drop_source_layers 1), optionally with the
other layers frozen too, against the same model trained from scratch: same geometry, data, steps and seed.

The dev set is --heldout training utterances set aside: other voices, speeds and pitches of sentences that
stay in training (how fast each run learns to hear them), while test.csv holds unseen sentences (its CER,
after the last epoch, is in the final rows). Writes one JSON row per (run, epoch) and a plot of dev CER
against training steps. See bench/transfer_cer.sh.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH_LINE = re.compile(r"Epoch (\d+): dev \S+ loss ([\d.naif]+), greedy WER ([\d.]+)%, CER ([\d.]+)%")
TRAIN_LINE = re.compile(r"Epoch (\d+): train loss ([\d.naif]+)")
TEST_LINE = re.compile(r"Test on \S+ - WER: ([\d.]+), CER: ([\d.]+)")


def geometry_flags(source: str) -> list[str]:
    """The trainer flags that rebuild the source checkpoint's model (from its model.json)."""
    with open(os.path.join(source, "model.json"), encoding="utf-8") as f:
        described = json.load(f)
    m, feats = described["model"], described["features"]
    # FILTERS:KTxKF:STxSF, which --conv_type 1d reads too (the time sizes only)
    conv = ",".join(f"{c['filters']}:{'x'.join(map(str, c['kernel']))}:{'x'.join(map(str, c['stride']))}"
                    for c in m["conv"])
    return ["--conv_type", m["conv_type"], "--conv_layers", conv, "--rnn_type", m["rnn_type"],
            "--rnn_layers", str(m["rnn_layers"]), "--n_hidden", str(m["rnn_units"]),
            "--bidirectional" if m["bidirectional"] else "--nobidirectional",
            "--lookahead", str(m["lookahead"]),
            "--relu_clip", str(m["relu_clip"]), "--audio_sample_rate", str(feats["sample_rate"]),
            "--feature_win_len", str(feats["win_len_ms"]), "--feature_win_step", str(feats["win_step_ms"])]


def train(name: str, extra: list[str], args, common: list[str]) -> tuple[list[dict], dict]:
    """One run -> (per-epoch rows, final test row); the trainer's log goes to RUN/name.log."""
    ckpt = os.path.join(args.run, name)
    shutil.rmtree(ckpt, ignore_errors=True)
    log_path = os.path.join(args.run, f"{name}.log")
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        subprocess.run([sys.executable, os.path.join(ROOT, "DeepSpeech.py"), *common,
                        "--save_checkpoint_dir", ckpt, *extra], cwd=ROOT, stderr=log, check=True)
    seconds = time.time() - started
    text = open(log_path, encoding="utf-8").read()
    train_loss = {int(e): float(v) for e, v in TRAIN_LINE.findall(text)}
    rows = [{"run": name, "epoch": int(e), "step": int(e) * args.steps_per_epoch,
             "dev_loss": float(loss), "dev_wer": float(wer) / 100, "dev_cer": float(cer) / 100,
             "train_loss": train_loss.get(int(e))} for e, loss, wer, cer in EPOCH_LINE.findall(text)]
    if len(rows) != args.epochs:
        raise SystemExit(f"{log_path}: {len(rows)} dev results for {args.epochs} epochs")
    test = TEST_LINE.findall(text)
    final = {"run": name, "test_wer": float(test[-1][0]), "test_cer": float(test[-1][1]),
             "seconds": round(seconds, 1), "flags": " ".join(extra)} if test else {}
    print(f"{name}: dev CER by epoch {[round(r['dev_cer'], 3) for r in rows]}, {final}", flush=True)
    return rows, final


def hold_out(data: str, run: str, count: int) -> tuple[str, str]:
    """Split DATA/train.csv into RUN/train.csv and RUN/dev.csv: ``count`` utterances of sentences that
    have another utterance left in training. Paths become absolute (the CSVs move)."""
    with open(os.path.join(data, "train.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["wav_filename"] = os.path.abspath(os.path.join(data, row["wav_filename"]))
    left = collections.Counter(r["transcript"] for r in rows)
    dev, train = [], []
    for row in rows:
        if len(dev) < count and left[row["transcript"]] > 1:
            left[row["transcript"]] -= 1
            dev.append(row)
        else:
            train.append(row)
    paths = []
    for name, part in (("train", train), ("dev", dev)):
        paths.append(os.path.join(run, f"{name}.csv"))
        with open(paths[-1], "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["wav_filename", "wav_filesize", "transcript"])
            writer.writeheader()
            writer.writerows(part)
    return paths[0], paths[1]


def plot(rows: list[dict], path: str, title: str) -> None:
    """Dev CER and dev loss against training steps, one curve per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cer, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["run"] for r in rows if "epoch" in r):
        mine = [r for r in rows if r["run"] == name and "epoch" in r]
        steps = [r["step"] for r in mine]
        ax_cer.plot(steps, [100 * r["dev_cer"] for r in mine], "o-", label=name)
        ax_loss.plot(steps, [r["dev_loss"] for r in mine], "o-", label=name)
    ax_cer.set(xlabel="training steps", ylabel="%", title="Dev CER (greedy)")
    ax_loss.set(xlabel="training steps", ylabel="CTC loss", title="Dev loss")
    for ax in (ax_cer, ax_loss):
        ax.grid(alpha=0.3)
    ax_cer.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="checkpoint directory of the English model")
    p.add_argument("--data", required=True, help="directory with train.csv, dev.csv, test.csv, alphabet.txt")
    p.add_argument("--run", required=True, help="directory for the runs' checkpoints and logs")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "transfer_cer"),
                   help="writes OUT.jsonl and OUT.png")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--limit_train", type=int, default=0)
    p.add_argument("--heldout", type=int, default=100, help="training utterances set aside as the dev set")
    p.add_argument("--learning_rate", type=float, default=0.001, help="the same for every run")
    p.add_argument("--seed", type=int, default=4568)
    p.add_argument("--freeze", action="store_true", help="also fine-tune with --freeze_source_layers 1")
    p.add_argument("--drops", type=int, nargs="+", default=[1],
                   help="fine-tune once per value of --drop_source_layers")
    p.add_argument("--no_scratch", action="store_true", help="leave out the run from scratch")
    p.add_argument("--replot", action="store_true", help="only draw OUT.png again from OUT.jsonl")
    args = p.parse_args()
    if args.replot:
        with open(f"{args.out}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        plot(rows, f"{args.out}.png", figure_title(args, rows))
        return
    os.makedirs(args.run, exist_ok=True)
    train_csv, dev_csv = hold_out(args.data, args.run, args.heldout)
    with open(train_csv, encoding="utf-8") as f:
        n_train = sum(1 for _ in f) - 1
    args.steps_per_epoch = min(n_train, args.limit_train or n_train) // args.batch_size
    common = [*geometry_flags(args.source), "--train_files", train_csv,
              "--dev_files", dev_csv, "--test_files", f"{args.data}/test.csv",
              "--alphabet_config_path", f"{args.data}/alphabet.txt", "--limit_train", str(args.limit_train),
              "--epochs", str(args.epochs), "--train_batch_size", str(args.batch_size),
              "--dev_batch_size", "32", "--test_batch_size", "32", "--beam_width", "0",
              "--learning_rate", str(args.learning_rate), "--random_seed", str(args.seed),
              "--noshow_progressbar", "--summary_dir", "", "--report_count", "0", "--checkpoint_secs", "0"]
    runs = {f"fine-tuned (--drop_source_layers {n})": ["--load_checkpoint_dir", args.source,
                                                       "--drop_source_layers", str(n)] for n in args.drops}
    if not args.no_scratch:
        runs["from scratch"] = ["--load_train", "init"]
    if args.freeze:
        runs["fine-tuned, others frozen (--freeze_source_layers 1)"] = [
            "--load_checkpoint_dir", args.source, "--drop_source_layers", "1", "--freeze_source_layers", "1"]
    rows, finals = [], []
    for i, (label, extra) in enumerate(runs.items()):
        run_rows, final = train(f"run{i}", extra, args, common)
        rows += [{**r, "run": label} for r in run_rows]
        finals.append({**final, "run": label, "steps": args.epochs * args.steps_per_epoch,
                       "train_utterances": args.steps_per_epoch * args.batch_size})
    with open(f"{args.out}.jsonl", "w", encoding="utf-8") as f:
        for row in rows + finals:
            f.write(json.dumps(row) + "\n")
    plot(rows, f"{args.out}.png", figure_title(args, rows))


def figure_title(args, rows: list[dict]) -> str:
    steps = max(r["step"] for r in rows if "step" in r)
    return (f"English demo model -> Mandarin characters: {steps} steps of batch {args.batch_size}; "
            f"dev = {args.heldout} held-out renditions of training sentences")


if __name__ == "__main__":
    main()
