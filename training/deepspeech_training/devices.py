"""Device settings: GPU memory growth, precision checks, XLA compilation, and which recurrent kernel runs.

Nothing here reads flags: the entry point passes ``--use_allow_growth``, the precision policy and ``--xla``.
"""
from __future__ import annotations

import os

import tensorflow as tf

from .util.log import log

# Under --xla the time axis of a batch is padded to a multiple of this many frames (labels to a multiple
# of LABEL_QUANTUM): XLA compiles one program per input shape, and bucketed batches have nearly every
# length, so unpadded every batch would compile anew. The model masks padding, so the loss is unchanged.
FRAME_QUANTUM = 64
LABEL_QUANTUM = 16

# (minimum compute capability, what runs fast there) for each mixed precision policy
_FAST_ON_GPU = {"mixed_float16": ((7, 0), "float16 Tensor Cores (Volta and newer)"),
                "mixed_bfloat16": ((8, 0), "bfloat16 Tensor Cores (Ampere and newer)")}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def configure_gpus(allow_growth: bool, precision: str = "float32") -> list[str]:
    """Set memory growth on every GPU, log each one -> "GPU:i NAME (compute capability X.Y)" lines.

    Call before anything initializes the GPUs. TF_FORCE_GPU_ALLOW_GROWTH, when set, takes precedence
    (TensorFlow reads it itself). Warns when ``precision`` (a Keras dtype policy name) has no fast path
    on the devices found. On a machine without GPUs: returns [] and only checks the CPU.
    """
    gpus = tf.config.list_physical_devices("GPU")
    forced = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
    found = []
    for i, gpu in enumerate(gpus):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        name = details.get("device_name", gpu.name)
        found.append(f"GPU:{i} {name} (compute capability "
                     f"{'%d.%d' % capability if capability else 'unknown'})")
        if forced is None:
            _set_memory_growth(gpu, allow_growth)
        _check_gpu_precision(found[-1], capability, precision)
    if gpus:
        growth = f"TF_FORCE_GPU_ALLOW_GROWTH={forced}" if forced is not None else \
            ("on" if allow_growth else "off (--nouse_allow_growth)")
        log.info("GPUs: %s; memory growth %s", "; ".join(found), growth)
    else:
        log.info("No GPU found: running on the CPU")
        _check_cpu_precision(precision)
    return found


def _set_memory_growth(gpu, allow_growth: bool) -> None:
    try:
        tf.config.experimental.set_memory_growth(gpu, allow_growth)
    except RuntimeError as err:  # the GPUs were initialized before this call
        log.warning("Cannot change GPU memory growth any more: %s", err)


def _check_gpu_precision(gpu: str, capability, precision: str) -> None:
    if precision not in _FAST_ON_GPU or capability is None:
        return
    minimum, fast = _FAST_ON_GPU[precision]
    if tuple(capability) < minimum:
        log.warning("%s: %s runs without %s (compute capability %d.%d or higher); expect little or no "
                    "speed-up over float32", gpu, precision, fast, *minimum)


def _check_cpu_precision(precision: str) -> None:
    if precision == "mixed_float16":
        log.warning("mixed_float16 on a CPU: CPUs have no fast float16 matrix products, so this is "
                    "usually slower than float32 (it is meant for GPUs; --mixed_precision_dtype bfloat16 "
                    "suits recent CPUs)")
    elif precision == "mixed_bfloat16" and not _cpu_has_bf16():
        log.warning("mixed_bfloat16 on a CPU without %s instructions: bfloat16 products are emulated "
                    "and usually slower than float32", " or ".join(_CPU_BF16_FLAGS))


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: cannot tell, do not warn
        return True
    return any(flag in flags.split() for flag in _CPU_BF16_FLAGS)


def replica_runner(fn, strategy, jit_compile: bool, what: str):
    """A function batch -> ``strategy.run(fn, batch)``; with ``jit_compile`` the per-replica ``fn`` is
    compiled with XLA where the strategy allows, and the batch padded (see pad_for_xla) for it.

    Under MirroredStrategy with more than one device the step is not compiled: synchronized BatchNorm
    and the optimizer's gradient aggregation are cross-replica calls (merge_call), which a compiled
    function cannot make, and a compiled replica function may not read another device's variables
    (both measured with 2 logical CPUs; compiling only the recurrence fails too: its gradient's
    TensorLists cannot cross the XLA boundary).
    """
    replicas = strategy.num_replicas_in_sync
    if not jit_compile:
        return lambda batch: strategy.run(fn, args=batch)
    if replicas > 1:
        log.warning("--xla: the %s step is not compiled under %s over %d devices (an XLA cluster can "
                    "neither make the cross-replica calls of synchronized BatchNorm and gradient "
                    "aggregation nor read the variables of another device); it runs as a plain "
                    "tf.function", what, type(strategy).__name__, replicas)
        return lambda batch: strategy.run(fn, args=batch)
    log.info("--xla: the %s step (forward%s) is compiled with XLA, one program per batch shape; the "
             "time axis is padded to a multiple of %d frames to bound recompilation", what,
             ", CTC loss, backward and update" if what == "training" else " and CTC loss", FRAME_QUANTUM)
    compiled = tf.function(fn, jit_compile=True)
    return lambda batch: strategy.run(compiled, args=pad_for_xla(batch))


def pad_for_xla(batch):
    """A batch ((features, lengths), (labels, label lengths), indices) with the time axis of the
    features and of the labels padded up to multiples of FRAME_QUANTUM and LABEL_QUANTUM."""
    (features, lengths), (labels, label_len), indices = batch
    return ((_pad_axis1(features, FRAME_QUANTUM), lengths),
            (_pad_axis1(labels, LABEL_QUANTUM), label_len), indices)


def _pad_axis1(x, quantum: int):
    extra = -tf.shape(x)[1] % quantum
    paddings = [[0, 0], [0, extra]] + [[0, 0]] * (len(x.shape) - 2)
    return tf.pad(x, paddings)


def recurrent_kernel_lines(model, on_gpu: bool, xla: bool) -> list[str]:
    """One line per distinct recurrent-layer configuration of ``model`` saying which kernel runs and why."""
    groups: dict[tuple, list[str]] = {}
    for layer in model.rnns:
        key = (layer.rnn_type, layer.bidirectional, layer.units)
        groups.setdefault(key, []).append(layer.name)
    return [f"Recurrent layers {', '.join(names)} ({_describe(*key)}): " + _kernel_reason(key[0], on_gpu, xla)
            for key, names in groups.items()]


def _describe(rnn_type: str, bidirectional: bool, units: int) -> str:
    cell = "clipped-ReLU rnn" if rnn_type == "rnn" else rnn_type.upper()
    return f"{'bidirectional' if bidirectional else 'unidirectional'} {cell}, {units} units"


def _kernel_reason(rnn_type: str, on_gpu: bool, xla: bool) -> str:
    loop = ("the loop is compiled with XLA (--xla)" if xla else
            "one TensorFlow while loop of small ops per time step (--xla compiles the loop)")
    if rnn_type == "rnn":
        return ("generic kernel (tf.scan): no cuDNN kernel exists for a clipped-ReLU recurrence (cuDNN's "
                f"RNN_RELU mode does not clip); {loop}")
    why = ("the input projection W x is sequence-wise batch-normalized before the recurrence (the paper's "
           "formulation), and cuDNN's fused kernel, which keras.layers.%s uses, computes W x itself with no "
           "normalization in between" % rnn_type.upper())
    where = "" if on_gpu else "; on a CPU there is no cuDNN in any case"
    return f"generic kernel (tf.scan), not cuDNN: {why}{where}; {loop}"


def log_recurrent_kernels(model, on_gpu: bool, xla: bool) -> None:
    for line in recurrent_kernel_lines(model, on_gpu, xla):
        log.info(line)
