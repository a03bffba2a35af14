"""Deep Speech 2 (Amodei et al., 2016) as Keras 3 layers.

features [B, T, F] --FeatureNormalization--> ConvBlock x1..3 --> RecurrentLayer xN
         --> Lookahead (optional) --> Dense + clipped ReLU --> Dense logits [B, T', alphabet + 1]

The CTC blank is the last class, as in Mozilla DeepSpeech. Every layer takes a boolean frame mask
so that padding never enters BatchNorm statistics or the backward recurrence.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers, ops

from . import recurrent

PACKAGE = "deepspeech"


def clipped_relu(x, clip: float = 20.0):
    """The paper's activation: min(max(x, 0), 20)."""
    return ops.minimum(ops.maximum(x, 0.0), clip)


@dataclass(frozen=True)
class ConvSpec:
    filters: int
    kernel: tuple[int, int]  # (time, frequency); frequency ignored for 1D convolutions
    stride: tuple[int, int]


@dataclass(frozen=True)
class ModelConfig:
    """The model's geometry; saved with every checkpoint and export."""

    n_features: int
    num_classes: int  # alphabet size + 1 (blank, last)
    conv: tuple[ConvSpec, ...] = (ConvSpec(512, (11, 1), (3, 1)),)  # the paper's 1D variant
    conv_type: str = "1d"
    rnn_type: str = "gru"
    rnn_layers: int = 3
    rnn_units: int = 256
    bidirectional: bool = True
    lookahead: int = 0  # row-convolution context tau in output frames; 0 = none
    fc_units: int = 256
    dropout: float = 0.05  # after every recurrent layer and the fully connected one, unless below
    rnn_dropout: tuple[float, ...] = ()  # per recurrent layer from the first; layers beyond: ``dropout``
    fc_dropout: float | None = None  # after the fully connected layer (None: ``dropout``)
    relu_clip: float = 20.0
    family: str = "deepspeech2"

    @property
    def time_stride(self) -> int:
        stride = 1
        for spec in self.conv:
            stride *= spec.stride[0]
        return stride

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["conv"] = tuple(
            ConvSpec(c["filters"], tuple(c["kernel"]), tuple(c["stride"])) for c in d["conv"]
        )
        d["rnn_dropout"] = tuple(d.get("rnn_dropout", ()))
        return cls(**d)

    def layer_dropout(self, layer: str, index: int = 0) -> float:
        """The dropout rate after recurrent layer ``index`` ("rnn") or the fully connected one ("fc")."""
        if layer == "fc":
            return self.dropout if self.fc_dropout is None else self.fc_dropout
        return self.rnn_dropout[index] if index < len(self.rnn_dropout) else self.dropout

    def validate(self) -> None:
        if not 1 <= len(self.conv) <= 3:
            raise ValueError(f"1 to 3 convolution layers are supported, got {len(self.conv)}")
        if self.conv_type not in ("1d", "2d"):
            raise ValueError(f"conv_type must be 1d or 2d, got {self.conv_type!r}")
        if self.rnn_type not in RecurrentLayer.GATES:
            raise ValueError(f"rnn_type must be one of {sorted(RecurrentLayer.GATES)}, got {self.rnn_type!r}")
        if self.rnn_layers < 1 or self.rnn_units < 1:
            raise ValueError("rnn_layers and rnn_units must be positive")
        if self.lookahead and self.bidirectional:
            raise ValueError("lookahead convolution is for unidirectional (streaming) models")
        rates = (self.dropout, self.layer_dropout("fc"), *self.rnn_dropout)
        if not all(0 <= rate < 1 for rate in rates):
            raise ValueError(f"dropout rates must be in [0, 1), got {', '.join(map(str, rates))}")


def output_lengths(lengths, config: ModelConfig):
    """Frames after the convolutions ('same' padding: ceil(len / stride) per layer)."""
    for spec in config.conv:
        lengths = (lengths + spec.stride[0] - 1) // spec.stride[0]
    return lengths


def _frame_mask(lengths, max_len):
    return tf.sequence_mask(lengths, max_len)


@keras.saving.register_keras_serializable(PACKAGE)
class FeatureNormalization(layers.Layer):
    """Per-bin mean/variance normalization with statistics measured on the training set."""

    def build(self, input_shape):
        n = input_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(n,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(n,), initializer="ones", trainable=False)

    def set_statistics(self, mean, std):
        self.mean.assign(tf.cast(mean, self.mean.dtype))
        self.std.assign(tf.maximum(tf.cast(std, self.std.dtype), 1e-3))

    def call(self, x):
        return (x - ops.cast(self.mean, x.dtype)) / ops.cast(self.std, x.dtype)


@keras.saving.register_keras_serializable(PACKAGE)
class MaskedBatchNorm(layers.Layer):
    """Sequence-wise BatchNorm: moments over batch and valid time steps, per last-axis feature.

    Statistics are computed in float32 (also under mixed precision); running averages serve inference.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        n = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(n,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(n,), initializer="zeros")
        stat = dict(shape=(n,), trainable=False, autocast=False, aggregation="mean")
        self.moving_mean = self.add_weight(name="moving_mean", initializer="zeros", **stat)
        self.moving_variance = self.add_weight(name="moving_variance", initializer="ones", **stat)
        self.updates = self.add_weight(name="updates", shape=(), initializer="zeros", trainable=False,
                                       autocast=False, aggregation="mean")

    def call(self, x, frame_mask, training=False):
        x32 = ops.cast(x, "float32")
        if training and self.trainable:  # a frozen layer (transfer learning) keeps its statistics
            mean, var = self._moments(x32, frame_mask)
            self.update_moving_statistics(mean, var)
        else:
            mean, var = self.moving_mean, self.moving_variance
        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        scale = ops.rsqrt(var + self.epsilon) * gamma  # per feature, so one multiply-add per element
        y = x32 * scale + (beta - mean * scale)
        return ops.cast(y, x.dtype)

    def update_moving_statistics(self, mean, var):
        """Move the running averages towards a training batch's moments (float32 [n])."""
        # num_updates warm-up (as tf.train.ExponentialMovingAverage): early averages follow the
        # batches closely, so short runs and fine-tunes get usable inference statistics
        decay = ops.minimum(self.momentum, (1.0 + self.updates) / (10.0 + self.updates))
        ok = ops.all(ops.isfinite(mean)) & ops.all(ops.isfinite(var))  # a diverged batch keeps
        for stat, value in ((self.moving_mean, mean), (self.moving_variance, var)):  # old stats
            stat.assign(ops.where(ok, stat * decay + value * (1 - decay), stat))
        self.updates.assign(self.updates + ops.cast(ok, "float32"))

    @staticmethod
    def _moments(x32, frame_mask):
        """Mean and variance over valid frames, summed across replicas (synchronized BatchNorm), so
        that a step on N devices normalizes exactly as the same global batch on one device."""
        axes = list(range(len(x32.shape) - 1))
        m = ops.cast(frame_mask, "float32")
        m = ops.reshape(m, ops.shape(m) + (1,) * (len(x32.shape) - 2))
        sums = [ops.sum(x32 * m, axis=axes), ops.sum(ops.square(x32) * m, axis=axes),
                ops.sum(m) * ops.ones_like(x32[(0,) * len(axes)])]  # the same count for every feature
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            sums = replica.all_reduce(tf.distribute.ReduceOp.SUM, sums)
        total, total_sq, count = sums
        count = ops.maximum(count, 1.0)
        mean = total / count
        return mean, ops.maximum(total_sq / count - ops.square(mean), 0.0)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (left, right) for an axis of static ``size``."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(PACKAGE)
class ConvBlock(layers.Layer):
    """Convolution (2D over time x frequency, or 1D over time) + BatchNorm + clipped ReLU.

    Time padding is explicit and length-independent (TF 'same' moves its left pad with len mod
    stride, so frame alignment would depend on the whole utterance's length, which a stream cannot
    know): ``left_pad`` frames before, enough after for ceil(len / stride) outputs. ``left_pad`` is
    what 'same' uses when len is a multiple of the stride, so older checkpoints keep their meaning.
    The frequency axis of a 2D convolution keeps 'same' padding.
    """

    def __init__(self, filters, kernel, stride, conv_type="2d", relu_clip=20.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel, self.stride = filters, tuple(kernel), tuple(stride)
        self.conv_type, self.relu_clip = conv_type, relu_clip
        if conv_type == "2d":
            self.conv = layers.Conv2D(filters, self.kernel, self.stride, padding="valid",
                                      use_bias=False, name="conv")
        else:
            self.conv = layers.Conv1D(filters, self.kernel[0], self.stride[0], padding="valid",
                                      use_bias=False, name="conv")
        self.bn = MaskedBatchNorm(name="bn")

    @property
    def left_pad(self) -> int:
        return max(self.kernel[0] - self.stride[0], 0) // 2

    def convolve_valid(self, x):
        """The convolution with no time padding (the frequency axis padded as 'same')."""
        if self.conv_type == "2d":
            left, right = same_padding(x.shape[2], self.kernel[1], self.stride[1])
            x = ops.pad(x, [[0, 0], [0, 0], [left, right], [0, 0]])
        return self.conv(x)

    def activate(self, y, mask, training=False):
        """BatchNorm + clipped ReLU, then zero the frames outside ``mask`` [B, T]."""
        y = clipped_relu(self.bn(y, mask, training=training), self.relu_clip)
        return y * ops.cast(ops.reshape(mask, ops.shape(mask) + (1,) * (len(y.shape) - 2)), y.dtype)

    def call(self, x, lengths, training=False):
        k, s = self.kernel[0], self.stride[0]
        out_steps = (ops.shape(x)[1] + s - 1) // s
        # a static right pad (k frames are always enough), then the first ceil(T / s) outputs: a pad
        # computed from T would hide the static feature size from the TFLite converter
        time_pad = [[0, 0], [self.left_pad, k]] + [[0, 0]] * (len(x.shape) - 2)
        y = self.convolve_valid(tf.pad(x, time_pad))[:, :out_steps]
        lengths = (lengths + s - 1) // s
        return self.activate(y, _frame_mask(lengths, ops.shape(y)[1]), training), lengths

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel": self.kernel,
                "stride": self.stride, "conv_type": self.conv_type, "relu_clip": self.relu_clip}


@keras.saving.register_keras_serializable(PACKAGE)
class RecurrentLayer(layers.Layer):
    """GRU, LSTM or simple (clipped-ReLU) RNN, uni- or bidirectional, with sequence-wise BatchNorm.

    As in the paper, BatchNorm acts on the input-to-hidden path only, BN(W x_t). ``kernel`` picks how
    the sequence is computed (recurrent.py): "generic" (BN(W x) for all frames in one matrix product,
    then a loop doing U h per step) or "fused" (BatchNorm folded into W, the recurrence in cuDNN on a
    GPU or Keras' loop on a CPU; GRU and LSTM). Both give the same outputs, gradients and moving
    statistics from the same variables; the trainer sets it (devices.choose_recurrent_kernels), exports
    and streaming use the generic formulation (``step``).
    """

    GATES = {"gru": 3, "lstm": 4, "rnn": 1}

    def __init__(self, units, rnn_type="gru", bidirectional=True, relu_clip=20.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.rnn_type = units, rnn_type
        self.bidirectional, self.relu_clip = bidirectional, relu_clip
        self.directions = 2 if bidirectional else 1
        self.gates = self.GATES[rnn_type]
        self.bn = MaskedBatchNorm(name="bn")
        self.kernel = "generic"  # not part of the config: a runtime choice, same variables either way

    def build(self, input_shape):
        n, g, u = self.directions, self.gates, self.units
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(input_shape[-1], n * g * u), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, u, g * u), initializer="orthogonal")
        bias_init = "zeros"
        if self.rnn_type == "lstm":  # forget-gate bias 1 (i, f, g, o order)
            bias_init = keras.initializers.Constant([0.0] * u + [1.0] * u + [0.0] * (2 * u))
        self.recurrent_bias = self.add_weight(
            name="recurrent_bias", shape=(n, g * u), initializer=bias_init)
        self.bn.build((None, None, n * g * u))  # the fused kernel reads its statistics without calling it

    def step(self, state, x_t):
        """One time step: state, projected input [directions, B, gates * units] -> new state."""
        h = self.output_of(state)
        hh = tf.matmul(h, self.recurrent_kernel) + self.recurrent_bias[:, None, :]
        c = state[1] if self.rnn_type == "lstm" else None
        h, c = recurrent.cell_update(self.rnn_type, x_t, h, c, hh, self.relu_clip)
        return tf.stack([h, c]) if self.rnn_type == "lstm" else h

    def project(self, x, mask, training=False):
        """BN(W x) for all frames at once: [B, T, D] -> [B, T, directions, gates * units]."""
        batch, steps = ops.shape(x)[0], ops.shape(x)[1]
        # a 2D product: a [B, T, D] x [D, N] one is a broadcast batch product whose weight gradient
        # is B products and a sum over them
        flat = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), ops.cast(self.input_kernel, x.dtype))
        xp = self.bn(tf.reshape(flat, [batch, steps, flat.shape[-1]]), mask, training=training)
        return tf.reshape(xp, [batch, steps, self.directions, self.gates * self.units])

    def zero_state(self, batch, dtype="float32"):
        """The initial state: [directions, B, units] ([2, directions, B, units] for LSTM: h, c)."""
        zeros = tf.zeros([self.directions, batch, self.units], dtype=dtype)
        return tf.stack([zeros, zeros]) if self.rnn_type == "lstm" else zeros

    def output_of(self, state):
        """The hidden output h of a state made by ``zero_state`` or ``step``."""
        return state[0] if self.rnn_type == "lstm" else state

    def call(self, x, lengths, training=False):
        mask = _frame_mask(lengths, ops.shape(x)[1])
        if self.kernel == "fused":
            return recurrent.run_fused(self, x, lengths, mask, training)
        if self.kernel == "scan":
            return self._scan(x, lengths, mask, training)
        return recurrent.run_generic(self, x, lengths, mask, training)

    def _scan(self, x, lengths, mask, training=False):
        """The first formulation (tf.scan over ``step``, both directions in one batched product),
        kept as the reference the kernels are tested against."""
        xp = self.project(x, mask, training)
        if self.bidirectional:  # the backward direction reads each sequence from its own end
            fwd, bwd = xp[:, :, 0], tf.reverse_sequence(xp[:, :, 1], lengths, seq_axis=1, batch_axis=0)
            xp = tf.stack([fwd, bwd], axis=2)
        xs = tf.transpose(xp, [1, 2, 0, 3])  # [T, n, B, g*u]
        states = tf.scan(self.step, xs, initializer=self.zero_state(ops.shape(x)[0], x.dtype))
        hs = states[:, 0] if self.rnn_type == "lstm" else states  # [T, n, B, u]
        hs = tf.transpose(hs, [2, 0, 1, 3])  # [B, T, n, u]
        if self.bidirectional:
            hs = tf.concat([hs[:, :, 0], tf.reverse_sequence(hs[:, :, 1], lengths, 1, 0)], axis=-1)
        else:
            hs = hs[:, :, 0]
        return hs * ops.cast(mask[:, :, None], hs.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rnn_type": self.rnn_type,
                "bidirectional": self.bidirectional, "relu_clip": self.relu_clip}


@keras.saving.register_keras_serializable(PACKAGE)
class Lookahead(layers.Layer):
    """Row convolution: out[t, d] = sum_{j=0..tau} W[j, d] * x[t + j, d] (future context only)."""

    def __init__(self, context, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.context + 1, input_shape[-1]),
                                      initializer="glorot_uniform")

    def valid(self, x):
        """Outputs for the frames whose whole context is in ``x``: [B, T, D] -> [B, T - tau, D]."""
        kernel = ops.cast(self.kernel, x.dtype)[:, :, None]
        return ops.depthwise_conv(x, kernel, strides=1, padding="valid")

    def call(self, x):
        return self.valid(ops.pad(x, [[0, 0], [0, self.context], [0, 0]]))

    def get_config(self):
        return {**super().get_config(), "context": self.context}


@keras.saving.register_keras_serializable(PACKAGE)
class DeepSpeech2(keras.Model):
    """The full acoustic model: (features, lengths) -> (logits, output lengths)."""

    def __init__(self, config: dict | ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.model_config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        cfg = self.model_config
        cfg.validate()
        self.normalization = FeatureNormalization(name="normalization")
        self.convs = [ConvBlock(s.filters, s.kernel, s.stride, cfg.conv_type, cfg.relu_clip,
                                name=f"conv_{i + 1}") for i, s in enumerate(cfg.conv)]
        self.rnns = [RecurrentLayer(cfg.rnn_units, cfg.rnn_type, cfg.bidirectional, cfg.relu_clip,
                                    name=f"rnn_{i + 1}") for i in range(cfg.rnn_layers)]
        self.lookahead = Lookahead(cfg.lookahead, name="lookahead") if cfg.lookahead else None
        self.fc = layers.Dense(cfg.fc_units, name="fc")
        # one seed generator for every dropout (what one Keras Dropout layer made before per-layer rates:
        # the same checkpoint variable); none when no layer drops out
        rates = [cfg.layer_dropout("rnn", i) for i in range(cfg.rnn_layers)] + [cfg.layer_dropout("fc")]
        self.seed_generator = keras.random.SeedGenerator(name="seed_generator") if any(rates) else None
        self.logits = layers.Dense(cfg.num_classes, dtype="float32", name="logits")

    def call(self, inputs, training=False):
        features, lengths = inputs
        # zero beyond each length: padded raw frames would normalize to nonzero values and reach a
        # sample's last outputs through the convolutions, making them depend on the batch
        x = self.normalization(features)
        x = x * ops.cast(_frame_mask(lengths, ops.shape(x)[1])[:, :, None], x.dtype)
        if self.model_config.conv_type == "2d":
            x = x[..., None]
        for conv in self.convs:
            x, lengths = conv(x, lengths, training=training)
        if self.model_config.conv_type == "2d":  # [B, T, F, C] -> [B, T, F*C]
            shape = ops.shape(x)
            x = ops.reshape(x, (shape[0], shape[1], x.shape[2] * x.shape[3]))
        for i, rnn in enumerate(self.rnns):
            x = self._dropout(rnn(x, lengths, training=training), self.model_config.layer_dropout("rnn", i),
                              training)
        if self.lookahead is not None:
            x = self.lookahead(x)
        return self.head(x, training), lengths

    def head(self, x, training=False):
        """Per-frame output layers: (lookahead output) -> logits."""
        x = self._dropout(clipped_relu(self.fc(x), self.model_config.relu_clip),
                          self.model_config.layer_dropout("fc"), training)
        return self.logits(x)

    def _dropout(self, x, rate: float, training):
        if not training or not rate:
            return x
        return keras.random.dropout(x, rate, seed=self.seed_generator)

    def layers_from_output(self) -> list:
        """The weight layers, the output layer first: logits, fc, lookahead (if any), rnn_k .. rnn_1,
        conv_k .. conv_1 (--drop_source_layers, --freeze_source_layers)."""
        layers_ = [self.logits, self.fc] + ([self.lookahead] if self.lookahead is not None else [])
        return layers_ + list(reversed(self.rnns)) + list(reversed(self.convs))

    def build_for(self, batch=1, steps=64):
        """Create all weights by running a dummy batch."""
        features = tf.zeros([batch, steps, self.model_config.n_features])
        self((features, tf.fill([batch], steps)), training=False)
        return self

    def get_config(self):
        return {**super().get_config(), "config": json.loads(self.model_config.to_json())}

    def summary_line(self) -> str:
        params = sum(int(tf.size(v)) for v in self.trainable_variables)
        return f"Deep Speech 2: {params:,} trainable parameters"
