"""The TFLite export: conversion, quantization, calibration data, signature and metadata.

``output_graph.tflite`` is converted from the frozen model function. ``--export_quantize``:

- ``none``: float32;
- ``fp16``: float16 weights (computed in float32);
- ``dynamic``: int8 weights, activations quantized on the fly (Mozilla's TFLite export);
- ``int8``: full integer quantization, activation ranges calibrated on features of
  ``--export_calibration_files``; float input and output. Ops TFLite has no int8 kernel for
  (REVERSE_SEQUENCE, in the backward direction of a bidirectional RNN) stay in float.

The converter is given the frozen function and names nothing, so the signature ``serving_default``
(inputs and outputs named as the model function's) and the metadata JSON (the metadata table entry
``deepspeech_metadata``) are written into the flatbuffer afterwards with TensorFlow's flatbuffer tools,
as the converter adds its own ``CONVERSION_METADATA``.
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from .util.log import log

QUANTIZE = ("none", "fp16", "dynamic", "int8")
METADATA_NAME = "deepspeech_metadata"
SIGNATURE_KEY = "serving_default"
NO_INT8_KERNEL = ["REVERSE_SEQUENCE"]
MAX_CALIBRATION_STEPS = 2000  # of a streaming (step) model


class ExportError(ValueError):
    """An export that cannot be made; the message says why."""


def input_names(fn) -> list[str]:
    """The model function's input names, in the order of its placeholders (``fn.inputs``)."""
    specs = tf.nest.flatten(fn.structured_input_signature)
    return [spec.name or tensor.op.name for spec, tensor in zip(specs, fn.inputs)]


def output_tensors(fn, frozen) -> dict:
    """{output name: tensor of the frozen function} (outputs are flattened in sorted-key order)."""
    return dict(zip(sorted(fn.structured_outputs), frozen.outputs))


# ----------------------------------------------------------------------------------------- calibration

def _calibration_rows(csv_files, count: int):
    from .data import read_rows

    rows = [row for path in csv_files for row in read_rows(path, labeled=False)]
    if not rows:
        raise ExportError(f"no rows in the calibration files {', '.join(csv_files)}")
    picks = np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))
    return [rows[i] for i in picks]


def _calibration_features(csv_files, count: int, features):
    from .features import AudioError, load_any, spectrogram
    from .sdb import SDBError

    out = []
    for row in _calibration_rows(csv_files, count):
        try:
            audio = load_any(row.path, row.record, features.sample_rate)
        except (AudioError, SDBError) as err:
            log.warning("Calibration: skipping %s: %s", row.where, err)
            continue
        out.append(spectrogram(tf.constant(audio), features).numpy())
    if not out:
        raise ExportError(f"no readable audio in the calibration files {', '.join(csv_files)}")
    return out


def _step_inputs(fn, streaming: dict, utterances) -> list[dict]:
    """The ``step`` calls the streaming driver makes on ``utterances`` (inputs with realistic state)."""
    from deepspeech.streaming import StreamingDriver

    calls = []

    def recording_step(features, position, valid_frames, state):
        inputs = {"features": features, "position": position, "valid_frames": valid_frames, "state": state}
        calls.append(inputs)
        return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    driver = StreamingDriver(recording_step, streaming)
    for frames in utterances:
        driver.run(frames)
        if len(calls) >= MAX_CALIBRATION_STEPS:
            break
    return calls[:MAX_CALIBRATION_STEPS]


def calibration_inputs(csv_files, count: int, features, model_fn) -> list[dict]:
    """Representative inputs of the model function for int8 calibration, by input name."""
    utterances = _calibration_features(csv_files, count, features)
    log.info("Calibrating int8 quantization on %d utterances", len(utterances))
    if model_fn.name == "step":
        return _step_inputs(model_fn.function, model_fn.streaming, utterances)
    return [{"features": u[None], "lengths": np.array([len(u)], np.int32)} for u in utterances]


# ------------------------------------------------------------------------------------------ conversion

def _converter(frozen, quantize: str, representative):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], frozen)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def convert(frozen, fn, quantize: str, calibration: list[dict] | None) -> bytes:
    """The frozen function as a TFLite flatbuffer (no signature, no metadata yet)."""
    names = input_names(fn)

    def representative():
        for inputs in calibration or ():
            yield [np.asarray(inputs[name]) for name in names]

    converter = _converter(frozen, quantize, representative)
    try:
        if quantize != "int8":
            return converter.convert()
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=NO_INT8_KERNEL)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=options)
        return debugger.get_nondebug_quantized_model()
    except Exception as err:  # the converter raises ConverterError with the whole MLIR dump
        raise ExportError(f"TFLite conversion ({quantize}) failed: {_conversion_problem(err)}") from None


def _conversion_problem(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    flex = [line for line in lines if line.startswith("TF Select ops:")]
    if flex:
        return (f"the model needs TensorFlow ops that TFLite's builtin ops lack ({flex[0][15:].strip()}, "
                f"usually because their input shape is not static)")
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [type(err).__name__])[0][:300]


def _tensor_map(name: str, index: int):
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name, index
    return entry


def add_signature_and_metadata(data: bytes, fn, frozen, metadata: dict) -> bytes:
    """Name the subgraph's inputs and outputs as the model function's (signature ``serving_default``)
    and store the metadata JSON under ``deepspeech_metadata``."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    by_name = {graph.tensors[i].name.decode(): i for i in graph.inputs}
    tensor_of = {t.name.split(":")[0]: name for name, t in output_tensors(fn, frozen).items()}
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    try:
        signature.inputs = [_tensor_map(name, by_name[name]) for name in input_names(fn)]
        signature.outputs = [_tensor_map(tensor_of[graph.tensors[i].name.decode()], i) for i in graph.outputs]
    except KeyError as err:
        raise ExportError(f"TFLite model: cannot find the tensor for {err} among the model's inputs and "
                          f"outputs") from None
    model.signatureDefs = [signature]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def tflite_model(frozen, fn, metadata: dict, quantize: str, calibration: list[dict] | None) -> bytes:
    """The complete ``output_graph.tflite``."""
    if quantize == "int8" and not calibration:
        raise ExportError("--export_quantize int8: no calibration inputs")
    return add_signature_and_metadata(convert(frozen, fn, quantize, calibration), fn, frozen, metadata)
