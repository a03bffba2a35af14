"""Mozilla DeepSpeech 0.9's acoustic model as Keras 3 layers, weights in its TF1 layout.

features [B, T, 26] (MFCC) --OverlappingWindows (9 frames each side, zeros beyond the ends)--> [B, T, 494]
  --> layer_1, layer_2, layer_3 (dense, clipped ReLU, dropout) --> LSTM (unidirectional)
  --> layer_5 (dense, clipped ReLU, dropout) --> layer_6 (dense) --> logits [B, T, alphabet + 1]

Every variable has the shape and layout of Mozilla's checkpoints (``WEIGHT_NAMES``): the LSTM keeps
one kernel [inputs + units, 4 units] (rows x then h, gate blocks i, c, f, o, forget bias 0) and one
bias, so ``tf1_weights()`` / ``set_tf1_weights()`` are plain copies. The output keeps the input's frame
rate (no strides): output lengths are the input lengths.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from . import FAMILY, LSTM_BIAS, LSTM_KERNEL, N_CONTEXT, N_INPUT, RELU_CLIP, MozillaGeometry
from .. import recurrent
from ..model import clipped_relu


@dataclass(frozen=True)
class MozillaConfig:
    """The model's geometry and dropout; saved with every checkpoint (model.json) and export."""

    n_hidden: int = 2048
    num_classes: int = 29  # alphabet size + 1 (blank, last)
    n_features: int = N_INPUT
    n_context: int = N_CONTEXT
    # Mozilla's dropout_0, 1, 2 and 5: after layer_1, layer_2, layer_3 and layer_5
    dropout: tuple[float, float, float, float] = (0.05, 0.05, 0.05, 0.05)
    relu_clip: float = RELU_CLIP
    family: str = FAMILY

    time_stride = 1  # feature frames per output frame

    @property
    def geometry(self) -> MozillaGeometry:
        return MozillaGeometry(self.n_hidden, self.num_classes, self.n_features, self.n_context)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "MozillaConfig":
        d = dict(d)
        d["dropout"] = tuple(d.get("dropout", cls.dropout))
        return cls(**d)

    def validate(self) -> None:
        if self.n_hidden < 1 or self.num_classes < 2:
            raise ValueError(f"n_hidden {self.n_hidden} and {self.num_classes} classes: need at least 1 and 2")
        if len(self.dropout) != 4 or not all(0.0 <= r < 1.0 for r in self.dropout):
            raise ValueError(f"dropout rates {self.dropout}: four rates in [0, 1)")


class OverlappingWindows(layers.Layer):
    """[B, T, F] -> [B, T, (2 context + 1) F]: each frame with its ``context`` neighbours each side
    (Mozilla's create_overlapping_windows, zero frames beyond both ends), offset major, feature minor."""

    def __init__(self, context: int = N_CONTEXT, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def call(self, x):
        steps = ops.shape(x)[1]
        padded = ops.pad(x, ((0, 0), (self.context, self.context), (0, 0)))
        windows = [padded[:, k:k + steps] for k in range(2 * self.context + 1)]
        return ops.concatenate(windows, axis=-1)

    def get_config(self):
        return {**super().get_config(), "context": self.context}


class MozillaLSTM(layers.Layer):
    """Mozilla's LSTM (LSTMBlockFusedCell / CudnnLSTM canonical weights): one kernel over [x, h] with
    gate blocks i, c, f, o and forget bias 0. Outputs are zero past each sequence's length.

    ``kernel`` picks how the sequence is computed, from the same variables: "generic" (x W + b for all
    frames in one product, then ``lstm_recurrence``) or "fused" (cuDNN's LSTM, the weights packed into its
    opaque vector by ``cudnn_params``, where a GPU is visible; the generic loop elsewhere). The trainer
    sets it (devices.choose_recurrent_kernels); exports (graph.py, tflite.py) build their own LSTM from
    the weights. The weight variables are ``gate_kernel`` and ``bias`` (named "kernel" and "bias").
    """

    rnn_type, bidirectional = "lstm", False  # what devices.choose_recurrent_kernels reads

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel = "generic"  # not part of the config: a runtime choice, same variables either way

    def build(self, input_shape):
        inputs, u = int(input_shape[-1]), self.units
        self.gate_kernel = self.add_weight(name="kernel", shape=(inputs + u, 4 * u),
                                           initializer=keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform"))
        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer="zeros")

    @property
    def input_size(self) -> int:
        return int(self.gate_kernel.shape[0]) - self.units

    def call(self, x, mask):
        dtype = x.dtype
        if self.kernel == "fused" and recurrent.gpu_visible():
            lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
            params = cudnn_params(self.gate_kernel, self.bias, self.input_size, dtype)
            outputs = recurrent.cudnn_sequence("lstm", x, lengths, params, self.units)
        else:
            inputs = x.shape[-1]
            kernel, bias = ops.cast(self.gate_kernel, dtype), ops.cast(self.bias, dtype)
            projected = ops.matmul(x, kernel[:inputs]) + bias  # x W for every frame at once
            outputs = lstm_recurrence(projected, kernel[inputs:], self.units)
        return outputs * ops.cast(mask[:, :, None], dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


CUDNN_GATE_ORDER = (0, 2, 1, 3)  # Mozilla's blocks i, c, f, o taken in cuDNN's order i, f, g (= c), o


def cudnn_params(kernel, bias, inputs: int, dtype):
    """cuDNN's opaque LSTM parameter vector of Mozilla's weights: kernel [inputs + units, 4 units] (rows x
    then h) split into input and recurrent matrices, gates reordered, the bias as cuDNN's input bias and
    zeros as its recurrent bias (cuDNN adds both)."""
    kernel, bias = tf.cast(kernel, tf.float32), tf.cast(bias, tf.float32)
    w, r = tf.split(kernel[:inputs], 4, axis=1), tf.split(kernel[inputs:], 4, axis=1)
    b = tf.split(bias, 4)
    return recurrent.pack_cudnn([w[k] for k in CUDNN_GATE_ORDER], [r[k] for k in CUDNN_GATE_ORDER],
                                [b[k] for k in CUDNN_GATE_ORDER], [tf.zeros_like(b[0])] * 4, dtype)


def lstm_recurrence(projected, recurrent_kernel, units: int, state=None):
    """h_t over projected inputs [B, T, 4u] (gates i, c, f, o) with h U per step -> outputs [B, T, u]
    (and, given an initial ``state`` (c, h), also the final (c, h))."""
    dtype = projected.dtype
    xs = tf.transpose(projected, [1, 0, 2])
    steps, batch = tf.shape(xs)[0], tf.shape(xs)[1]
    frames = tf.TensorArray(dtype, size=steps).unstack(xs)
    zeros = tf.zeros([batch, units], dtype)
    c0, h0 = state if state is not None else (zeros, zeros)

    def body(t, c, h, out):
        i, g, f, o = tf.split(frames.read(t) + tf.matmul(h, recurrent_kernel), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return t + 1, c, h, out.write(t, h)

    _, c, h, out = tf.while_loop(lambda t, *_: t < steps, body, (0, c0, h0, tf.TensorArray(dtype, size=steps)),
                                 maximum_iterations=steps)
    outputs = tf.transpose(out.stack(), [1, 0, 2])
    return outputs if state is None else (outputs, (c, h))


class MozillaModel(keras.Model):
    """Mozilla 0.9's acoustic model: (features, lengths) -> (logits, lengths), batch-major."""

    def __init__(self, config: dict | MozillaConfig, **kwargs):
        super().__init__(**kwargs)
        self.model_config = config if isinstance(config, MozillaConfig) else MozillaConfig.from_dict(config)
        cfg = self.model_config
        cfg.validate()
        self.normalization = None  # Mozilla's MFCC enter the model as they are
        self.windows = OverlappingWindows(cfg.n_context, name="windows")
        init = keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform")  # Mozilla's
        self.dense = {name: layers.Dense(units, kernel_initializer=init, name=name, dtype=dtype)
                      for name, units, dtype in (("layer_1", cfg.n_hidden, None), ("layer_2", cfg.n_hidden, None),
                                                 ("layer_3", cfg.n_hidden, None), ("layer_5", cfg.n_hidden, None),
                                                 ("layer_6", cfg.num_classes, "float32"))}
        self.lstm = MozillaLSTM(cfg.n_hidden, name="lstm")
        rates = cfg.dropout
        self.seed_generator = keras.random.SeedGenerator(name="seed_generator") if any(rates) else None

    def call(self, inputs, training=False):
        features, lengths = inputs
        mask = ops.arange(ops.shape(features)[1])[None, :] < ops.cast(lengths, "int32")[:, None]
        x = self.windows(features * ops.cast(mask[:, :, None], features.dtype))
        rates = self.model_config.dropout
        for name, rate in zip(("layer_1", "layer_2", "layer_3"), rates[:3]):
            x = self._dropout(clipped_relu(self.dense[name](x), self.model_config.relu_clip), rate, training)
        x = self.lstm(x, mask)
        x = self._dropout(clipped_relu(self.dense["layer_5"](x), self.model_config.relu_clip), rates[3], training)
        return self.dense["layer_6"](x), lengths

    @property
    def rnns(self) -> list:
        """The recurrent layers whose kernel the trainer chooses (devices.choose_recurrent_kernels), as
        DeepSpeech2.rnns: here the one LSTM."""
        return [self.lstm]

    def _dropout(self, x, rate: float, training):
        if not training or not rate:
            return x
        return keras.random.dropout(x, rate, seed=self.seed_generator)

    def layers_from_output(self) -> list:
        """The weight layers, the output layer first (Mozilla's --drop_source_layers order: layer_6,
        layer_5, the LSTM, layer_3, layer_2; layer_1 last)."""
        d = self.dense
        return [d["layer_6"], d["layer_5"], self.lstm, d["layer_3"], d["layer_2"], d["layer_1"]]

    def build_for(self, batch=1, steps=64):
        """Create all weights by running a dummy batch."""
        self((tf.zeros([batch, steps, self.model_config.n_features]), tf.fill([batch], steps)), training=False)
        return self

    # --- Mozilla's TF1 names
    def tf1_variables(self) -> dict:
        """{TF1 name: the Keras variable holding it}."""
        names = {LSTM_KERNEL: self.lstm.gate_kernel, LSTM_BIAS: self.lstm.bias}
        for name, layer in self.dense.items():
            names[f"{name}/weights"], names[f"{name}/bias"] = layer.kernel, layer.bias
        return names

    def tf1_weights(self) -> dict[str, np.ndarray]:
        """The weights as Mozilla's checkpoint names them (float32 numpy arrays)."""
        return {name: np.asarray(v.numpy(), np.float32) for name, v in self.tf1_variables().items()}

    def tf1_layer(self, name: str) -> str:
        """The Keras layer name of the TF1 tensor ``name``."""
        return "lstm" if name in (LSTM_KERNEL, LSTM_BIAS) else name.split("/", 1)[0]

    def get_config(self):
        return {**super().get_config(), "config": json.loads(self.model_config.to_json())}

    def summary_line(self) -> str:
        params = sum(int(tf.size(v)) for v in self.trainable_variables)
        cfg = self.model_config
        return (f"Mozilla DeepSpeech 0.9 model: {params:,} parameters, 3 dense + LSTM + 2 dense, "
                f"n_hidden {cfg.n_hidden}, {cfg.num_classes} classes")
