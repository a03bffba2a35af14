#!/usr/bin/env python3
"""Mozilla-geometry exports in our client and in Mozilla's and Coqui's runtimes (issue 15).

    bench/mozilla_runtime.sh                                            # all of it
    bench/mozilla_runtime.py run --data_dir data/espeak-en [--n_hidden 2048] [--clips 20] [--core 1]
    bench/mozilla_runtime.py measure --runtime ours|deepspeech|deepspeech-tflite|stt --model FILE \\
        --csv test.csv [--clips N]       (one fresh process, one JSON line; --clips 0: load + first stt())

``run`` writes one Mozilla-geometry model (``--n_hidden``, English alphabet of DATA/alphabet.txt, random
weights: Mozilla's VarianceScaling(1, fan_avg, uniform) init, zero biases, layer_6's bias pushed away
from the blank so that the transcripts are not empty) with our exporter into WORK/n<N>/: ``.pb``
(``graph.inference_graph_def``), ``.pbmm`` (``memmapped.write_memmapped``), ``.tflite`` float32 and
dynamic-range int8 (``tflite.tflite_model``), kept once written. Per (format, runtime): ``--repeats``
fresh processes pinned to one core (``taskset -c CORE``) measure

- ``import_s``: TensorFlow or ai-edge-litert + the client (ours), or loading the runtime library with
  ctypes (Mozilla's, Coqui's); ``load_s``: model creation (``deepspeech.Model(path)`` /
  ``DS_CreateModel`` / ``STT_CreateModel``); ``first_s``: the first ``stt()``;
- RssAnon / RssFile (/proc/self/status) after the imports, the load and the first ``stt()``, and the
  process's thread count after the first ``stt()``;

medians over the processes; the last process also runs ``stt()`` over the first ``--clips`` clips of
DATA/test.csv at beam ``--beam_width`` without a scorer: real-time factor and the transcripts, which
``run`` compares clip by clip with our client's on the same file. Threads: ours with TensorFlow 1
intra- and 1 inter-op thread, the TFLite interpreter 1 thread; libdeepspeech and libstt pick their own
(TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS / OMP_NUM_THREADS are set to 1 for every process, and
the core pinning holds whatever they start to one core).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_formats import ROOT, call, read_csv, rss, save_rows, size_mb

# (label, file, runtimes that load it); "ours" is deepspeech.Model
FORMATS = [("pb", "output_graph.pb", ("ours", "deepspeech")),
           ("pbmm", "output_graph.pbmm", ("ours", "deepspeech")),
           ("tflite fp32", "output_graph.tflite", ("ours", "deepspeech-tflite", "stt")),
           ("tflite dynamic", "output_graph_dynamic.tflite", ("ours", "deepspeech-tflite", "stt"))]
THREAD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1"}
BLANK_NUDGE = -1.0  # added to the blank's layer_6 bias (the last class)


# ------------------------------------------------------------------------------------------- exports

def random_weights(n_hidden: int, alphabet_path: str, seed: int = 0, peak: float = 1.0) -> dict:
    """Mozilla's initial weights for ``n_hidden``: VarianceScaling(1, fan_avg, uniform) matrices; biases
    N(0, 0.01) rather than Mozilla's zeros (the TFLite converter drops an all-zero bias, and an FC without
    one is a FULLY_CONNECTED version the old runtimes lack); the blank's layer_6 bias ``BLANK_NUDGE``;
    layer_6's weights times ``peak`` (> 1: peaked outputs, fewer near-ties for the beam search)."""
    import numpy as np
    from deepspeech_training.mozilla import MozillaGeometry
    from ds_ctcdecoder import Alphabet

    geometry = MozillaGeometry(n_hidden=n_hidden, num_classes=len(Alphabet(alphabet_path)) + 1)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in geometry.shapes().items():
        if len(shape) == 2:
            limit = np.sqrt(3.0 / (sum(shape) / 2.0))
            weights[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            weights[name] = rng.normal(0.0, 0.01, shape).astype(np.float32)
    weights["layer_6/bias"][-1] += BLANK_NUDGE
    weights["layer_6/weights"] *= peak
    return weights


def write_exports(args) -> dict[str, str]:
    """{format label: path}, each written unless it exists."""
    paths = {label: os.path.join(args.work, file) for label, file, _ in FORMATS}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    from deepspeech import memmapped
    from deepspeech_training.mozilla import graph, tflite
    from ds_ctcdecoder import Alphabet

    os.makedirs(args.work, exist_ok=True)
    weights = random_weights(args.n_hidden, os.path.join(args.data_dir, "alphabet.txt"), peak=args.peak)
    alphabet = Alphabet(os.path.join(args.data_dir, "alphabet.txt")).Serialize()
    graph_def = graph.inference_graph_def(weights, alphabet, args.beam_width)
    if not os.path.exists(paths["pb"]):
        graph.write_pb(paths["pb"], graph_def)
    if not os.path.exists(paths["pbmm"]):
        memmapped.write_memmapped(graph_def, paths["pbmm"])
    for label, quantize in (("tflite fp32", False), ("tflite dynamic", True)):
        if not os.path.exists(paths[label]):
            data = tflite.tflite_model(weights, alphabet, args.beam_width, quantize=quantize)
            graph.write_bytes_atomic(paths[label], data)
    return paths


# ------------------------------------------------------------------------------- measure (child process)

def thread_count() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


class Ours:
    """Our client: ``deepspeech.Model``."""

    def __init__(self, model_path: str):
        if model_path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401
        else:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        import deepspeech

        self.module, self.path = deepspeech, model_path

    def load(self, beam_width: int) -> None:
        self.model = self.module.Model(self.path)
        self.model.setBeamWidth(beam_width)

    def stt(self, audio) -> str:
        return self.model.stt(audio)


class Theirs:
    """Mozilla's ``libdeepspeech`` (TF or TFLite build) or Coqui's ``libstt`` through ctypes."""

    def __init__(self, name: str, model_path: str):
        sys.path.insert(0, os.path.join(ROOT, "util"))
        import mozilla_runtime

        self.runtime, self.path = mozilla_runtime.Runtime(name), model_path

    def load(self, beam_width: int) -> None:
        self.model = self.runtime.model(self.path)
        self.model.set_beam_width(beam_width)

    def stt(self, audio) -> str:
        return self.model.stt(audio)


def measure(args) -> dict:
    start = time.perf_counter()
    runner = Ours(args.model) if args.runtime == "ours" else Theirs(args.runtime, args.model)
    from deepspeech.client import load_samples

    row = {"import_s": time.perf_counter() - start, "rss_import": rss()}
    start = time.perf_counter()
    runner.load(args.beam_width)
    row.update(load_s=time.perf_counter() - start, rss_load=rss())
    rows = read_csv(args.csv, max(args.clips, 1))
    clips = [load_samples(path, 16000)[0] for path, _ in rows]
    start = time.perf_counter()
    runner.stt(clips[0])
    row.update(first_s=time.perf_counter() - start, rss_first=rss(), threads=thread_count())
    if args.clips:
        row["audio_s"] = sum(len(c) for c in clips) / 16000
        start = time.perf_counter()
        row["texts"] = [runner.stt(audio) for audio in clips]
        row["seconds"] = time.perf_counter() - start
        row["rss_end"] = rss()
    return row


# ------------------------------------------------------------------------------------- run (parent)

def child(args, runtime: str, model: str, clips: int) -> dict:
    command = ["taskset", "-c", str(args.core), sys.executable, os.path.abspath(__file__), "measure",
               "--runtime", runtime, "--model", model, "--csv", os.path.join(args.data_dir, "test.csv"),
               "--clips", str(clips), "--beam_width", str(args.beam_width)]
    return json.loads(call(command).strip().splitlines()[-1])


def result_row(args, label: str, runtime: str, path: str, runs: list[dict]) -> dict:
    full = runs[-1]
    row = {"name": args.name, "format": label, "runtime": runtime, "path": os.path.relpath(path, ROOT),
           "size_mb": size_mb(path), "processes": len(runs), "core": args.core, "beam_width": args.beam_width,
           "clips": args.clips, "audio_s": full["audio_s"], "rtf": full["seconds"] / full["audio_s"],
           "threads": full["threads"], "peak_rss_mib": full["rss_end"]["VmHWM"], "texts": full["texts"],
           "loadavg_1min": os.getloadavg()[0]}
    for key in ("import_s", "load_s", "first_s"):
        row[key] = statistics.median(r[key] for r in runs)
    for when in ("import", "load", "first"):
        for kind in ("RssAnon", "RssFile"):
            row[f"{when}_{kind}_mib"] = statistics.median(r[f"rss_{when}"][kind] for r in runs)
    return row


def run(args) -> None:
    os.environ.update(THREAD_ENV)  # every child inherits it (call() merges os.environ)
    args.name = f"n{args.n_hidden}" + (f"-peak{args.peak:g}" if args.peak != 1 else "")
    args.work = os.path.join(args.work, args.name)
    paths = write_exports(args)
    rows = []
    for label, _, runtimes in FORMATS:
        if label not in args.formats:
            continue
        for runtime in (r for r in runtimes if r in args.runtimes):
            runs = [child(args, runtime, paths[label], 0) for _ in range(args.repeats - 1)]
            runs.append(child(args, runtime, paths[label], args.clips))
            rows.append(result_row(args, label, runtime, paths[label], runs))
            print(f"{label} / {runtime}: load {rows[-1]['load_s']:.3f} s, RTF {rows[-1]['rtf']:.3f}",
                  file=sys.stderr, flush=True)
    ours = {r["format"]: r["texts"] for r in rows if r["runtime"] == "ours"}
    for r in rows:
        if r["runtime"] != "ours" and r["format"] in ours:
            r["same_as_ours"] = sum(a == b for a, b in zip(r["texts"], ours[r["format"]]))
    # save_rows keys rows on (name, format): the format label carries the runtime
    save_rows(args.out, [{**r, "format": f"{r['format']} / {r['runtime']}"} for r in rows])
    report(args)


# ------------------------------------------------------------------------------------------- report

def mib(row: dict, when: str) -> str:
    return f"{row[f'{when}_RssAnon_mib']:.0f} + {row[f'{when}_RssFile_mib']:.0f}"


def report(args) -> None:
    with open(args.out, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    lines = [("| model | format | runtime | size MB | import s | load s | first stt() s | RSS after load MiB "
             "(anon + file) | after first stt() | threads | RTF | transcripts = ours |"), "|---" * 12 + "|"]
    for r in rows:
        same = f"{r['same_as_ours']} / {r['clips']}" if "same_as_ours" in r else ""
        empty = sum(not t for t in r["texts"])
        lines.append(f"| {r['name']} | {r['format'].split(' / ')[0]} | {r['runtime']} | {r['size_mb']:.1f} | "
                     f"{r['import_s']:.2f} | {r['load_s']:.3f} | {r['first_s']:.3f} | {mib(r, 'load')} | "
                     f"{mib(r, 'first')} | {r['threads']} | {r['rtf']:.4f} | {same}"
                     f"{f' ({empty} empty)' if empty else ''} |")
    audio = {r["name"]: f"{r['clips']} clips, {r['audio_s']:.0f} s" for r in rows}
    sys.stdout.write("\n".join(lines) + f"\n\ntest audio: {audio}; one core; medians of "
                     f"{rows[0]['processes']} processes for the load columns\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="export, measure every format in every runtime, write the rows, report")
    r.add_argument("--data_dir", required=True, help="with alphabet.txt and test.csv")
    r.add_argument("--n_hidden", type=int, default=2048)
    r.add_argument("--peak", type=float, default=1.0, help="layer_6 weights times this (peaked outputs)")
    r.add_argument("--clips", type=int, default=20, help="stt() of the first N test clips in the last process")
    r.add_argument("--work", default=os.path.join(ROOT, ".cache", "bench", "mozilla_runtime"))
    r.add_argument("--core", type=int, default=1, help="the core every measurement is pinned to")
    r.add_argument("--repeats", type=int, default=3, help="fresh processes per format and runtime")
    r.add_argument("--formats", type=lambda s: s.split(","), default=[f[0] for f in FORMATS])
    r.add_argument("--runtimes", type=lambda s: s.split(","), default=["ours", "deepspeech", "deepspeech-tflite",
                                                                       "stt"])
    r.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "mozilla_runtime.jsonl"))
    m = sub.add_parser("measure", help="one fresh process: load, first stt(), test clips; one JSON line")
    m.add_argument("--runtime", required=True, choices=["ours", "deepspeech", "deepspeech-tflite", "stt"])
    m.add_argument("--model", required=True)
    m.add_argument("--csv", required=True)
    m.add_argument("--clips", type=int, default=0)
    o = sub.add_parser("report", help="the table from the rows")
    o.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "mozilla_runtime.jsonl"))
    for p in (r, m):
        p.add_argument("--beam_width", type=int, default=500)
    args = parser.parse_args()
    if args.command == "run":
        args.data_dir = os.path.abspath(args.data_dir)
        run(args)
    elif args.command == "measure":
        sys.stdout.write(json.dumps(measure(args)) + "\n")
    else:
        report(args)


if __name__ == "__main__":
    main()
