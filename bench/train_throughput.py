#!/usr/bin/env python3
"""Training throughput: this trainer vs a plain Keras loop on the same geometry, in the same run.

    .venv/bin/python bench/train_throughput.py --csv data/espeak-en/train.csv --config demo

Ours: bucketed batches (shuffled buckets, as epochs after the first), the fused-input recurrent layers,
one distributed tf.function step. Plain: stock Keras layers (Conv1D/Conv2D, BatchNormalization,
Bidirectional(GRU)), padded batches in file order, one tf.function train step, no bucketing.
Reports seconds of audio per second, padding efficiency, time waiting on the input pipeline, and the
model's FLOP/s against the CPU's measured matmul peak.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepspeech_training.devices import choose_recurrent_kernels  # noqa: E402
from deepspeech_training.data import batch_order, load_samples, make_dataset, padding_efficiency  # noqa: E402
from deepspeech_training.features import FeatureConfig  # noqa: E402
from deepspeech_training.model import ConvSpec, DeepSpeech2, ModelConfig, clipped_relu  # noqa: E402
from deepspeech_training.train import TrainConfig, make_optimizer, make_train_step  # noqa: E402
from ds_ctcdecoder.alphabet import Alphabet  # noqa: E402

CONFIGS = {
    "demo": dict(conv=(ConvSpec(512, (11, 1), (3, 1)),), conv_type="1d", rnn_layers=3, rnn_units=256,
                 fc_units=256),
    "paper": dict(conv=(ConvSpec(32, (11, 41), (2, 2)), ConvSpec(32, (11, 21), (1, 2))), conv_type="2d",
                  rnn_layers=5, rnn_units=512, fc_units=512),
}


def flops_per_frame(cfg: ModelConfig) -> float:
    """Forward multiply-adds x2 per input frame (convolutions, recurrent layers, dense layers)."""
    total, freq, channels, rate = 0.0, cfg.n_features, 1 if cfg.conv_type == "2d" else cfg.n_features, 1.0
    for spec in cfg.conv:
        rate /= spec.stride[0]
        if cfg.conv_type == "2d":
            freq = -(-freq // spec.stride[1])
            total += 2 * rate * freq * spec.filters * spec.kernel[0] * spec.kernel[1] * channels
        else:
            total += 2 * rate * spec.filters * spec.kernel[0] * channels
        channels = spec.filters
    width = freq * channels if cfg.conv_type == "2d" else channels
    gates = {"gru": 3, "lstm": 4, "rnn": 1}[cfg.rnn_type]
    directions = 2 if cfg.bidirectional else 1
    for _ in range(cfg.rnn_layers):
        total += 2 * rate * directions * gates * cfg.rnn_units * (width + cfg.rnn_units)
        width = directions * cfg.rnn_units
    total += 2 * rate * (width * cfg.fc_units + cfg.fc_units * cfg.num_classes)
    return total


def matmul_peak(seconds: float = 3.0, dtype: str = "float32", size: int = 2048) -> float:
    """FLOP/s of a size x size matmul in ``dtype`` on the default device."""
    a = tf.cast(tf.random.normal([size, size]), dtype)
    mm = tf.function(lambda x: tf.matmul(x, x))
    mm(a).numpy()
    n, start = 0, time.time()
    while time.time() - start < seconds:
        mm(a).numpy()
        n += 1
    return n * 2 * size ** 3 / (time.time() - start)


def plain_keras_model(cfg: ModelConfig) -> keras.Model:
    """The same geometry from stock Keras layers, as one would write it without this toolkit."""
    features = keras.Input((None, cfg.n_features))
    x = features
    if cfg.conv_type == "2d":
        x = keras.layers.Reshape((-1, cfg.n_features, 1))(x)
    for spec in cfg.conv:
        if cfg.conv_type == "2d":
            x = keras.layers.Conv2D(spec.filters, spec.kernel, spec.stride, padding="same", use_bias=False)(x)
        else:
            x = keras.layers.Conv1D(spec.filters, spec.kernel[0], spec.stride[0], padding="same",
                                    use_bias=False)(x)
        x = keras.layers.Activation(clipped_relu)(keras.layers.BatchNormalization()(x))
    if cfg.conv_type == "2d":
        x = keras.layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    for _ in range(cfg.rnn_layers):
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Bidirectional(keras.layers.GRU(cfg.rnn_units, return_sequences=True))(x)
    x = keras.layers.Activation(clipped_relu)(keras.layers.Dense(cfg.fc_units)(x))
    return keras.Model(features, keras.layers.Dense(cfg.num_classes)(x))


def time_steps(step, dataset, steps: int, warmup: int) -> dict:
    """Run warmup + steps batches -> audio seconds/s, and the share of time spent waiting for data."""
    iterator = iter(dataset)
    for _ in range(warmup):
        float(step(next(iterator))[0])
    audio = wait = 0.0
    start = time.time()
    for _ in range(steps):
        t0 = time.time()
        batch = next(iterator)
        wait += time.time() - t0
        float(step(batch)[0])
        audio += float(tf.reduce_sum(batch[0][1])) / 100.0
    wall = time.time() - start
    return {"audio_s_per_s": audio / wall, "input_wait_fraction": wait / wall, "frames_per_s": audio * 100 / wall}


def bench_ours(samples, cfg, features, batch, steps, warmup, kernel="auto"):
    strategy = tf.distribute.get_strategy()
    model = DeepSpeech2(cfg, name="deepspeech2").build_for()
    if kernel == "scan":  # the first formulation (tf.scan), for comparison
        for layer in model.rnns:
            layer.kernel = "scan"
    else:
        for line in choose_recurrent_kernels(model, kernel, bool(tf.config.list_logical_devices("GPU"))):
            print(line, flush=True)
    opt = make_optimizer(TrainConfig(learning_rate=1e-4))
    opt.build(model.trainable_variables)
    order = batch_order(samples, batch, epoch=1, sortagrad=True, seed=0, drop_remainder=True)
    dataset = make_dataset(samples, order, features, batch, drop_remainder=True).repeat()
    spec = make_dataset(samples, order[:1], features, batch).element_spec
    step = make_train_step(model, opt, strategy, batch, spec)
    result = time_steps(step, dataset, steps, warmup)
    result["padding_efficiency"] = padding_efficiency(samples, order, batch)
    return result


def bench_plain(samples, cfg, features, batch, steps, warmup):
    model = plain_keras_model(cfg)
    opt = keras.optimizers.Adam(1e-4, global_clipnorm=400.0)
    order = np.arange(len(samples))  # file order, no bucketing
    dataset = make_dataset(samples, order, features, batch, drop_remainder=True).repeat()
    stride = int(np.prod([s.stride[0] for s in cfg.conv]))

    @tf.function(input_signature=[dataset.element_spec])  # traced once, whatever the length
    def step(batch_):
        (x, xl), (y, yl), _ = batch_
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            out_len = (xl + stride - 1) // stride
            loss = tf.reduce_mean(tf.nn.ctc_loss(y, logits, yl, out_len, logits_time_major=False,
                                                 blank_index=-1))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, None

    result = time_steps(step, dataset, steps, warmup)
    result["padding_efficiency"] = padding_efficiency(samples, order, batch)
    return result


def cpu_name() -> str:
    """The CPU model and its widest vector extensions, as BENCHMARKS.md names machines."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({' '.join(vector) or 'no AVX2'})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="training CSV to draw batches from")
    parser.add_argument("--alphabet", default="data/alphabet.txt", help="alphabet file")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo", help="model geometry")
    parser.add_argument("--batch_size", type=int, default=32, help="batch size")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contestant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--rnn_kernels", nargs="+", default=["auto"], choices=["auto", "fused", "generic", "scan"],
                        help="recurrent kernels to time ours with, one run each (scan: the first tf.scan loop)")
    parser.add_argument("--output", default="", help="append the result as a JSON line to this file")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    features = FeatureConfig()
    alphabet = Alphabet.from_file(args.alphabet)
    cfg = ModelConfig(features.n_features, len(alphabet) + 1, **CONFIGS[args.config])
    samples = load_samples([args.csv], alphabet, features, cfg.time_stride, progress=False)
    peak = matmul_peak()
    result = {"config": args.config, "batch_size": args.batch_size, "steps": args.steps,
              "cpu_threads": os.cpu_count(), "matmul_peak_gflops": peak / 1e9,
              "model_gflop_per_audio_s": 3 * flops_per_frame(cfg) * 100 / 1e9}
    result["cpu"] = cpu_name()
    contestants = [(f"ours_{k}", lambda *a, k=k: bench_ours(*a, kernel=k)) for k in args.rnn_kernels]
    for name, fn in contestants + [("plain_keras", bench_plain)]:
        r = fn(samples, cfg, features, args.batch_size, args.steps, args.warmup)
        r["fraction_of_peak"] = r.pop("frames_per_s") * 3 * flops_per_frame(cfg) / peak
        result[name] = r
        print(f"{args.config:6s} {name:12s} {r['audio_s_per_s']:7.1f} s audio/s  padding efficiency "
              f"{100 * r['padding_efficiency']:5.1f}%  input wait {100 * r['input_wait_fraction']:4.1f}%  "
              f"{100 * r['fraction_of_peak']:4.1f}% of matmul peak", flush=True)
    for name, _ in contestants:
        result[f"speedup_{name}"] = result[name]["audio_s_per_s"] / result["plain_keras"]["audio_s_per_s"]
        print(f"{args.config}: {name} / plain Keras = {result[f'speedup_{name}']:.2f}x")
    print(f"{args.config} on {result['cpu']}: "
          f"(matmul peak {peak / 1e9:.0f} GFLOP/s, model {result['model_gflop_per_audio_s']:.1f} GFLOP "
          f"per second of audio, forward + backward)")
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
