#!/usr/bin/env python3
"""Load time and resident memory of an exported model: frozen .pb vs memory-mapped .pbmm.

    bench/model_load.py run --dir .cache/model_load --repeats 3 [--cold]  # build, convert, measure, table
    bench/model_load.py make --dir DIR          # paper-size Deep Speech 2 (random weights) as .pb/.pbmm
    bench/model_load.py measure --model FILE    # one measurement in this process (one JSON line)

The model is the paper-size configuration (2D convolutions 32x(11,41)/(2,2) and 32x(11,21)/(1,2),
5 bidirectional GRU layers of 512 units, 161 features, 29 classes; about 25M parameters, 100 MB),
frozen with convert_variables_to_constants_v2. Every measurement runs in a fresh process, after
``import tensorflow`` (its own memory is the baseline): ``load_s`` is the time to a callable model,
``call_s`` the first call on 2 s of features (200 frames), ``call2_s`` a second call, and RssAnon
(heap) / RssFile (mapped files) from /proc/self/status are reported as growth over the baseline,
after the load and after the first call. The files are in the page cache (warm) for both formats,
or with --cold evicted from it before each measurement (posix_fadvise, this file only).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "native_client", "python"))

log = logging.getLogger("model_load")
INPUTS, OUTPUTS = ["features", "lengths"], ["probs"]


def rss() -> dict:
    """RssAnon and RssFile of this process in MiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def make(directory: str) -> None:
    """Writes output_graph.pb (paper-size model, random weights) and its .pbmm into directory."""
    sys.path.insert(0, os.path.join(ROOT, "training"))
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from deepspeech import pbmm
    from deepspeech_training.model import ConvSpec, DeepSpeech2, ModelConfig

    config = ModelConfig(conv_type="2d", conv=(ConvSpec(32, (11, 41), (2, 2)), ConvSpec(32, (11, 21), (1, 2))),
                         rnn_layers=5, rnn_units=512, n_features=161, num_classes=29)
    model = DeepSpeech2(config).build_for()
    log.info("%s", model.summary_line())

    @tf.function(input_signature=[tf.TensorSpec([1, None, 161], tf.float32, name="features"),
                                  tf.TensorSpec([1], tf.int32, name="lengths")])
    def forward(features, lengths):
        logits, _ = model((features, lengths), training=False)
        return tf.identity(tf.nn.softmax(logits), name="probs")

    graph_def = convert_variables_to_constants_v2(forward.get_concrete_function()).graph.as_graph_def()
    graph_def.node.add().CopyFrom(_metadata_node(tf))
    os.makedirs(directory, exist_ok=True)
    pb = os.path.join(directory, "output_graph.pb")
    with open(pb, "wb") as f:
        f.write(graph_def.SerializeToString())
    pbmm.convert(pb, os.path.join(directory, "output_graph.pbmm"))


def _metadata_node(tf):
    graph = tf.Graph()
    with graph.as_default():
        tf.constant(json.dumps({"bench": "model_load"}), name="metadata")
    return graph.as_graph_def().node[0]


def measure(model: str) -> dict:
    import numpy as np
    import tensorflow as tf  # noqa: F401  (the baseline includes TensorFlow itself)

    from deepspeech import pbmm

    base = rss()
    start = time.perf_counter()
    if model.endswith(".pbmm"):
        fn = pbmm.load_function(model, INPUTS, OUTPUTS)
    else:
        fn = pbmm.load_graph_function(model, INPUTS, OUTPUTS)
    load_s = time.perf_counter() - start
    loaded = rss()
    features = np.random.default_rng(0).standard_normal((1, 200, 161)).astype(np.float32)
    start = time.perf_counter()
    probs = fn(features=features, lengths=np.array([200], np.int32))["probs"]
    call_s = time.perf_counter() - start
    called = rss()
    start = time.perf_counter()
    fn(features=features, lengths=np.array([200], np.int32))
    call2_s = time.perf_counter() - start
    row = {"model": os.path.basename(model), "load_s": load_s, "call_s": call_s, "call2_s": call2_s,
           "probs_digest": float((probs * np.arange(probs.shape[-1])).sum())}
    for key in ("RssAnon", "RssFile"):
        row[f"load_{key}_mib"] = loaded[key] - base[key]
        row[f"call_{key}_mib"] = called[key] - base[key]
    return row


def evict(path: str) -> None:
    """Drops the file's pages from the page cache (posix_fadvise DONTNEED; nothing else is evicted)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(directory: str, repeats: int, cold: bool) -> None:
    if not os.path.exists(os.path.join(directory, "output_graph.pbmm")):
        make(directory)
    rows = {}
    for name in ("output_graph.pb", "output_graph.pbmm"):
        model = os.path.join(directory, name)
        for _ in range(repeats):
            if cold:
                evict(model)
            out = subprocess.run([sys.executable, __file__, "measure", "--model", model],
                                 check=True, capture_output=True, text=True).stdout
            rows.setdefault(name, []).append(json.loads(out.strip().splitlines()[-1]))
    keys = ["load_s", "call_s", "call2_s", "load_RssAnon_mib", "load_RssFile_mib", "call_RssAnon_mib", "call_RssFile_mib"]
    lines = [f"| model | size MB | {' | '.join(keys)} |", "|---" * (len(keys) + 2) + "|"]
    for name, runs in rows.items():
        size = os.path.getsize(os.path.join(directory, name)) / 1e6
        cells = [f"{statistics.median(r[k] for r in runs):.3f}" if k.endswith("_s")
                 else f"{statistics.median(r[k] for r in runs):.1f}" for k in keys]
        lines.append(f"| {name} | {size:.1f} | {' | '.join(cells)} |")
    digests = {name: round(runs[0]["probs_digest"], 3) for name, runs in rows.items()}
    cache = "cold (model file evicted from the page cache before each)" if cold else "warm page cache"
    lines.append(f"\nmedian of {repeats} fresh processes, {cache}; sum(probs * class index), must agree: {digests}")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--dir", default=os.path.join(ROOT, ".cache", "model_load"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="evict the model file from the page cache before each run")
    p = sub.add_parser("make")
    p.add_argument("--dir", required=True)
    p = sub.add_parser("measure")
    p.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "run":
        run(args.dir, args.repeats, args.cold)
    elif args.command == "make":
        make(args.dir)
    else:
        sys.stdout.write(json.dumps(measure(args.model)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
