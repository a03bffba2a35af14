#!/usr/bin/env python3
"""CTC beam search with a KenLM scorer: ds_ctcdecoder vs pyctcdecode on the same model outputs.

    bench/ctc_decode.sh            # everything: dumps, both decoders, the table and the plot

Subcommands (the peer runs in its own environment, .cache/bench-venv, as it pins numpy<2):
    decode --decoder ours|pyctcdecode --logits clean.npz --set clean --scorer kenlm.scorer \
           --alpha A --beta B --beams 16,64,256 [--cutoff_prob 0.99 --cutoff_top_n 40] --out rows.jsonl
    vocab  --scorer kenlm.scorer --out unigrams.txt    (the scorer's words, for pyctcdecode)
    report --rows rows.jsonl --png plot.png            (markdown table + plot)

Each row: one decoder, one set of outputs, one beam width: the seconds spent decoding every
utterance one after the other in this process (the LM loaded beforehand), the seconds of audio, WER
and CER (jiwer) against the references.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def load_outputs(path: str):
    data = np.load(path)
    offsets = data["offsets"]
    probs = [data["probs"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return probs, [str(t) for t in data["transcripts"]], float(data["seconds"].sum()), [str(x) for x in data["labels"]]


def ours(labels, args):
    from ds_ctcdecoder import Alphabet, Scorer, ctc_beam_search_decoder

    alphabet = Alphabet.from_labels(labels)
    scorer = Scorer(args.alpha, args.beta, args.scorer, alphabet)
    scorer.load()  # load the LM before timing, as pyctcdecode does when it is built

    def decode(probs, beam):
        return ctc_beam_search_decoder(probs, alphabet, beam, cutoff_prob=args.cutoff_prob,
                                       cutoff_top_n=args.cutoff_top_n, scorer=scorer)[0].transcript
    return decode


def pyctcdecode(labels, args):
    from pyctcdecode import build_ctcdecoder

    with open(args.unigrams, encoding="utf-8") as f:
        unigrams = [w for w in f.read().split("\n") if w]
    decoder = build_ctcdecoder(labels + [""], kenlm_model_path=args.scorer, unigrams=unigrams,
                               alpha=args.alpha, beta=args.beta)

    def decode(probs, beam):
        return decoder.decode(np.log(np.maximum(probs, 1e-30)), beam_width=beam)
    return decode


def decode(args) -> None:
    import jiwer

    probs, refs, audio_seconds, labels = load_outputs(args.logits)
    decode_one = {"ours": ours, "pyctcdecode": pyctcdecode}[args.decoder](labels, args)
    decode_one(probs[0], 8)  # warm-up
    for beam in (int(b) for b in args.beams.split(",")):
        start = time.perf_counter()
        hyps = [decode_one(p, beam) for p in probs]
        seconds = time.perf_counter() - start
        row = dict(decoder=args.decoder, set=args.set, beam=beam, utterances=len(probs),
                   audio_seconds=round(audio_seconds, 2), decode_seconds=round(seconds, 3),
                   seconds_per_audio_second=seconds / audio_seconds, realtime_x=audio_seconds / seconds,
                   wer=jiwer.wer(refs, hyps), cer=jiwer.cer(refs, hyps), alpha=args.alpha, beta=args.beta)
        if args.decoder == "ours":
            row.update(cutoff_prob=args.cutoff_prob, cutoff_top_n=args.cutoff_top_n, search="prefix")
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


def vocab(args) -> None:
    from ds_ctcdecoder.package import read_package

    words = [w for w in read_package(args.scorer).vocabulary if w and not w.startswith("<")]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")


def label(row) -> str:
    if row["decoder"] == "pyctcdecode":
        return "pyctcdecode"
    parts = ["ds_ctcdecoder"]
    if row.get("cutoff_prob", 1.0) < 1.0:
        parts.append(f"cutoff_prob {row['cutoff_prob']}")
    if row.get("search") != "prefix":
        parts.append("flashlight (before 2026-12)")
    return ", ".join(parts)


def report(args) -> None:
    rows = [json.loads(line) for line in open(args.rows) if line.strip()]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    series = list(dict.fromkeys(label(r) for r in rows))
    table = {(r["set"], label(r), r["beam"]): r for r in rows}
    print("| outputs | beam | " + " | ".join(f"{s}: ms per s of audio, WER" for s in series)
          + " | speed-up vs pyctcdecode |")
    print("|---|---|" + "---|" * (len(series) + 1))
    for name in sets:
        for beam in sorted({r["beam"] for r in rows if r["set"] == name}):
            cells, base = [], table.get((name, "pyctcdecode", beam))
            for s in series:
                r = table.get((name, s, beam))
                cells.append(f"{1000 * r['seconds_per_audio_second']:.1f}, {100 * r['wer']:.1f}%" if r else "—")
            mine = table.get((name, "ds_ctcdecoder", beam))
            speedup = f"{base['decode_seconds'] / mine['decode_seconds']:.1f}×" if base and mine else "—"
            print(f"| {name} | {beam} | " + " | ".join(cells) + f" | {speedup} |")
    plot(rows, sets, series, args.png)


def plot(rows, sets, series, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(sets), figsize=(5.5 * len(sets), 8), squeeze=False)
    for col, name in enumerate(sets):
        for s in series:
            pts = sorted((r["beam"], r) for r in rows if r["set"] == name and label(r) == s)
            if not pts:
                continue
            beams = [b for b, _ in pts]
            axes[0][col].plot(beams, [1000 * r["seconds_per_audio_second"] for _, r in pts], "o-", label=s)
            axes[1][col].plot(beams, [100 * r["wer"] for _, r in pts], "o-", label=s)
        axes[0][col].set(xscale="log", yscale="log", title=f"{name} outputs: decode time",
                         ylabel="ms per second of audio (one core)")
        axes[1][col].set(xscale="log", title=f"{name} outputs: WER", xlabel="beam width", ylabel="WER %")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="decode dumped outputs at several beam widths")
    d.add_argument("--decoder", choices=["ours", "pyctcdecode"], required=True)
    d.add_argument("--logits", required=True, help=".npz from bench/dump_logits.py")
    d.add_argument("--set", required=True, help="name of these outputs in the report (clean, noisy)")
    d.add_argument("--scorer", required=True, help="our .scorer (its KenLM binary is read by pyctcdecode too)")
    d.add_argument("--unigrams", help="pyctcdecode: the scorer's vocabulary, one word per line")
    d.add_argument("--alpha", type=float, required=True)
    d.add_argument("--beta", type=float, required=True)
    d.add_argument("--beams", default="16,32,64,128,256,500,1024")
    d.add_argument("--cutoff_prob", type=float, default=1.0)
    d.add_argument("--cutoff_top_n", type=int, default=40)
    d.add_argument("--out", required=True, help="JSON lines to append to")
    v = sub.add_parser("vocab", help="write the scorer's vocabulary")
    v.add_argument("--scorer", required=True)
    v.add_argument("--out", required=True)
    r = sub.add_parser("report", help="markdown table and plot")
    r.add_argument("--rows", required=True)
    r.add_argument("--png", required=True)
    args = parser.parse_args()
    {"decode": decode, "vocab": vocab, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
