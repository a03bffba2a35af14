"""Mozilla DeepSpeech 0.9.3's exported model graph, built from a weights dict, for Mozilla's own runtime.

Input everywhere: ``weights`` ``{name: np.ndarray}`` keyed by ``WEIGHT_NAMES`` (Mozilla's TF1 layout,
see ``__init__.py``) and ``alphabet_bytes``, the binary ``Alphabet::Serialize`` form
(``ds_ctcdecoder.Alphabet(...).Serialize()``).

    graph_def = inference_graph_def(weights, alphabet_bytes, beam_width=500, language=None)
    write_pb("output_graph.pb", graph_def)          # for libdeepspeech.so 0.9.3 (TensorFlow build)
    # tflite.tflite_model(weights, alphabet_bytes, quantize=False) -> .tflite bytes (deepspeech-tflite, libstt)

``inference_graph_def`` is Mozilla's ``create_inference_graph(batch_size=1, n_steps=16)`` frozen:

- placeholders ``input_samples`` f32[512], ``input_node`` f32[1,16,19,26], ``input_lengths`` i32[1],
  ``previous_state_c`` / ``previous_state_h`` f32[1,n];
- features: input_samples -> ExpandDims -> AudioSpectrogram(512, 320, magnitude squared) ->
  Mfcc(upper 8000 Hz, lower 20 Hz, 40 channels, 26 coefficients) -> Reshape -> ``mfccs`` [1,26];
- acoustic model: input_node -> Transpose/Reshape to time-major [16, 494] -> layer_1..3 (MatMul, BiasAdd,
  Minimum(Relu, 20)) -> ``BlockLSTM`` (gates i,c,f,o, forget bias 0, no cell clip, no peepholes) with
  LSTMBlockFusedCell's sequence-length handling (outputs past the length zeroed, the final state gathered
  with GatherNd after ``input_lengths`` steps) -> layer_5 -> layer_6 (no ReLU) -> Reshape [16,1,C] ->
  Softmax ``logits`` [16,1,C]; ``new_state_c`` / ``new_state_h`` [1,n];
- int32 [1] Consts ``metadata_version`` (6), ``metadata_sample_rate`` (16000), ``metadata_feature_win_len``
  (32), ``metadata_feature_win_step`` (20), ``metadata_beam_width``; string [1] ``metadata_alphabet`` and
  optionally ``metadata_language``.

Weight Consts carry the variables' names (``layer_1/weights``, ``cudnn_lstm/.../kernel``). The graph uses
only the ops Mozilla's TensorFlow build registers (``MOZILLA_OPS``) and every attribute left at its
default value is removed, so that TensorFlow 2.3 (inside libdeepspeech.so) accepts the GraphDef;
``write_pb`` removes them again from what it writes (TF's import_graph_def adds them to its input).
Errors a user can cause (weights of the wrong shape, a missing tensor, a bad alphabet or beam width)
are one-line ValueErrors: GeometryError (from ``__init__``) or GraphExportError.
The TFLite export lives in ``tflite.py`` and shares this module's graph builder (``build_graph``).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from . import (AUDIO_WIN_LEN, AUDIO_WIN_STEP, DEFAULT_BEAM_WIDTH, GRAPH_VERSION, LSTM_BIAS, LSTM_KERNEL,
               LSTM_SCOPE, MFCC_CHANNELS, MFCC_LOWER_HZ, MFCC_UPPER_HZ, N_INPUT, N_STEPS, RELU_CLIP, SAMPLE_RATE,
               WEIGHT_NAMES, WIN_LEN_MS, WIN_STEP_MS, MozillaGeometry, geometry_from_shapes)

# the ops whose kernels Mozilla 0.9.3's TensorFlow build registers (native_client/BUILD)
MOZILLA_OPS = frozenset({
    "AudioSpectrogram", "BiasAdd", "Cast", "ConcatV2", "Const", "Placeholder", "ExpandDims", "Shape", "GatherNd",
    "Identity", "ImmutableConst", "Less", "Minimum", "Mul", "MatMul", "Max", "Mfcc", "NoOp", "Pack", "Range",
    "Relu", "Reshape", "Softmax", "Tile", "Transpose", "BlockLSTM", "Fill"})


class GraphExportError(ValueError):
    """Weights or settings that cannot be exported in Mozilla's format; the message says which and why."""


def checked_weights(weights, source: str = "the weights") -> tuple[MozillaGeometry, dict]:
    """The geometry of ``weights`` and the 12 tensors as float32 arrays (GeometryError, a ValueError,
    naming the tensor, if they are not Mozilla's model)."""
    arrays = {name: np.asarray(weights[name], dtype=np.float32) for name in WEIGHT_NAMES if name in weights}
    return geometry_from_shapes({name: a.shape for name, a in arrays.items()}, source), arrays


def metadata_values(alphabet_bytes: bytes, beam_width: int, language: str | None) -> dict:
    """{metadata node name: value}: ints for the int32 [1] nodes, bytes for the string [1] nodes."""
    if not isinstance(alphabet_bytes, (bytes, bytearray)) or len(alphabet_bytes) < 2:
        raise GraphExportError("metadata_alphabet: expected the alphabet's binary Serialize() bytes")
    if not 0 < int(beam_width) < 2 ** 31:
        raise GraphExportError(f"metadata_beam_width: {beam_width} is not a positive int32")
    values = {"metadata_version": GRAPH_VERSION, "metadata_sample_rate": SAMPLE_RATE,
              "metadata_feature_win_len": WIN_LEN_MS, "metadata_feature_win_step": WIN_STEP_MS,
              "metadata_beam_width": int(beam_width), "metadata_alphabet": bytes(alphabet_bytes)}
    if language:
        values["metadata_language"] = language.encode("utf-8")
    return values


# ------------------------------------------------------------------------------------------ graph pieces

def _features(tf, raw):
    """input_samples [512] -> mfccs [1, 26] (Mozilla's util/feeding.py audio_to_features, one window):
    (input_samples, mfccs)."""
    samples = tf.compat.v1.placeholder(tf.float32, [AUDIO_WIN_LEN], name="input_samples")
    spectrogram = raw.AudioSpectrogram(input=raw.ExpandDims(input=samples, axis=tf.constant(-1)),
                                       window_size=AUDIO_WIN_LEN, stride=AUDIO_WIN_STEP, magnitude_squared=True)
    mfccs = raw.Mfcc(spectrogram=spectrogram, sample_rate=tf.constant(SAMPLE_RATE),
                     upper_frequency_limit=MFCC_UPPER_HZ, lower_frequency_limit=MFCC_LOWER_HZ,
                     filterbank_channel_count=MFCC_CHANNELS, dct_coefficient_count=N_INPUT)
    return samples, raw.Identity(input=raw.Reshape(tensor=mfccs, shape=tf.constant([-1, N_INPUT])), name="mfccs")


def _dense(tf, raw, x, weights: dict, name: str, relu: bool = True):
    """MatMul + BiasAdd (+ clipped ReLU) with the Consts ``name/weights`` and ``name/bias``."""
    with tf.name_scope(name):
        w = tf.constant(weights[f"{name}/weights"], name="weights")
        b = tf.constant(weights[f"{name}/bias"], name="bias")
        y = raw.BiasAdd(value=raw.MatMul(a=x, b=w), bias=b)
        if relu:
            y = raw.Minimum(x=raw.Relu(features=y), y=tf.constant(RELU_CLIP))
    return y


def _block_lstm(tf, raw, x, lengths, state_c, state_h, weights: dict, n: int):
    """LSTMBlockFusedCell(forget_bias=0) on x [T, 1, n] with sequence_length: (outputs [T, 1, n] zeroed
    past the length, final c [1, n], final h [1, n]) as in TF 1.15's LSTMBlockWrapper."""
    steps = x.shape[0]
    with tf.name_scope(LSTM_SCOPE):
        kernel = tf.constant(weights[LSTM_KERNEL], name="kernel")
        bias = tf.constant(weights[LSTM_BIAS], name="bias")
        zeros = tf.constant(np.zeros(n, np.float32), name="zeros")  # no peepholes
        seq_len_max = raw.Cast(x=raw.Max(input=lengths, axis=tf.constant([0])), DstT=tf.int64)
        _i, cs, _f, _o, _ci, _co, h = raw.BlockLSTM(
            seq_len_max=seq_len_max, x=x, cs_prev=state_c, h_prev=state_h, w=kernel, wci=zeros, wcf=zeros,
            wco=zeros, b=bias, forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
        # sequence_mask(lengths, T) time-major, tiled over the units
        steps_range = raw.Range(start=tf.constant(0), limit=tf.constant(steps), delta=tf.constant(1))
        valid = raw.Less(x=steps_range, y=raw.ExpandDims(input=lengths, axis=tf.constant(-1)))
        mask = raw.Transpose(x=raw.Cast(x=valid, DstT=tf.float32), perm=tf.constant([1, 0]))
        mask = raw.Tile(input=raw.ExpandDims(input=mask, axis=tf.constant(-1)), multiples=tf.constant([1, 1, n]))
        outputs = raw.Mul(x=h, y=mask)
        # the state after `length` steps: index 0 is the initial state
        first = tf.constant(0)
        all_c = raw.ConcatV2(values=[raw.ExpandDims(input=state_c, axis=first), cs], axis=first)
        all_h = raw.ConcatV2(values=[raw.ExpandDims(input=state_h, axis=first), outputs], axis=first)
        batch = raw.Range(start=tf.constant(0), limit=tf.constant(1), delta=tf.constant(1))
        indices = raw.Pack(values=[lengths, batch], axis=1)
        final_c = raw.GatherNd(params=all_c, indices=indices)
        final_h = raw.GatherNd(params=all_h, indices=indices)
    return outputs, final_c, final_h


def _static_lstm(tf, raw, x, state_c, state_h, weights: dict, n: int):
    """LSTMCell(forget_bias=0) unrolled over all T steps of x [T, 1, n] (Mozilla's TFLite export):
    (outputs [T, 1, n], final c, final h)."""
    steps = x.shape[0]
    with tf.name_scope(LSTM_SCOPE):
        kernel = tf.constant(weights[LSTM_KERNEL], name="kernel")
        bias = tf.constant(weights[LSTM_BIAS], name="bias")
        c, h, outputs = state_c, state_h, []
        for x_t in raw.Unpack(value=x, num=steps, axis=0):
            gates = raw.BiasAdd(value=raw.MatMul(a=raw.ConcatV2(values=[x_t, h], axis=tf.constant(1)), b=kernel),
                                bias=bias)
            i, j, f, o = raw.Split(axis=tf.constant(1), value=gates, num_split=4)
            c = raw.AddV2(x=raw.Mul(x=raw.Sigmoid(x=f), y=c), y=raw.Mul(x=raw.Sigmoid(x=i), y=raw.Tanh(x=j)))
            h = raw.Mul(x=raw.Sigmoid(x=o), y=raw.Tanh(x=c))
            outputs.append(h)
    return raw.Pack(values=outputs, axis=0), c, h


def build_graph(weights, alphabet_bytes: bytes, beam_width: int = DEFAULT_BEAM_WIDTH, language: str | None = None,
                tflite: bool = False):
    """Mozilla's create_inference_graph(batch_size=1, n_steps=16) in a new tf.Graph, weights as Consts:
    (graph, {input name: tensor}, {output name: tensor}). ``tflite``: the TFLite variant (static LSTM over
    all 16 steps, no ``input_lengths``, ``logits`` squeezed to [16, C])."""
    import tensorflow as tf

    geometry, arrays = checked_weights(weights)
    metadata = metadata_values(alphabet_bytes, beam_width, language)
    n, raw, v1 = geometry.n_hidden, tf.raw_ops, tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        inputs = {"input_node": v1.placeholder(tf.float32, [1, N_STEPS, geometry.window, geometry.n_input],
                                               name="input_node")}
        if not tflite:
            inputs["input_lengths"] = v1.placeholder(tf.int32, [1], name="input_lengths")
        inputs["previous_state_c"] = v1.placeholder(tf.float32, [1, n], name="previous_state_c")
        inputs["previous_state_h"] = v1.placeholder(tf.float32, [1, n], name="previous_state_h")
        x = raw.Transpose(x=inputs["input_node"], perm=tf.constant([1, 0, 2, 3]))
        x = raw.Reshape(tensor=x, shape=tf.constant([-1, geometry.input_width]))
        for name in ("layer_1", "layer_2", "layer_3"):
            x = _dense(tf, raw, x, arrays, name)
        x = raw.Reshape(tensor=x, shape=tf.constant([-1, 1, n]))
        state = inputs["previous_state_c"], inputs["previous_state_h"]
        if tflite:
            x, final_c, final_h = _static_lstm(tf, raw, x, *state, arrays, n)
        else:
            x, final_c, final_h = _block_lstm(tf, raw, x, inputs["input_lengths"], *state, arrays, n)
        x = raw.Reshape(tensor=x, shape=tf.constant([-1, n]))
        x = _dense(tf, raw, x, arrays, "layer_5")
        x = _dense(tf, raw, x, arrays, "layer_6", relu=False)
        x = raw.Reshape(tensor=x, shape=tf.constant([-1, 1, geometry.num_classes]), name="raw_logits")
        if tflite:
            x = raw.Squeeze(input=x, axis=[1])
        outputs = {"logits": raw.Softmax(logits=x, name="logits"),
                   "new_state_c": raw.Identity(input=final_c, name="new_state_c"),
                   "new_state_h": raw.Identity(input=final_h, name="new_state_h")}
        inputs["input_samples"], outputs["mfccs"] = _features(tf, raw)
        for name, value in metadata.items():
            dtype = tf.string if isinstance(value, bytes) else tf.int32
            outputs[name] = tf.constant([value], dtype=dtype, name=name)
    return graph, inputs, outputs


def inference_graph_def(weights, alphabet_bytes: bytes, beam_width: int = DEFAULT_BEAM_WIDTH,
                        language: str | None = None):
    """The frozen inference GraphDef of Mozilla 0.9.3 (module docstring), loadable by libdeepspeech.so."""
    graph, _inputs, _outputs = build_graph(weights, alphabet_bytes, beam_width, language)
    graph_def = graph.as_graph_def()
    strip_default_attrs(graph_def)
    unknown = sorted({node.op for node in graph_def.node} - MOZILLA_OPS)
    if unknown:  # a programming error, not a user's: the builder must use Mozilla's ops only
        raise AssertionError(f"ops Mozilla's runtime lacks: {', '.join(unknown)}")
    return graph_def


def strip_default_attrs(graph_def) -> None:
    """Remove every attribute whose value is its op's default (in place): attributes newer than TF 2.3
    are all defaulted, and TF 2.3 refuses a NodeDef naming an attribute it does not know."""
    from tensorflow.python.framework import op_def_registry

    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        for attr in op_def.attr:
            if attr.HasField("default_value") and attr.name in node.attr \
                    and node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_pb(path, graph_def) -> None:
    """Write a GraphDef as a binary .pb, atomically, attributes at their defaults removed (again: TF's
    import_graph_def adds them to the GraphDef it is given)."""
    from tensorflow.core.framework import graph_pb2

    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)
    strip_default_attrs(copy)
    write_bytes_atomic(path, copy.SerializeToString())
