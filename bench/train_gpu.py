#!/usr/bin/env python3
"""Training throughput on a GPU: demo and 38M-parameter models (and Mozilla 0.9's 47M-parameter model,
--configs mozilla), float32 vs mixed float16 vs mixed bfloat16, with and without XLA, batch sizes
doubling until out of memory.

    .venv/bin/python bench/train_gpu.py --configs demo ds2_38m --output bench/results/train_gpu.jsonl

The trainer's own step (make_train_step: the distributed CTC step, loss scaling for float16) on
synthetic features of realistic lengths, so no corpus is needed. Reports hours of audio trained per
hour (= seconds per second) and the fraction of the device's peak FLOP/s: forward+backward FLOPs
(3x bench/train_throughput.py's analytic forward count, on the audio frames, not the padding) over the
datasheet peak of the GPU at the precision's tensor-core type (TF32 for float32 where TensorFlow uses
it), or over a measured matmul peak on other devices. Runs on a CPU too (smoke test: --tiny).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "training"))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepspeech_training.devices import choose_recurrent_kernels, configure_gpus  # noqa: E402
from deepspeech_training.families import build_model  # noqa: E402
from deepspeech_training.features import FeatureConfig  # noqa: E402
from deepspeech_training.model import ConvSpec, ModelConfig  # noqa: E402
from deepspeech_training.mozilla import N_INPUT, WIN_STEP_MS  # noqa: E402
from deepspeech_training.mozilla.model import MozillaConfig  # noqa: E402
from deepspeech_training.train import TrainConfig, make_optimizer, make_train_step  # noqa: E402
from train_throughput import CONFIGS, flops_per_frame, matmul_peak  # noqa: E402

PAPER_2D = (ConvSpec(32, (11, 41), (2, 2)), ConvSpec(32, (11, 21), (1, 2)))
GEOMETRIES = {
    "demo": CONFIGS["demo"],  # 4.6M parameters; the corpus' clips are 0.8-6.6 s
    # 38.1M parameters: the paper's "7 layers, 5 recurrent" size (Table 3 compares 38M-parameter models)
    "ds2_38m": dict(conv=PAPER_2D, conv_type="2d", rnn_layers=5, rnn_units=640, fc_units=640),
    "tiny": dict(conv=(ConvSpec(32, (11, 1), (3, 1)),), conv_type="1d", rnn_layers=1, rnn_units=32,
                 fc_units=32),
}
# Mozilla 0.9's geometry (MozillaConfig: 26 MFCC every 20 ms, 9 frames of context each side, 3 dense layers,
# one unidirectional LSTM in its own layout, 2 dense layers): its release size (47.2M parameters) and a
# smoke-test size
MOZILLA_GEOMETRIES = {"mozilla": dict(n_hidden=2048), "mozilla_tiny": dict(n_hidden=32)}
SECONDS = {"demo": (2.0, 6.0), "ds2_38m": (8.0, 15.0), "tiny": (1.0, 2.0),  # utterance lengths drawn
           "mozilla": (2.0, 10.0), "mozilla_tiny": (1.0, 2.0)}
CHARS_PER_SECOND = 14  # transcript length of read English speech

# Dense datasheet peaks in TFLOP/s (no structured sparsity): (name fragments, {kind: peak})
GPU_PEAKS = [
    (("H200",), {"fp32": 67, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),
    (("H100", "PCIe"), {"fp32": 51, "tf32": 378, "fp16": 756, "bf16": 756}),
    (("H100",), {"fp32": 67, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),  # SXM
    (("A100",), {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312}),
    (("V100", "PCIe"), {"fp32": 14, "fp16": 112}),
    (("V100",), {"fp32": 15.7, "fp16": 125}),  # SXM2; no TF32 or bfloat16 units
]
KIND = {"mixed_float16": "fp16", "mixed_bfloat16": "bf16"}


def model_config(name: str):
    """The model config of geometry ``name`` (Deep Speech 2's or Mozilla's)."""
    if name in MOZILLA_GEOMETRIES:
        return MozillaConfig(num_classes=29, **MOZILLA_GEOMETRIES[name])
    return ModelConfig(FeatureConfig().n_features, 29, **GEOMETRIES[name])


def frames_per_second(cfg) -> float:
    """Feature frames per second of audio: Mozilla's MFCC every 20 ms, Deep Speech 2's every 10 ms."""
    return 1000 / WIN_STEP_MS if isinstance(cfg, MozillaConfig) else 100.0


def forward_flops_per_frame(cfg) -> float:
    """Forward multiply-adds x2 per input frame (Mozilla: 3 dense, the LSTM over [x, h], 2 dense)."""
    if not isinstance(cfg, MozillaConfig):
        return flops_per_frame(cfg)
    n, window = cfg.n_hidden, (2 * cfg.n_context + 1) * N_INPUT
    return 2.0 * (window * n + 2 * n * n + 2 * n * 4 * n + n * n + n * cfg.num_classes)


def peak_kind(precision: str, on_gpu: bool) -> str:
    if precision != "float32":
        return KIND[precision]
    tf32 = on_gpu and tf.config.experimental.tensor_float_32_execution_enabled()
    return "tf32" if tf32 else "fp32"


def datasheet_peak(device_name: str, kind: str) -> float | None:
    """FLOP/s of ``kind`` for a GPU named like ``device_name`` (None: not in the table)."""
    for fragments, peaks in GPU_PEAKS:
        if all(f.lower() in device_name.lower() for f in fragments):
            return peaks[kind] * 1e12 if kind in peaks else None
    return None


def synthetic_batch(rng, batch: int, seconds: tuple[float, float], n_features: int, classes: int,
                    rate: float = 100.0):
    """Log-spectrogram-like features, ``rate`` frames per second: lengths drawn uniformly in ``seconds``,
    padded to the longest."""
    frames = (rng.uniform(*seconds, size=batch) * rate).astype(np.int32)
    labels = np.maximum((frames / rate * CHARS_PER_SECOND).astype(np.int32), 1)
    x = rng.normal(size=(batch, frames.max(), n_features)).astype(np.float32)
    y = rng.integers(0, classes - 1, size=(batch, labels.max())).astype(np.int32)
    return ((tf.constant(x), tf.constant(frames)), (tf.constant(y), tf.constant(labels)),
            tf.range(batch, dtype=tf.int64))


def time_config(cfg, precision: str, xla: bool, batch: int, seconds, steps: int,
                warmup: int, kernel: str = "auto") -> dict:
    """Train ``steps`` steps after ``warmup`` on synthetic batches -> audio s/s, frames/s, step time."""
    keras.backend.clear_session()
    gc.collect()  # the previous point's model and optimizer state leave the device memory
    keras.mixed_precision.set_dtype_policy(precision)
    strategy = tf.distribute.get_strategy()
    model = build_model(cfg)
    chosen = choose_recurrent_kernels(model, kernel, bool(tf.config.list_logical_devices("GPU")), xla,
                                      precision)
    opt = make_optimizer(TrainConfig(learning_rate=1e-4, precision=precision))
    opt.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    rate = frames_per_second(cfg)
    batches = [synthetic_batch(rng, batch, seconds, cfg.n_features, cfg.num_classes, rate) for _ in range(4)]
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * len(t.shape), t.dtype), batches[0])
    step = make_train_step(model, opt, strategy, batch, spec, jit_compile=xla)
    for i in range(warmup):  # tracing, XLA compilation of each batch shape, cuDNN autotuning
        float(step(batches[i % len(batches)])[0])
    frames, losses, start = 0, [], time.time()
    for i in range(steps):
        b = batches[i % len(batches)]
        losses.append(float(step(b)[0]))
        frames += int(tf.reduce_sum(b[0][1]))
    wall = time.time() - start
    keras.mixed_precision.set_dtype_policy("float32")
    return {"audio_s_per_s": frames / rate / wall, "frames_per_s": frames / wall, "step_s": wall / steps,
            "loss_finite": bool(np.isfinite(losses).all()), "rnn_kernel": model.rnns[0].kernel,
            "rnn_kernel_log": chosen}


def out_of_memory(err: Exception) -> bool:
    text = str(err).lower()
    return isinstance(err, tf.errors.ResourceExhaustedError) or any(
        words in text for words in ("out of memory", "resource_exhausted", "failed to allocate", " oom"))


def sweep(name: str, precision: str, xla: bool, args, device: dict, out, kernel: str = "auto") -> list[dict]:
    """Batch sizes doubling from --min_batch until out of memory (or --max_batch)."""
    cfg = model_config(name)
    flops = 3 * forward_flops_per_frame(cfg)
    kind = peak_kind(precision, device["gpu"])
    peak = device["peaks"].get(kind)
    rows, batch = [], args.min_batch
    while batch <= args.max_batch:
        try:
            r = time_config(cfg, precision, xla, batch, SECONDS[name], args.steps, args.warmup, kernel)
        except (tf.errors.OpError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            print(f"{name} {precision} xla={xla} batch {batch}: out of memory", flush=True)
            break
        row = {"config": name, "precision": precision, "xla": xla, "batch_size": batch, "requested_kernel": kernel,
               "device": device["name"], "peak_kind": kind, "peak_tflops": peak / 1e12 if peak else None,
               "peak_source": device["peak_source"], "gflop_per_audio_s": flops * frames_per_second(cfg) / 1e9,
               "hours_audio_per_hour": r["audio_s_per_s"], **r,
               "fraction_of_peak": r["frames_per_s"] * flops / peak if peak else None}
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
        frac = f"{100 * row['fraction_of_peak']:5.1f}% of {kind} peak" if peak else "no peak known"
        print(f"{name:8s} {precision:14s} xla={xla!s:5s} {r['rnn_kernel']:7s} batch {batch:4d}: "
              f"{r['audio_s_per_s']:9.1f} h audio/h, step {r['step_s'] * 1000:7.1f} ms, {frac}", flush=True)
        batch *= 2
    return rows


def describe_device(args) -> dict:
    """Name and peak FLOP/s per precision kind of the device the benchmark runs on."""
    gpus = configure_gpus(allow_growth=True)
    if gpus:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        name = details.get("device_name", gpus[0])
        peaks = {k: datasheet_peak(name, k) for k in ("fp32", "tf32", "fp16", "bf16")}
        source = "datasheet"
        if not any(peaks.values()):
            peaks = {k: matmul_peak(2.0, d, 8192) for k, d in (("fp32", "float32"), ("tf32", "float32"),
                                                            ("fp16", "float16"), ("bf16", "bfloat16"))}
            source = "measured matmul 8192x8192"
        return {"name": name, "gpu": True, "peaks": peaks, "peak_source": source}
    import platform
    peaks = {kind: matmul_peak(2.0, dtype, args.matmul_size)
             for kind, dtype in (("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16"))}
    return {"name": f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}", "gpu": False,
            "peaks": peaks, "peak_source": f"measured matmul {args.matmul_size}x{args.matmul_size}"}


def plot(rows: list[dict], png: str) -> None:
    """Hours of audio per hour and fraction of peak against batch size, one panel column per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({r["config"] for r in rows})
    fig, axes = plt.subplots(2, len(configs), figsize=(6 * len(configs), 7), squeeze=False)
    for col, name in enumerate(configs):
        series = sorted({(r["precision"], r["xla"], r.get("rnn_kernel", "generic")) for r in rows
                         if r["config"] == name})
        for precision, xla, kernel in series:
            pts = [r for r in rows if (r["config"], r["precision"], r["xla"], r.get("rnn_kernel", "generic"))
                   == (name, precision, xla, kernel)]
            label = precision + (" + XLA" if xla else "") + (" cuDNN" if kernel == "fused" else "")
            for row, key in ((0, "hours_audio_per_hour"), (1, "fraction_of_peak")):
                ys = [p[key] for p in pts]
                ys = [100 * y for y in ys] if key == "fraction_of_peak" and None not in ys else ys
                if None not in ys:
                    axes[row, col].plot([p["batch_size"] for p in pts], ys, marker="o", label=label)
        axes[0, col].set_title(f"{name} on {rows[0]['device']}")
        axes[0, col].set_ylabel("hours of audio per hour")
        axes[1, col].set_ylabel("% of peak FLOP/s (precision's own peak)")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(GEOMETRIES) + sorted(MOZILLA_GEOMETRIES),
                        default=["demo", "ds2_38m"],
                        help="model geometries")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_float16", "mixed_bfloat16"],
                        choices=["float32", "mixed_float16", "mixed_bfloat16"], help="Keras dtype policies")
    parser.add_argument("--xla", nargs="+", choices=["off", "on"], default=["off", "on"],
                        help="without and/or with XLA compilation of the step")
    parser.add_argument("--min_batch", type=int, default=8, help="first batch size")
    parser.add_argument("--max_batch", type=int, default=1024,
                        help="largest batch size tried (else until out of memory)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per point")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (tracing, XLA, autotuning)")
    parser.add_argument("--matmul_size", type=int, default=2048, help="matmul size of the measured CPU peak")
    parser.add_argument("--output", default="bench/results/train_gpu.jsonl", help="JSON lines, appended")
    parser.add_argument("--rnn_kernels", nargs="+", choices=["auto", "fused", "generic"], default=["auto"],
                        help="recurrent kernels to sweep (fused: cuDNN on a GPU; a kernel that cannot run "
                             "for a point, e.g. cuDNN under XLA, falls back to generic and the row says so)")
    parser.add_argument("--plot", default="bench/results/train_gpu.png", help="PNG of this run's rows")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    device = describe_device(args)
    print(f"Device: {device['name']}; peaks ({device['peak_source']}): "
          + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in device["peaks"].items() if v), flush=True)
    rows = []
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "a") as out:
        for name in args.configs:
            for precision in args.precisions:
                for xla in args.xla:
                    for kernel in args.rnn_kernels:
                        rows += sweep(name, precision, xla == "on", args, device, out, kernel)
    if rows and args.plot:
        plot(rows, args.plot)
        print(f"Plot: {args.plot}")


if __name__ == "__main__":
    main()
