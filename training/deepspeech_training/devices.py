"""Device settings: GPU memory growth, precision checks, XLA compilation, and which recurrent kernel runs.

Nothing here reads flags: the entry point passes ``--use_allow_growth``, the precision policy and ``--xla``.
"""
from __future__ import annotations

import os

import tensorflow as tf

from . import recurrent
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


def choose_recurrent_kernels(model, requested: str = "auto", on_gpu: bool = False, xla: bool = False,
                             precision: str = "float32") -> list[str]:
    """Set ``kernel`` ("generic" or "fused", recurrent.py) on every recurrent layer of ``model`` (its
    ``rnns``: Deep Speech 2's RecurrentLayers, Mozilla's LSTM) -> one line per distinct layer configuration
    saying which kernel runs and why (also logged).

    ``requested``: --rnn_kernel. auto: on a GPU cuDNN wherever it can run; on a CPU the generic loop,
    which measured faster in whole training steps (BENCHMARKS.md, "Recurrent kernels on the CPU"; a
    timing of one layer alone favoured the fused loop and misled an earlier version of this choice).
    Mozilla's LSTM has no fused form but cuDNN: on a CPU it always runs the generic loop.
    """
    groups: dict[tuple, list] = {}
    for layer in getattr(model, "rnns", ()):
        groups.setdefault(_geometry(layer), []).append(layer)
    lines = []
    for key, members in groups.items():
        kernel, why = _choose(members[0], requested, on_gpu, xla, precision)
        for layer in members:
            layer.kernel = kernel
        lines.append(f"Recurrent layers {', '.join(m.name for m in members)} ({_describe(*key)}): "
                     f"{kernel} kernel ({_kernel_name(kernel, key[0], on_gpu, key[4])}): {why}")
        log.info(lines[-1])
    return lines


def _geometry(layer) -> tuple:
    """(cell, bidirectional, units, inputs, Mozilla's layout) of a recurrent layer."""
    mozilla = _is_mozilla(layer)
    inputs = layer.input_size if mozilla else int(layer.input_kernel.shape[0])
    return layer.rnn_type, layer.bidirectional, layer.units, inputs, mozilla


def _is_mozilla(layer) -> bool:
    return not hasattr(layer, "bn")  # Mozilla's LSTM: no BatchNorm, one kernel over [x, h]


def _describe(rnn_type: str, bidirectional: bool, units: int, inputs: int, mozilla: bool = False) -> str:
    cell = "clipped-ReLU rnn" if rnn_type == "rnn" else rnn_type.upper()
    layout = ", Mozilla's layout (gates i, c, f, o, no BatchNorm)" if mozilla else ""
    return f"{'bidirectional' if bidirectional else 'unidirectional'} {cell}, {units} units, {inputs} inputs{layout}"


def _kernel_name(kernel: str, rnn_type: str, on_gpu: bool, mozilla: bool = False) -> str:
    if mozilla:
        return ("x W + b in one product, one TensorFlow while loop" if kernel == "generic" else
                "cuDNN CudnnRNNV3, the weights packed in cuDNN's gate order i, f, g, o")
    if kernel == "generic":
        return "BN(W x) in one product, one TensorFlow while loop per direction"
    return ("BatchNorm folded into W, cuDNN CudnnRNNV3" if on_gpu else
            "BatchNorm folded into W, Keras' %s loop" % rnn_type.upper())


def _choose(layer, requested, on_gpu, xla, precision) -> tuple[str, str]:
    if requested == "generic":
        return "generic", "forced by --rnn_kernel generic"
    ignored = " (--rnn_kernel fused ignored)" if requested == "fused" else ""
    if not recurrent.fused_available(layer.rnn_type):
        return "generic", recurrent.fused_reason_missing(layer.rnn_type) + ignored
    if _is_mozilla(layer) and not on_gpu:
        return "generic", ("Mozilla's LSTM runs fused only in cuDNN, which needs a GPU; with no BatchNorm to "
                           "fold, Keras' loop would only move x W into each step, so the generic loop runs"
                           + ignored)
    if xla and requested == "auto":  # cuDNN's op has no XLA kernel; on a CPU XLA was measured slower
        return "generic", ("--xla: cuDNN's recurrent op cannot be compiled with XLA, the loop is" if on_gpu
                           else "--xla: the loop is compiled with the step (the kernels are measured "
                           "without XLA; --rnn_kernel fused forces Keras' loop)")
    if xla and on_gpu:
        return "generic", "--xla: cuDNN's recurrent op cannot be compiled with XLA (--rnn_kernel fused ignored)"
    if on_gpu and precision == "mixed_bfloat16":
        return "generic", "TensorFlow's cuDNN recurrent op takes float16/float32 only, not bfloat16"
    if requested == "fused":
        return "fused", "forced by --rnn_kernel fused"
    if on_gpu:
        return "fused", "cuDNN runs the whole sequence in one kernel" + (
            "" if _is_mozilla(layer) else "; the folded statistics keep the paper's sequence-wise BatchNorm exact")
    return "generic", "on a CPU the generic loop trained faster than the fused one (demo geometry: 52.5 vs " \
                      "45.2 s of audio per s, BENCHMARKS.md); --rnn_kernel fused forces Keras' loop"
