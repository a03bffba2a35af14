#!/usr/bin/env python3
"""Export formats compared (issue 6): load time, memory, speed, streaming latency and WER per format.

    bench/export_formats.sh [CHECKPOINT_DIR] [DATA_DIR] [SCORER]        # all of it, for one checkpoint
    bench/export_formats.py run --checkpoint_dir CK --data_dir DATA --scorer kenlm.scorer \\
        [--name demo] [--limit 10] [--core 1] [--repeats 3]
    bench/export_formats.py measure --model FILE --csv test.csv --scorer kenlm.scorer [--clips N]
        (one fresh process, one JSON line; --clips 0: only the load and a first inference)
    bench/export_formats.py report --rows bench/results/export_formats.jsonl --png bench/results/export_formats.png

``run`` exports the checkpoint with ``DeepSpeech.py --export_dir`` into WORK/NAME/{none,fp16,dynamic,
int8}/ (``none``: .pb, .pbmm, saved_model/ and the float .tflite; the others one quantized .tflite
each, int8 calibrated on DATA/train.csv), skipping an export newer than every checkpoint file. It
tests the checkpoint itself with ``DeepSpeech.py --test_files`` (same beam, cutoff_top_n 40 as the
client, with and without the scorer; cached in WORK/NAME). Then, per format, ``repeats`` fresh
processes pinned to one core (``taskset -c CORE``; TensorFlow intra/inter-op threads 1, TFLite
interpreter threads 1) measure:

- ``import_s``: importing the runtime (TensorFlow, or ai-edge-litert for .tflite) and the client;
  ``load_s``: ``deepspeech.Model(path)``; ``first_s``: the first ``stt()`` (the first test clip);
  RssAnon and RssFile (/proc/self/status) after the imports, after the load and after the first
  ``stt()``. The median over the processes is reported; the page cache is warm.
- in the last process, ``stt()`` over DATA/test.csv (``--limit`` clips) at beam ``--beam_width``,
  without then with the scorer (``enableExternalScorer``): the real-time factor (processing seconds
  per second of audio; the acoustic model's share measured inside ``stt()``), WER and CER (jiwer,
  against the references; "changed" counts transcripts that differ from the checkpoint's).
- for a streaming ('step') model, with the scorer: ``feedAudioContent`` in chunks of each of
  ``--chunk_ms`` and ``intermediateDecode`` after every chunk: the time of each per chunk (median,
  p95), and whether ``finishStream`` equals ``stt()`` for every clip.

Rows of an earlier run with the same ``--name`` and format are replaced in ``--out``; the report (markdown on
stdout, plot of load time and memory per format) covers every row there.
"""
from __future__ import annotations

import argparse
import collections
import csv
import glob
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# (label, export subfolder, file): the subfolder is the --export_quantize of that export
FORMATS = [("pb", "none", "output_graph.pb"), ("pbmm", "none", "output_graph.pbmm"),
           ("savedmodel", "none", "saved_model"), ("tflite fp32", "none", "output_graph.tflite"),
           ("tflite fp16", "fp16", "output_graph.tflite"), ("tflite dynamic", "dynamic", "output_graph.tflite"),
           ("tflite int8", "int8", "output_graph.tflite")]
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------- measure (child process)

def rss() -> dict:
    """RssAnon, RssFile and VmHWM (peak) of this process in MiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def read_csv(path: str, limit: int) -> list[tuple[str, str]]:
    """(absolute audio path, transcript) of the first ``limit`` rows (all with 0)."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(os.path.normpath(os.path.join(base, r["wav_filename"])), r["transcript"].strip())
                for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


class Timer:
    """Seconds spent in wrapped callables, by name."""

    def __init__(self):
        self.seconds = collections.Counter()

    def wrap(self, owner, name: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        setattr(owner, name, timed)


def import_runtime(model: str) -> None:
    """The runtime the format needs, one thread."""
    if model.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def load(args) -> tuple[dict, object]:
    """Imports, model load and the first inference, timed, with the memory after each."""
    from_start = time.perf_counter()
    import_runtime(args.model)
    import deepspeech
    from deepspeech.client import load_samples

    row = {"import_s": time.perf_counter() - from_start, "rss_import": rss()}
    start = time.perf_counter()
    model = deepspeech.Model(args.model)
    row.update(load_s=time.perf_counter() - start, rss_load=rss())
    model.setBeamWidth(args.beam_width)
    first, _ = load_samples(read_csv(args.csv, 1)[0][0], model.sampleRate())
    start = time.perf_counter()
    model.stt(first)
    row.update(first_s=time.perf_counter() - start, rss_first=rss())
    row["function"] = model._impl.metadata["function"]
    return row, model


def transcribe(model, clips, timer: Timer) -> dict:
    """``stt()`` of every clip, one after the other: seconds in all, in the acoustic model and features."""
    timer.seconds.clear()
    start = time.perf_counter()
    texts = [model.stt(audio) for audio in clips]
    return {"seconds": time.perf_counter() - start, "acoustic_s": timer.seconds["probs"],
            "features_s": timer.seconds["features"], "texts": texts}


def percentiles(values: list[float]) -> dict:
    ms = sorted(1000 * v for v in values)
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
            "max_ms": ms[-1]}


def stream(model, clips, chunk_ms: int, expected: list[str]) -> dict:
    """Chunked streaming: time of each ``feedAudioContent`` and ``intermediateDecode``, final text check."""
    size = model.sampleRate() * chunk_ms // 1000
    feed, decode, finish, same = [], [], [], 0
    for audio, text in zip(clips, expected):
        st = model.createStream()
        for i in range(0, len(audio), size):
            t0 = time.perf_counter()
            st.feedAudioContent(audio[i:i + size])
            t1 = time.perf_counter()
            st.intermediateDecode()
            feed.append(t1 - t0)
            decode.append(time.perf_counter() - t1)
        t0 = time.perf_counter()
        same += st.finishStream() == text
        finish.append(time.perf_counter() - t0)
    return {"chunk_ms": chunk_ms, "chunks": len(feed), "feed": percentiles(feed),
            "intermediate_decode": percentiles(decode),
            "chunk_total": percentiles([a + b for a, b in zip(feed, decode)]),
            "finish": percentiles(finish), "final_equals_stt": same, "clips": len(clips)}


def measure(args) -> dict:
    row, model = load(args)
    if args.clips == 0:
        return row
    from deepspeech.client import load_samples

    rows = read_csv(args.csv, args.clips)
    clips = [load_samples(path, model.sampleRate())[0] for path, _ in rows]
    row["audio_s"] = sum(len(c) for c in clips) / model.sampleRate()
    timer = Timer()
    timer.wrap(model._impl, "probs")
    timer.wrap(model._impl, "features")
    row["nolm"] = transcribe(model, clips, timer)
    start = time.perf_counter()
    model.enableExternalScorer(args.scorer)
    row["scorer_load_s"] = time.perf_counter() - start
    row["lm"] = transcribe(model, clips, timer)
    if row["function"] == "step":
        row["stream"] = [stream(model, clips, ms, row["lm"]["texts"]) for ms in args.chunk_ms]
    row["rss_end"] = rss()
    return row


# ------------------------------------------------------------------------------------- run (parent)

def deepspeech_py(args, *flags: str) -> None:
    command = [sys.executable, os.path.join(ROOT, "DeepSpeech.py"), "--checkpoint_dir", args.checkpoint_dir,
               "--alphabet_config_path", os.path.join(args.data_dir, "alphabet.txt"), "--noshow_progressbar",
               *flags]
    call(command)


def call(command: list[str]) -> str:
    """Run ``command`` in the repository root -> its stdout; on failure exit with its stderr's end."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **QUIET_ENV})
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    return done.stdout


def up_to_date(path: str, checkpoint_dir: str) -> bool:
    """``path`` exists and is newer than every file of the checkpoint directory."""
    newest = max(os.path.getmtime(p) for p in glob.glob(os.path.join(checkpoint_dir, "*")))
    return os.path.exists(path) and os.path.getmtime(path) > newest


def export_all(args) -> None:
    """The four exports (see the module docstring), each skipped when it is up to date."""
    for quantize in ("none", "fp16", "dynamic", "int8"):
        export_dir = os.path.join(args.work, quantize)
        if up_to_date(os.path.join(export_dir, "output_graph.tflite"), args.checkpoint_dir):
            continue
        flags = ["--export_dir", export_dir, "--remove_export", "--export_tflite", "--export_quantize", quantize,
                 "--export_calibration_files", os.path.join(args.data_dir, "train.csv")]
        if quantize == "none":
            flags += ["--export_pbmm", "--export_savedmodel"]
        deepspeech_py(args, *flags)


def checkpoint_results(args, scorer: bool) -> dict:
    """The checkpoint's transcripts (path -> text) from ``DeepSpeech.py --test_files``, cached."""
    lm = os.path.splitext(os.path.basename(args.scorer))[0] if scorer else "nolm"
    name = f"checkpoint-beam{args.beam_width}-{lm}-{args.limit or 'all'}.json"
    path = os.path.join(args.work, name)
    if not up_to_date(path, args.checkpoint_dir):
        flags = ["--test_files", os.path.join(args.data_dir, "test.csv"), "--test_batch_size", "32",
                 "--beam_width", str(args.beam_width), "--cutoff_top_n", "40", "--cutoff_prob", "1.0",
                 "--limit_test", str(args.limit), "--test_output_file", path + ".tmp"]
        deepspeech_py(args, *flags, *(["--scorer_path", args.scorer] if scorer else []))
        os.replace(path + ".tmp", path)
    with open(path, encoding="utf-8") as f:
        return {os.path.normpath(os.path.join(ROOT, r["wav_filename"])): r["res"] for r in json.load(f)}


def accuracy(refs: list[tuple[str, str]], texts: list[str], checkpoint: dict) -> dict:
    import jiwer

    truth = [text for _, text in refs]
    changed = sum(text != checkpoint.get(path) for (path, _), text in zip(refs, texts))
    return {"wer": jiwer.wer(truth, texts), "cer": jiwer.cer(truth, texts), "changed": changed}


def child(args, model: str, clips: int) -> dict:
    command = ["taskset", "-c", str(args.core), sys.executable, os.path.abspath(__file__), "measure",
               "--model", model, "--csv", os.path.join(args.data_dir, "test.csv"), "--scorer", args.scorer,
               "--clips", str(clips), "--beam_width", str(args.beam_width),
               "--chunk_ms", ",".join(map(str, args.chunk_ms))]
    return json.loads(call(command).strip().splitlines()[-1])


def size_mb(path: str) -> float:
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] if os.path.isdir(path) else [path]
    return sum(os.path.getsize(f) for f in files) / 1e6


def format_row(args, label: str, path: str, runs: list[dict], refs, checkpoint: dict) -> dict:
    """One format's row: medians of the load measurements, speed and accuracy of the last process."""
    full = runs[-1]
    row = {"name": args.name, "format": label, "path": os.path.relpath(path, ROOT), "function": full["function"],
           "size_mb": size_mb(path), "processes": len(runs), "core": args.core, "beam_width": args.beam_width,
           "clips": len(refs), "audio_s": full["audio_s"], "loadavg_1min": os.getloadavg()[0]}
    for key in ("import_s", "load_s", "first_s"):
        row[key] = statistics.median(r[key] for r in runs)
    for when in ("import", "load", "first"):
        for kind in ("RssAnon", "RssFile"):
            row[f"{when}_{kind}_mib"] = statistics.median(r[f"rss_{when}"][kind] for r in runs)
    row["peak_rss_mib"] = full["rss_end"]["VmHWM"]
    row["scorer_load_s"] = full["scorer_load_s"]
    for mode in ("nolm", "lm"):
        result = full[mode]
        row[mode] = {"rtf": result["seconds"] / full["audio_s"], "acoustic_rtf": result["acoustic_s"] / full["audio_s"],
                     "features_rtf": result["features_s"] / full["audio_s"],
                     **accuracy(refs, result["texts"], checkpoint[mode])}
    if "stream" in full:
        row["stream"] = full["stream"]
    return row


def checkpoint_row(args, refs, checkpoint: dict) -> dict:
    row = {"name": args.name, "format": "checkpoint", "path": os.path.relpath(args.checkpoint_dir, ROOT),
           "beam_width": args.beam_width, "clips": len(refs)}
    for mode in ("nolm", "lm"):
        row[mode] = accuracy(refs, [checkpoint[mode].get(path, "") for path, _ in refs], checkpoint[mode])
    return row


def save_rows(path: str, rows: list[dict]) -> None:
    """Write ``rows`` into the JSON lines file ``path``, in place of those of the same model and format."""
    new = {(r["name"], r["format"]): r for r in rows}
    old = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = [json.loads(line) for line in f if line.strip()]
    merged = [new.pop((r["name"], r["format"]), r) for r in old] + list(new.values())
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in merged)


def run(args) -> None:
    for path in (os.path.join(args.data_dir, name) for name in ("alphabet.txt", "train.csv", "test.csv")):
        if not os.path.isfile(path):
            sys.exit(f"{path}: not found (--data_dir)")
    if not os.path.isfile(args.scorer):
        sys.exit(f"{args.scorer}: scorer not found")
    args.work = os.path.join(args.work, args.name)
    export_all(args)
    checkpoint = {mode: checkpoint_results(args, mode == "lm") for mode in ("nolm", "lm")}
    refs = read_csv(os.path.join(args.data_dir, "test.csv"), args.limit)
    rows = [checkpoint_row(args, refs, checkpoint)]
    for label, folder, file in (f for f in FORMATS if f[0] in args.formats):
        path = os.path.join(args.work, folder, file)
        runs = [child(args, path, 0) for _ in range(args.repeats - 1)] + [child(args, path, len(refs))]
        rows.append(format_row(args, label, path, runs, refs, checkpoint))
    save_rows(args.out, rows)
    report(args)


# ------------------------------------------------------------------------------------------- report

def pct(result: dict) -> str:
    return f"{100 * result['wer']:.1f}% / {100 * result['cer']:.1f}%"


def mib(row: dict, when: str) -> str:
    return f"{row[f'{when}_RssAnon_mib']:.0f} + {row[f'{when}_RssFile_mib']:.0f}"


def load_table(rows: list[dict]) -> list[str]:
    pb = {r["name"]: r for r in rows if r["format"] == "pb"}
    lines = ["| model | format | size MB | import s | load s | first stt() s | import + load vs .pb | "
             "load vs .pb | RSS after imports, anon + file MiB | after load | after first stt() | peak |",
             "|---" * 12 + "|"]
    for r in rows:
        base = pb[r["name"]]
        both = (base["import_s"] + base["load_s"]) / (r["import_s"] + r["load_s"])
        lines.append(f"| {r['name']} | {r['format']} | {r['size_mb']:.1f} | {r['import_s']:.2f} | {r['load_s']:.3f} | "
                     f"{r['first_s']:.3f} | {both:.1f}× | {base['load_s'] / r['load_s']:.1f}× | {mib(r, 'import')} | {mib(r, 'load')} | "
                     f"{mib(r, 'first')} | {r['peak_rss_mib']:.0f} |")
    return lines


def speed_table(rows: list[dict], checkpoints: list[dict]) -> list[str]:
    lines = ["| model | format | RTF no LM (acoustic) | RTF scorer (acoustic) | WER / CER no LM | WER / CER scorer | "
             "transcripts ≠ checkpoint (no LM, scorer) |", "|---" * 7 + "|"]
    for c in checkpoints:
        lines.append(f"| {c['name']} | checkpoint (DeepSpeech.py) | | | {pct(c['nolm'])} | {pct(c['lm'])} | |")
    for r in rows:
        n, lm = r["nolm"], r["lm"]
        lines.append(f"| {r['name']} | {r['format']} | {n['rtf']:.4f} ({n['acoustic_rtf']:.4f}) | "
                     f"{lm['rtf']:.4f} ({lm['acoustic_rtf']:.4f}) | {pct(n)} | {pct(lm)} | "
                     f"{n['changed']}, {lm['changed']} of {r['clips']} |")
    return lines


def stream_table(rows: list[dict]) -> list[str]:
    lines = ["| model | format | chunk ms | feedAudioContent p50 / p95 ms | intermediateDecode p50 / p95 ms | "
             "per chunk p50 / p95 / max ms | finishStream == stt() |", "|---" * 7 + "|"]
    for r in rows:
        for s in r.get("stream", ()):
            f, d, t = s["feed"], s["intermediate_decode"], s["chunk_total"]
            lines.append(f"| {r['name']} | {r['format']} | {s['chunk_ms']} | {f['p50_ms']:.2f} / {f['p95_ms']:.2f} | "
                         f"{d['p50_ms']:.2f} / {d['p95_ms']:.2f} | {t['p50_ms']:.2f} / {t['p95_ms']:.2f} / "
                         f"{t['max_ms']:.1f} | {s['final_equals_stt']} of {s['clips']} |")
    return lines if len(lines) > 2 else []


def targets(rows: list[dict]) -> list[str]:
    lines = []
    for name in dict.fromkeys(r["name"] for r in rows):
        by = {r["format"]: r for r in rows if r["name"] == name}
        pb = by["pb"]
        for mode in ("nolm", "lm"):
            gap = 100 * (by["tflite int8"][mode]["wer"] - by["tflite fp32"][mode]["wer"])
            lines.append(f"- {name}, {'scorer' if mode == 'lm' else 'no LM'}: int8 WER − fp32 WER = {gap:+.2f} "
                         f"points: {'met' if gap <= 1.0 else 'NOT met'} (≤ 1)")
        pb_rss = pb["load_RssAnon_mib"] + pb["load_RssFile_mib"]
        for label, r in by.items():
            if label == "pb" or label == "savedmodel":
                continue
            speedup = pb["load_s"] / r["load_s"]
            rss_total = r["load_RssAnon_mib"] + r["load_RssFile_mib"]
            ok = speedup >= 5 and rss_total < pb_rss
            lines.append(f"- {name}, {label}: load {speedup:.1f}× faster than .pb, RSS after load {rss_total:.0f} "
                         f"vs {pb_rss:.0f} MiB: {'met' if ok else 'NOT met'}")
    return lines


def report(args) -> None:
    with open(args.out, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    formats = [r for r in rows if r["format"] != "checkpoint"]
    checkpoints = [r for r in rows if r["format"] == "checkpoint"]
    clips = {r["name"]: f"{r['clips']} clips, {r['audio_s']:.0f} s" for r in formats}
    sections = [load_table(formats), speed_table(formats, checkpoints), stream_table(formats), targets(formats)]
    text = "\n\n".join("\n".join(s) for s in sections if s)
    sys.stdout.write(f"{text}\n\ntest audio: {clips}; one core; medians of {formats[0]['processes']} processes "
                     f"for the load columns\n")
    plot(formats, args.png)


def plot(rows: list[dict], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["name"] for r in rows))
    labels = list(dict.fromkeys(r["format"] for r in rows))
    by = {(r["name"], r["format"]): r for r in rows}
    panels = [("model load s (deepspeech.Model)", lambda r: r["load_s"]),
              ("runtime import + model load s", lambda r: r["import_s"] + r["load_s"]),
              ("RSS after load, MiB (anon + file)", lambda r: r["load_RssAnon_mib"] + r["load_RssFile_mib"]),
              ("RSS after first stt(), MiB", lambda r: r["first_RssAnon_mib"] + r["first_RssFile_mib"]),
              ("the model's own RSS: after first stt() minus after the imports, MiB",
               lambda r: sum(r[f"first_{k}_mib"] - r[f"import_{k}_mib"] for k in ("RssAnon", "RssFile")))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)))
    width = 0.8 / len(names)
    for ax, (title, value) in zip(axes, panels):
        for i, name in enumerate(names):
            xs = [x + i * width for x, label in enumerate(labels) if (name, label) in by]
            ax.bar(xs, [value(by[name, label]) for label in labels if (name, label) in by], width, label=name)
        ax.set(yscale="log", title=title)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(labels))], labels)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="export, measure every format, write the rows, report")
    r.add_argument("--checkpoint_dir", required=True)
    r.add_argument("--data_dir", required=True, help="with alphabet.txt, train.csv (int8 calibration), test.csv")
    r.add_argument("--scorer", required=True)
    r.add_argument("--name", help="the model's name in the rows (default: the checkpoint dir's parent's name)")
    r.add_argument("--work", default=os.path.join(ROOT, ".cache", "bench", "export_formats"),
                   help="exports go to WORK/NAME")
    r.add_argument("--core", type=int, default=1, help="the core every measurement is pinned to")
    r.add_argument("--repeats", type=int, default=3, help="fresh processes per format for the load columns")
    r.add_argument("--formats", type=lambda s: s.split(","), default=[label for label, _, _ in FORMATS],
                   help="comma-separated, of: " + ", ".join(label for label, _, _ in FORMATS))
    r.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "export_formats.jsonl"))
    r.add_argument("--png", default=os.path.join(ROOT, "bench", "results", "export_formats.png"))
    m = sub.add_parser("measure", help="one fresh process: load, first inference, test set; one JSON line")
    m.add_argument("--model", required=True)
    m.add_argument("--csv", required=True)
    m.add_argument("--scorer", required=True)
    r.add_argument("--limit", type=int, default=0, help="first N test clips (0: all)")
    m.add_argument("--clips", type=int, default=0, help="then stt() of the first N clips (0: none)")
    for p in (r, m):
        p.add_argument("--beam_width", type=int, default=500)
        p.add_argument("--chunk_ms", type=lambda s: [int(x) for x in s.split(",")], default=[320, 160],
                       help="streaming chunk sizes (ms), comma-separated")
    o = sub.add_parser("report", help="tables and plot from the rows")
    o.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "export_formats.jsonl"))
    o.add_argument("--png", default=os.path.join(ROOT, "bench", "results", "export_formats.png"))
    args = parser.parse_args()
    if args.command == "run":
        for key in ("checkpoint_dir", "data_dir", "scorer"):
            setattr(args, key, os.path.abspath(getattr(args, key)))
        args.name = args.name or os.path.basename(os.path.dirname(args.checkpoint_dir))
        run(args)
    elif args.command == "measure":
        sys.stdout.write(json.dumps(measure(args)) + "\n")
    else:
        report(args)


if __name__ == "__main__":
    main()
