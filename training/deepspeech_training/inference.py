"""The functions an export contains: ``forward`` (bidirectional) or ``step`` (unidirectional).

``step`` computes ``n_steps`` output frames from a fixed window of raw feature frames and a flat
recurrent state, so that a stream fed in arbitrary pieces gives the full-sequence model's
probabilities. Its bookkeeping (what ``position``, ``valid_frames``, the window and the state mean)
is the one the client's driver implements; ``native_client/python/deepspeech/streaming.py``
documents it. The graph has static shapes and an unrolled recurrence (no while loop), so it
converts to TFLite with builtin ops only.

Geometry, for conv layers i = 1..L (kernel k_i, stride s_i, left pad p_i = max(k_i - s_i, 0) // 2):
the step at ``position`` P computes the conv stack's outputs P..P+n-1, which read frames
q_i = P * M_i - o_i .. q_i + c_i - 1 of layer i's output (layer 0: the raw features), with
M_L = 1, o_L = 0, c_L = n and M_{i-1} = M_i s_i, o_{i-1} = o_i s_i + p_i, c_{i-1} = (c_i - 1) s_i + k_i.
Frames outside [0, len_i) are zeroed at every layer's input, exactly as the full model's padding
(len_0 = ``valid_frames``, len_i = ceil(len_{i-1} / s_i)).
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from keras import ops

from .model import DeepSpeech2, ModelConfig

DEFAULT_STEPS = 16


@dataclass(frozen=True)
class LayerSpan:
    """The frames of one layer's output that a step reads: q = position * multiplier - offset."""

    multiplier: int
    offset: int
    count: int


@dataclass(frozen=True)
class StreamingGeometry:
    """Window, state and delay of a ``step`` function; ``metadata()`` goes into the export."""

    n_steps: int
    spans: tuple[LayerSpan, ...]  # raw features first, then each conv layer's output
    state_parts: tuple[tuple[str, int], ...]  # (name, size) in the order packed into ``state``
    lookahead: int
    num_classes: int
    n_features: int

    @classmethod
    def for_config(cls, config: ModelConfig, n_steps: int = DEFAULT_STEPS) -> "StreamingGeometry":
        if config.bidirectional:
            raise ValueError("a bidirectional model needs the whole utterance: export 'forward'")
        if n_steps < 1:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        spans = [LayerSpan(1, 0, n_steps)]
        for spec in reversed(config.conv):
            (k, _), (s, _) = spec.kernel, spec.stride
            last = spans[0]
            spans.insert(0, LayerSpan(last.multiplier * s, last.offset * s + max(k - s, 0) // 2,
                                      (last.count - 1) * s + k))
        per_layer = config.rnn_units * (2 if config.rnn_type == "lstm" else 1)
        parts = [(f"rnn_{i + 1}", per_layer) for i in range(config.rnn_layers)]
        if config.lookahead:
            parts.append(("lookahead", config.lookahead * config.rnn_units))
        return cls(n_steps, tuple(spans), tuple(parts), config.lookahead, config.num_classes,
                   config.n_features)

    @property
    def window_frames(self) -> int:
        return self.spans[0].count

    @property
    def state_size(self) -> int:
        return sum(size for _, size in self.state_parts)

    def metadata(self) -> dict:
        """What the client's StreamingDriver needs (the export's ``streaming`` entry)."""
        return {"n_steps": self.n_steps, "window_frames": self.window_frames,
                "time_stride": self.spans[0].multiplier, "window_offset": self.spans[0].offset,
                "lookahead": self.lookahead, "state_size": self.state_size,
                "state_layout": [list(part) for part in self.state_parts],
                "num_classes": self.num_classes, "n_features": self.n_features, "batch": "dynamic"}


@dataclass(frozen=True, eq=False)
class ModelFunction:
    """One exportable function.

    ``function`` is the ConcreteFunction (keyword inputs, dict outputs, named as in
    EXPORT_FORMAT.md). ``module`` owns the model's variables and the function (attribute ``name``):
    pass it as the trackable to ``tf.lite.TFLiteConverter.from_concrete_functions`` or as the root
    of ``tf.saved_model.save``. The Keras model itself does not do as the trackable: the converter
    leaves some of its variables as uninitialized resource variables (NaN outputs).
    """

    name: str  # 'forward' or 'step'
    function: object  # tf ConcreteFunction
    module: tf.Module
    streaming: dict | None = None  # the export metadata's 'streaming' entry, for 'step'


def model_function(model: DeepSpeech2, n_steps: int = DEFAULT_STEPS) -> ModelFunction:
    """'forward' for a bidirectional model, 'step' (n_steps output frames a call) otherwise."""
    module = tf.Module()
    module.model_variables = [getattr(v, "value", v) for v in model.variables]  # the tf.Variables
    if model.model_config.bidirectional:
        module.forward = forward_function(model)
        return ModelFunction("forward", module.forward.get_concrete_function(), module)
    geometry = StreamingGeometry.for_config(model.model_config, n_steps)
    module.step = step_function(model, geometry)
    return ModelFunction("step", module.step.get_concrete_function(), module, geometry.metadata())


def forward_function(model: DeepSpeech2):
    """tf.function: features [1, T, F], lengths [1] -> {'probs': [1, T', C]} (softmax)."""
    n_features = model.model_config.n_features

    @tf.function(input_signature=[tf.TensorSpec([1, None, n_features], tf.float32, name="features"),
                                  tf.TensorSpec([1], tf.int32, name="lengths")])
    def forward(features, lengths):
        logits, _ = model((features, lengths), training=False)
        return {"probs": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    return forward


def step_function(model: DeepSpeech2, geometry: StreamingGeometry):
    """tf.function ``step`` (see the module docstring for the geometry); the batch axis is dynamic and
    its rows are independent streams (each its own position, valid frames and state)."""
    signature = [
        tf.TensorSpec([None, geometry.window_frames, geometry.n_features], tf.float32, name="features"),
        tf.TensorSpec([None], tf.int32, name="position"),
        tf.TensorSpec([None], tf.int32, name="valid_frames"),
        tf.TensorSpec([None, geometry.state_size], tf.float32, name="state"),
    ]

    @tf.function(input_signature=signature)
    def step(features, position, valid_frames, state):
        probs, new_state = stream_step(model, geometry, features, position, valid_frames, state)
        return {"probs": probs, "new_state": new_state}

    return step


def _valid_mask(span: LayerSpan, position, length):
    """position, length [B] -> [B, count] bool: which of each row's span frames lie in [0, length)."""
    index = position[:, None] * span.multiplier - span.offset + tf.range(span.count, dtype=tf.int32)[None, :]
    return (index >= 0) & (index < length[:, None])


def _masked(x, mask):
    return x * ops.cast(ops.reshape(mask, ops.shape(mask) + (1,) * (len(x.shape) - 2)), x.dtype)


def _conv_stack(model: DeepSpeech2, geometry: StreamingGeometry, features, position, length):
    """Raw windows [B, W, F] -> the conv stack's n_steps output frames [B, n, D] and their mask [B, n]."""
    config = model.model_config
    mask = _valid_mask(geometry.spans[0], position, length)
    x = _masked(model.normalization(features), mask)
    if config.conv_type == "2d":
        x = x[..., None]
    for conv, span in zip(model.convs, geometry.spans[1:]):
        length = (length + conv.stride[0] - 1) // conv.stride[0]
        mask = _valid_mask(span, position, length)
        x = conv.activate(conv.convolve_valid(x), mask, training=False)
    if config.conv_type == "2d":
        x = tf.reshape(x, [-1, geometry.n_steps, x.shape[2] * x.shape[3]])
    return x, mask


def _unpack_state(model: DeepSpeech2, geometry: StreamingGeometry, state):
    """Flat [B, N] -> each RNN layer's state (its zero_state shape, batch axis second to last) and
    the held-back frames [B, tau, units]. A row packs its layer states as batch 1 does."""
    sizes = [size for _, size in geometry.state_parts]
    parts = tf.split(state, sizes, axis=1)
    rnn_states = []
    for rnn, part in zip(model.rnns, parts):
        shape = list(rnn.zero_state(1, state.dtype).shape)  # [..., 1, units]
        rank = len(shape)
        row = tf.reshape(part, [-1] + shape[:-2] + shape[-1:])  # [B, ..., units]
        rnn_states.append(tf.transpose(row, list(range(1, rank - 1)) + [0, rank - 1]))
    held = None
    if geometry.lookahead:
        held = tf.reshape(parts[-1], [-1, geometry.lookahead, model.model_config.rnn_units])
    return rnn_states, held


def _pack_state(rnn_state):
    """A layer's state [..., B, units] -> its rows [B, size] (the inverse of ``_unpack_state``)."""
    rank = len(rnn_state.shape)
    rows = tf.transpose(rnn_state, [rank - 2] + list(range(rank - 2)) + [rank - 1])
    size = 1
    for dim in rows.shape[1:]:
        size *= int(dim)
    return tf.reshape(rows, [-1, size])


def _recur(rnn, x, mask, state, n_steps):
    """One unidirectional RNN layer over the step's frames, unrolled: -> outputs, new state."""
    xs = tf.transpose(rnn.project(x, mask), [1, 2, 0, 3])  # [n, directions, B, g*u]
    outputs = []
    for t in range(n_steps):
        state = rnn.step(state, xs[t])
        outputs.append(rnn.output_of(state)[0])  # [B, u]
    return _masked(tf.stack(outputs, axis=1), mask), state


def stream_step(model: DeepSpeech2, geometry: StreamingGeometry, features, position,
                valid_frames, state):
    """The step's computation for a batch of B streams: -> probs [B, n, C] for each row's output
    frames position - tau + (0..n-1), and the new flat states [B, N]."""
    x, mask = _conv_stack(model, geometry, features, position, valid_frames)
    rnn_states, held = _unpack_state(model, geometry, state)
    new_parts = []
    for rnn, rnn_state in zip(model.rnns, rnn_states):
        x, rnn_state = _recur(rnn, x, mask, rnn_state, geometry.n_steps)
        new_parts.append(_pack_state(rnn_state))
    if held is not None:  # outputs are delayed by tau: the last tau frames wait for their context
        x = tf.concat([held, x], axis=1)
        new_parts.append(tf.reshape(x[:, -geometry.lookahead:], [-1, geometry.lookahead * x.shape[-1]]))
        x = model.lookahead.valid(x)
    probs = tf.nn.softmax(tf.cast(model.head(x), tf.float32), axis=-1)
    return probs, tf.cast(tf.concat(new_parts, axis=1), tf.float32)
