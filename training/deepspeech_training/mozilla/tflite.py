"""Mozilla DeepSpeech 0.9.3's TFLite export, loadable by deepspeech-tflite 0.9.3 (TF 2.3's TFLite) and
Coqui's libstt 1.4 (TF 2.9's).

    data = tflite_model(weights, alphabet_bytes, beam_width=500, quantize=False, language=None)

The graph is ``graph.build_graph(..., tflite=True)``: Mozilla's TFLite variant of the inference graph
(the LSTM cell unrolled over all 16 steps, no ``input_lengths``, ``logits`` squeezed to [16, C]), with
AudioSpectrogram and Mfcc as custom ops (TFLite has builtin kernels for both). It is converted from a
``tf.compat.v1`` session by the v1 converter, which keeps the placeholders' and output nodes' names:
inputs ``input_node``, ``previous_state_c``, ``previous_state_h``, ``input_samples``; outputs ``logits``,
``new_state_c``, ``new_state_h``, ``mfccs``, ``metadata_*``. The flatbuffer is then adjusted for
Mozilla's loader, which runs the operator producing each ``metadata_*`` output (a constant output with no
producer crashes it): every constant output becomes the output of a RESHAPE (version 1) of a constant.

``quantize=True``: dynamic-range int8 weights as Mozilla's release file. TF 2.21 quantizes dense layers
per channel (FULLY_CONNECTED version 12, which both old runtimes refuse); with per-tensor quantization
it marks every FULLY_CONNECTED version 9 (asymmetric quantization of the float input on the fly), which
libstt 1.4 loads but TF 2.3's TFLite refuses ("Didn't find op for builtin opcode 'FULLY_CONNECTED'
version '9'"). So float layers get version 1 back (the same kernel) and hybrid ones (int8 weights)
version 3 with symmetric input quantization: the scheme TF 1.15 wrote into Mozilla's release file,
which both load. Any operator version above
``MAX_VERSIONS`` raises TFLiteExportError rather than writing a file the old runtimes cannot open.
"""
from __future__ import annotations

import numpy as np

from . import DEFAULT_BEAM_WIDTH
from .graph import GraphExportError, build_graph

# the highest builtin operator versions the export may write: all measured to load in both
# deepspeech-tflite 0.9.3 and libstt 1.4 (FULLY_CONNECTED 3: hybrid, int8 weights with one scale, float
# input quantized symmetrically on the fly)
MAX_VERSIONS = {"FULLY_CONNECTED": 3}
CUSTOM_OPS = (b"AudioSpectrogram", b"Mfcc")


class TFLiteExportError(GraphExportError):
    """A TFLite file the old runtimes could not load; the message says why."""


def _convert(graph, inputs: dict, outputs: dict, quantize: bool) -> bytes:
    import tensorflow as tf

    with tf.compat.v1.Session(graph=graph) as session:
        converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, list(inputs.values()),
                                                                   list(outputs.values()))
        converter.allow_custom_ops = True  # AudioSpectrogram and Mfcc: builtin kernels in every TFLite
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            # per-channel dense weights need FULLY_CONNECTED version 12, unknown to TF 2.3 and 2.9
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        return converter.convert()


def builtin_names() -> dict[int, str]:
    """{builtin operator code: its name}, e.g. 9 -> "FULLY_CONNECTED"."""
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def builtin_code(opcode) -> int:
    """An OperatorCodeT's builtin code (new files carry it in two fields, old readers use the int8 one)."""
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)


def _opcode_index(model, builtin: int, version: int = 1) -> int:
    """The index of the operator code (builtin, version), added if the model has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    for i, opcode in enumerate(model.operatorCodes):
        if builtin_code(opcode) == builtin and not opcode.customCode and opcode.version == version:
            return i
    opcode = schema.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _new_tensor(model, graph, name: bytes, like, data: bytes) -> int:
    """A constant tensor ``name`` with ``like``'s type and shape holding ``data``: its index."""
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.shape = name, like.type, list(like.shape)
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def produce_constant_outputs(model) -> None:
    """Make every output that is a bare constant the output of a RESHAPE of a copy of that constant."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    produced = {i for op in graph.operators for i in op.outputs}
    reshape = _opcode_index(model, schema.BuiltinOperator.RESHAPE)
    shape_index = None
    for index in graph.outputs:
        if index in produced:
            continue
        tensor = graph.tensors[index]
        if list(tensor.shape) != [1]:
            raise TFLiteExportError(f"TFLite model: constant output {tensor.name.decode()} has shape "
                                    f"{list(tensor.shape)}, expected [1]")
        if shape_index is None:
            int32 = schema.TensorT()
            int32.type, int32.shape = schema.TensorType.INT32, [1]
            shape_index = _new_tensor(model, graph, b"metadata_shape", int32, np.int32([1]).tobytes())
        data = bytes(model.buffers[tensor.buffer].data)
        value = _new_tensor(model, graph, tensor.name + b"/value", tensor, data)
        tensor.buffer = 0  # the empty buffer: now computed
        options = schema.ReshapeOptionsT()
        options.newShape = [1]
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = reshape, [value, shape_index], [index]
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
        graph.operators.append(op)


def _fc_version(graph, op) -> int | None:
    """The version TF 1.15 gave this FULLY_CONNECTED: 1 float, 3 hybrid (int8 weights); None if other."""
    from tensorflow.lite.python import schema_py_generated as schema

    options = op.builtinOptions
    # a bias of zeros is left out by the converter (input -1): the old kernels take that too
    if len(op.inputs) not in (2, 3) or options is None or options.keepNumDims \
            or options.weightsFormat != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        return None
    types = [graph.tensors[i].type for i in (op.inputs[0], op.inputs[1], op.outputs[0])]
    if types == [schema.TensorType.FLOAT32] * 3:
        return 1
    if types == [schema.TensorType.FLOAT32, schema.TensorType.INT8, schema.TensorType.FLOAT32]:
        return 3
    return None


def legacy_fully_connected(model) -> None:
    """FULLY_CONNECTED at the versions TF 1.15 wrote: TF 2.21 marks every one version 9 when it
    quantizes (asymmetric quantization of the float input), which TF 2.3's TFLite does not have.
    Float layers become version 1 (the same kernel), hybrid ones (int8 weights) version 3 with
    symmetric input quantization: the scheme of Mozilla's release file."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    for op in graph.operators:
        opcode = model.operatorCodes[op.opcodeIndex]
        if builtin_code(opcode) != schema.BuiltinOperator.FULLY_CONNECTED or opcode.version <= 3:
            continue
        version = _fc_version(graph, op)
        if version is None:
            continue  # check_operators names it
        if version == 3:
            op.builtinOptions.asymmetricQuantizeInputs = False
        op.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.FULLY_CONNECTED, version)
    _drop_unused_opcodes(model)


def _drop_unused_opcodes(model) -> None:
    used = sorted({op.opcodeIndex for graph in model.subgraphs for op in graph.operators})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for graph in model.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = new_index[op.opcodeIndex]


def check_operators(model) -> None:
    """Raise TFLiteExportError for an operator the old runtimes do not know."""
    names = builtin_names()
    for opcode in model.operatorCodes:
        if opcode.customCode:
            if opcode.customCode not in CUSTOM_OPS:
                raise TFLiteExportError(f"TFLite model: custom op {opcode.customCode.decode()} has no kernel in "
                                        "Mozilla's or Coqui's runtime")
            continue
        name = names.get(builtin_code(opcode), str(builtin_code(opcode)))
        if opcode.version > MAX_VERSIONS.get(name, 1):
            raise TFLiteExportError(f"TFLite model: the converter wrote {name} version {opcode.version}, which "
                                    f"TF 2.3's and TF 2.9's TFLite (deepspeech-tflite 0.9.3, libstt 1.4) refuse "
                                    f"(at most version {MAX_VERSIONS.get(name, 1)})")


def check_names(model, inputs: dict, outputs: dict) -> None:
    """The model's inputs and outputs must be named exactly as Mozilla's (its loader looks them up by name)."""
    graph = model.subgraphs[0]
    for kind, indices, expected in (("inputs", graph.inputs, inputs), ("outputs", graph.outputs, outputs)):
        names = [graph.tensors[i].name.decode() for i in indices]
        if names != list(expected):
            raise TFLiteExportError(f"TFLite model: {kind} are named {names}, expected {list(expected)}")


def tflite_model(weights, alphabet_bytes: bytes, beam_width: int = DEFAULT_BEAM_WIDTH, quantize: bool = False,
                 language: str | None = None) -> bytes:
    """Mozilla 0.9.3's TFLite export of ``weights`` (module docstring) as flatbuffer bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph, inputs, outputs = build_graph(weights, alphabet_bytes, beam_width, language, tflite=True)
    try:
        data = _convert(graph, inputs, outputs, quantize)
    except Exception as err:  # ConverterError carries the whole MLIR dump: keep its first error line
        lines = [line.strip() for line in str(err).splitlines() if "error" in line.lower()] or [type(err).__name__]
        raise TFLiteExportError(f"TFLite conversion failed: {lines[0][:300]}") from None
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    check_names(model, inputs, outputs)
    produce_constant_outputs(model)
    legacy_fully_connected(model)
    check_operators(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
