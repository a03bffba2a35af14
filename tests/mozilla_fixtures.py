"""Test fixtures: small checkpoints laid out like Mozilla DeepSpeech 0.9.3 / Coqui STT 1.x release ones.

A fixture is written by Mozilla's own TRAINING graph (train.py ``create_model``), rebuilt here in
``tf.compat.v1`` graph mode at a small ``n_hidden``, trained for two Adam steps on a toy clip and saved
by ``tf.compat.v1.train.Saver``: a name-based V2 bundle (``.index`` + ``.data-00000-of-00001``) with
every name, rank and layout of the released 2048-wide files (see
../shared/reference/mozilla-release-format.md, sections 1-3 and "What a test fixture must reproduce").

    fixture = write_release_checkpoint(tmp_path)              # cuDNN (release) form, n_hidden 8
    fixture.checkpoint_path                                   # .../best_dev-1466475
    fixture.weights                                           # {WEIGHT_NAMES[i]: np.ndarray} as saved
    fixture.probabilities                                     # softmax [T, C] on fixture.audio at save time
    out = reference_outputs(fixture, audio_int16)             # features [T, 26], logits, probs [T, C]
    numpy_forward(fixture.weights, out.features)              # == out.probs (1e-5): Mozilla's math in numpy
    write_broken_checkpoint(tmp_path, "misshaped")            # or "missing": for a loader's error tests

The graph, input to output (batch B, time T; Mozilla's training graph, dropout off):
  int16 audio / 32767 (Mozilla's training pcm_to_np) -> AudioSpectrogram(512, 320, magnitude_squared)
  -> Mfcc(16000 Hz, 26 coefficients, 20..8000 Hz, 40 channels) -> [T, 26] -> [B, T, 26]
  -> overlapping windows: conv1d with an identity filter [19, 26, 494], SAME (9 zero frames each side)
  -> time-major [T*B, 494] (index k*26 + c, k = 0 is t-9)
  -> layer_1..layer_3: min(relu(x @ weights + bias), 20)
  -> [T, B, n] -> LSTM (BlockLSTM, as LSTMBlockFusedCell runs it: kernel [x; h] rows, gate column
     blocks i, c, f, o, forget bias 0, no cell clip, no peepholes) -> [T*B, n]
  -> layer_5: min(relu(.), 20) -> layer_6 (no ReLU) -> logits [T, B, C] (``raw_logits``) -> softmax.
The blank is the last class (C - 1), as TF1's ctc_loss has it.

Checkpoint contents (names exactly as Mozilla's; n = n_hidden, C = labels + 1):
  the 12 ``WEIGHT_NAMES`` (float32, ``MozillaGeometry(n, C).shapes()``), ``global_step`` (int64 []),
  ``learning_rate`` (float32 [], not trainable), ``beta1_power`` and ``beta2_power`` (float32 []), and
  Adam slots ``X/Adam`` (m) and ``X/Adam_1`` (v):
  - ``cudnn=False`` (trained with LSTMBlockFusedCell): slots for all 12 weights;
  - ``cudnn=True`` (the release form, ``--train_cudnn``): no slots for the two LSTM tensors, plus
    ``cudnn_lstm/opaque_kernel`` and its two slots, 1-D float32 of 4*n_in*n + 4*n*n + 8*n elements
    (cuDNN's packing of the same LSTM; a loader ignores them).
State files as Mozilla's savers write them: ``best_dev_checkpoint`` (prefix ``best_dev``) or ``checkpoint``
(any other prefix, e.g. ``train``) in TF's CheckpointState text format with relative paths, ``flags.txt``
(absl flagfile: ``--n_hidden=8``, ``--train_cudnn`` ...), optionally Coqui's ``alphabet.txt`` beside them.
The plain form keeps the Saver's ``<prefix>-<step>.meta``; the cuDNN form, re-saved by SaveV2, has none.

Weights start non-trivial (VarianceScaling fan_avg uniform as Mozilla, but biases random normal instead
of Mozilla's zeros, so that bias layouts are tested too) and from a numpy generator seeded by ``seed``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from deepspeech_training.mozilla import (
    AUDIO_WIN_LEN,
    AUDIO_WIN_STEP,
    LSTM_BIAS,
    LSTM_KERNEL,
    LSTM_SCOPE,
    MFCC_CHANNELS,
    MFCC_LOWER_HZ,
    MFCC_UPPER_HZ,
    N_INPUT,
    OPAQUE_PREFIX,
    RELU_CLIP,
    SAMPLE_RATE,
    WEIGHT_NAMES,
    MozillaGeometry,
    geometry_from_shapes,
)

ENGLISH = (" ", *"abcdefghijklmnopqrstuvwxyz", "'")  # Mozilla's data/alphabet.txt: 28 labels, 29 classes
RELEASE_STEP = 1466475  # deepspeech-0.9.3-checkpoint/best_dev-1466475
TRAIN_STEPS = 2  # Adam steps taken before saving (global_step runs from step - 2 to step)
LEARNING_RATE, BETA1, BETA2, EPSILON = 0.001, 0.9, 0.999, 1e-8  # Mozilla's flags.py defaults
TOY_TRANSCRIPT = "she had"  # the CTC label of the training steps
ADAM_SLOTS = ("Adam", "Adam_1")
OPAQUE_NAMES = (OPAQUE_PREFIX, f"{OPAQUE_PREFIX}/Adam", f"{OPAQUE_PREFIX}/Adam_1")


class FixtureError(ValueError):
    """A fixture that did not come out as specified (names or shapes), or arguments that cannot make one."""


class ReferenceOutputs(NamedTuple):
    """What the TF1 training graph computes for one clip (batch 1, dropout off)."""
    features: np.ndarray  # MFCC [T, 26] float32
    logits: np.ndarray  # layer_6 [T, C] float32 (raw_logits, batch axis dropped)
    probs: np.ndarray  # softmax [T, C] float32


@dataclass(frozen=True)
class ReleaseFixture:
    """A written checkpoint: where it is, what it holds, and what its graph computed on its training clip."""
    directory: Path
    checkpoint_path: str  # the bundle prefix, e.g. <directory>/best_dev-1466475
    state_file: Path  # best_dev_checkpoint or checkpoint
    weights: dict[str, np.ndarray]  # the 12 WEIGHT_NAMES, as saved
    geometry: MozillaGeometry
    labels: tuple[str, ...]
    step: int
    cudnn: bool
    audio: np.ndarray = field(repr=False)  # int16 training clip
    features: np.ndarray = field(repr=False)  # its MFCCs [T, 26], computed by the graph after training
    probabilities: np.ndarray = field(repr=False)  # its softmax [T, C] from the graph that saved the weights

    def reference(self, audio_int16: np.ndarray) -> ReferenceOutputs:
        return reference_outputs(self, audio_int16)


@dataclass(frozen=True)
class BrokenCheckpoint:
    """A checkpoint with one tensor mis-shaped or missing, for a loader's error tests."""
    directory: Path
    checkpoint_path: str
    kind: str  # "misshaped" or "missing"
    tensor: str  # the broken tensor's name
    expected_shape: tuple[int, ...]
    saved_shape: tuple[int, ...] | None  # None when missing


# ----------------------------------------------------------------------------------------------- audio

def training_samples(audio_int16: np.ndarray) -> np.ndarray:
    """Mozilla's training conversion (util/audio.py pcm_to_np): int16 / 32767 as float32 (the native
    client divides by 32768 instead)."""
    audio = np.asarray(audio_int16)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise FixtureError(f"expected 1-D int16 audio, got {audio.dtype} {list(audio.shape)}")
    return audio.astype(np.float32) / np.iinfo(np.int16).max


def frame_count(n_samples: int) -> int:
    """Feature frames Mozilla's training features have for ``n_samples`` (one per full 512-sample window)."""
    return 0 if n_samples < AUDIO_WIN_LEN else 1 + (n_samples - AUDIO_WIN_LEN) // AUDIO_WIN_STEP


def toy_clip(frames: int = 120, seed: int = 0) -> np.ndarray:
    """A deterministic int16 clip of exactly ``frames`` feature frames: a few tones and noise."""
    rng = np.random.default_rng(seed)
    n = AUDIO_WIN_LEN + AUDIO_WIN_STEP * (frames - 1)
    t = np.arange(n) / SAMPLE_RATE
    pitch = 180.0 + 120.0 * np.sin(2 * np.pi * 1.5 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / SAMPLE_RATE) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    audio = 6000 * envelope * voice + 400 * rng.standard_normal(n)
    return np.clip(audio, -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------------------------- graph

def initial_weights(geometry: MozillaGeometry, seed: int = 0) -> dict[str, np.ndarray]:
    """Starting values: weights VarianceScaling(1, fan_avg, uniform) as Mozilla's dense(); biases random
    normal (stddev 0.1) instead of Mozilla's zeros, so that a wrong bias layout shows."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in geometry.shapes().items():
        if len(shape) == 2:
            limit = np.sqrt(3.0 / ((shape[0] + shape[1]) / 2.0))
            weights[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            weights[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return weights


def _audio_to_features(samples):
    """Mozilla's util/feeding.py audio_to_features: float samples [N] -> MFCC [T, 26]."""
    import tensorflow as tf

    spectrogram = tf.raw_ops.AudioSpectrogram(input=tf.reshape(samples, [-1, 1]), window_size=AUDIO_WIN_LEN,
                                              stride=AUDIO_WIN_STEP, magnitude_squared=True)
    mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=tf.constant(SAMPLE_RATE),
                           upper_frequency_limit=MFCC_UPPER_HZ, lower_frequency_limit=MFCC_LOWER_HZ,
                           filterbank_channel_count=MFCC_CHANNELS, dct_coefficient_count=N_INPUT)
    return tf.reshape(mfcc, [-1, N_INPUT])


def _overlapping_windows(batch_x, geometry: MozillaGeometry):
    """train.py create_overlapping_windows: [B, T, 26] -> [B, T, 19, 26] by an identity conv1d, SAME."""
    import tensorflow as tf

    width = geometry.input_width
    eye = np.eye(width, dtype=np.float32).reshape(geometry.window, geometry.n_input, width)
    windows = tf.nn.conv1d(batch_x, filters=tf.constant(eye), stride=1, padding="SAME")
    return tf.reshape(windows, [tf.shape(batch_x)[0], -1, geometry.window, geometry.n_input])


def _dense(name: str, x, init: Mapping[str, np.ndarray], relu: bool = True):
    """train.py dense(): variables ``<name>/bias`` and ``<name>/weights``; clipped ReLU."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with v1.variable_scope(name):
        bias = v1.get_variable("bias", initializer=init[f"{name}/bias"])
        weights = v1.get_variable("weights", initializer=init[f"{name}/weights"])
    output = tf.nn.bias_add(tf.matmul(x, weights), bias)
    return tf.minimum(tf.nn.relu(output), RELU_CLIP) if relu else output


def _lstm(x, init: Mapping[str, np.ndarray], n: int):
    """rnn_impl_lstmblockfusedcell: BlockLSTM over time-major [T, B, n_in], zero initial state."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with v1.variable_scope(LSTM_SCOPE):
        kernel = v1.get_variable("kernel", initializer=init[LSTM_KERNEL])
        bias = v1.get_variable("bias", initializer=init[LSTM_BIAS])
    zeros = tf.zeros(tf.stack([tf.shape(x)[1], n]))
    no_peephole = tf.zeros([n])
    outputs = tf.raw_ops.BlockLSTM(seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x, cs_prev=zeros,
                                   h_prev=zeros, w=kernel, wci=no_peephole, wcf=no_peephole,
                                   wco=no_peephole, b=bias, forget_bias=0.0, cell_clip=-1.0,
                                   use_peephole=False)
    return outputs[-1]  # h [T, B, n]


def create_model(batch_x, init: Mapping[str, np.ndarray], geometry: MozillaGeometry):
    """train.py create_model (overlap on, dropout off): MFCC [B, T, 26] -> logits [T, B, C]."""
    import tensorflow as tf

    n, batch = geometry.n_hidden, tf.shape(batch_x)[0]
    x = tf.transpose(_overlapping_windows(batch_x, geometry), [1, 0, 2, 3])
    x = tf.reshape(x, [-1, geometry.input_width])
    for name in ("layer_1", "layer_2", "layer_3"):
        x = _dense(name, x, init)
    x = _lstm(tf.reshape(x, [-1, batch, n]), init, n)
    x = _dense("layer_5", tf.reshape(x, [-1, n]), init)
    x = _dense("layer_6", x, init, relu=False)
    return tf.reshape(x, [-1, batch, geometry.num_classes], name="raw_logits")


def _training_graph(geometry: MozillaGeometry, init, label_ids: Sequence[int]):
    """The graph that trains and saves: features, model, CTC loss, TF1 Adam, global step, Saver."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        samples = v1.placeholder(tf.float32, [None], name="samples")
        features = _audio_to_features(samples)
        logits = create_model(features[None], init, geometry)
        probs = tf.nn.softmax(logits)
        global_step = v1.train.get_or_create_global_step()
        learning_rate = v1.get_variable("learning_rate", initializer=np.float32(LEARNING_RATE),
                                        trainable=False)
        labels = v1.SparseTensor(indices=[[0, i] for i in range(len(label_ids))],
                                 values=np.asarray(label_ids, np.int32), dense_shape=[1, len(label_ids)])
        loss = tf.reduce_mean(v1.nn.ctc_loss(labels=labels, inputs=logits,
                                             sequence_length=tf.shape(logits)[:1]))
        optimizer = v1.train.AdamOptimizer(learning_rate, beta1=BETA1, beta2=BETA2, epsilon=EPSILON)
        train_op = optimizer.minimize(loss, global_step=global_step)
        step_value = v1.placeholder(tf.int64, [])
        ops = {"samples": samples, "features": features, "probs": probs, "train": train_op, "loss": loss,
               "init": v1.global_variables_initializer(), "set_step": global_step.assign(step_value),
               "step_value": step_value, "saver": v1.train.Saver(max_to_keep=1, save_relative_paths=True)}
    return graph, ops


# ---------------------------------------------------------------------------------------------- writers

def write_release_checkpoint(directory, n_hidden: int = 8, alphabet_labels: Sequence[str] = ENGLISH,
                             cudnn: bool = True, prefix: str = "best_dev", step: int = RELEASE_STEP,
                             with_alphabet_txt: bool = False, flags_txt: bool = True, seed: int = 0,
                             frames: int = 120) -> ReleaseFixture:
    """Train Mozilla's graph two Adam steps on ``toy_clip(frames, seed)`` and save it in ``directory`` as
    ``<prefix>-<step>`` with its state file (``best_dev_checkpoint`` for prefix best_dev, else
    ``checkpoint``), ``flags.txt`` and, if asked, ``alphabet.txt``. ``cudnn`` picks the release form
    (module docstring). Raises FixtureError when the result's names or shapes are not as specified."""
    import tensorflow as tf

    labels = tuple(alphabet_labels)
    if step < TRAIN_STEPS or n_hidden < 1 or len(labels) < 1:
        raise FixtureError(f"need step >= {TRAIN_STEPS}, n_hidden >= 1 and labels (got {step}, {n_hidden}, "
                           f"{len(labels)})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    geometry = MozillaGeometry(n_hidden=n_hidden, num_classes=len(labels) + 1)
    audio = toy_clip(frames, seed)
    label_ids = [labels.index(ch) if ch in labels else i % len(labels) for i, ch in enumerate(TOY_TRANSCRIPT)]
    graph, ops = _training_graph(geometry, initial_weights(geometry, seed), label_ids)
    state_name = "best_dev_checkpoint" if prefix == "best_dev" else "checkpoint"
    feed = {ops["samples"]: training_samples(audio)}
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(ops["init"])
        session.run(ops["set_step"], {ops["step_value"]: step - TRAIN_STEPS})
        for _ in range(TRAIN_STEPS):
            session.run(ops["train"], feed)
        features, probs = session.run([ops["features"], ops["probs"]], feed)
        checkpoint_path = ops["saver"].save(session, str(directory / prefix), global_step=step,
                                            latest_filename=state_name)
    if cudnn:  # re-saved by SaveV2, without the Saver's .meta (whose graph is the plain one)
        _convert_to_cudnn(checkpoint_path, geometry)
        os.remove(checkpoint_path + ".meta")
    _check_variables(checkpoint_path, geometry, cudnn)
    if flags_txt:
        write_flags_txt(directory / "flags.txt", n_hidden=n_hidden, cudnn=cudnn, checkpoint_dir=str(directory))
    if with_alphabet_txt:
        write_alphabet_txt(directory / "alphabet.txt", labels)
    reader = tf.train.load_checkpoint(checkpoint_path)
    return ReleaseFixture(directory=directory, checkpoint_path=checkpoint_path, state_file=directory / state_name,
                          weights={name: reader.get_tensor(name) for name in WEIGHT_NAMES}, geometry=geometry,
                          labels=labels, step=step, cudnn=cudnn, audio=audio, features=features,
                          probabilities=probs[:, 0])


def expected_variables(geometry: MozillaGeometry, cudnn: bool) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype name)} of a release checkpoint of ``geometry`` (cuDNN or plain form)."""
    model = {name: (shape, "float32") for name, shape in geometry.shapes().items()}
    result = dict(model)
    for name, (shape, dtype) in model.items():
        if not (cudnn and name in (LSTM_KERNEL, LSTM_BIAS)):
            result.update({f"{name}/{slot}": (shape, dtype) for slot in ADAM_SLOTS})
    if cudnn:
        result.update({name: ((opaque_size(geometry),), "float32") for name in OPAQUE_NAMES})
    result.update({"global_step": ((), "int64"), "learning_rate": ((), "float32"),
                   "beta1_power": ((), "float32"), "beta2_power": ((), "float32")})
    return result


def opaque_size(geometry: MozillaGeometry, n_in: int | None = None) -> int:
    """Elements of cuDNN's opaque LSTM buffer: 4 input matrices, 4 recurrent ones, 8 bias vectors."""
    n = geometry.n_hidden
    n_in = n if n_in is None else n_in
    return 4 * n_in * n + 4 * n * n + 8 * n


def cudnn_opaque_params(kernel: np.ndarray, bias_w: np.ndarray, bias_r: np.ndarray) -> np.ndarray:
    """Canonical LSTM tensors packed as cuDNN's opaque buffer (TF's CudnnLSTM canonical_to_params): the
    matrices W_i, W_f, W_c, W_o [n, n_in] then R_i, R_f, R_c, R_o [n, n], each row-major, then biases
    b_W (i, f, c, o) and b_R (i, f, c, o). ``kernel`` is [n_in + n, 4n] with column blocks i, c, f, o."""
    n = kernel.shape[1] // 4
    n_in = kernel.shape[0] - n
    blocks = dict(zip("icfo", range(4)))
    cols = [slice(blocks[g] * n, (blocks[g] + 1) * n) for g in "ifco"]
    mats = [kernel[:n_in, c].T for c in cols] + [kernel[n_in:, c].T for c in cols]
    biases = [bias_w[c] for c in cols] + [bias_r[c] for c in cols]
    return np.concatenate([m.reshape(-1) for m in mats + biases]).astype(np.float32)


def _convert_to_cudnn(checkpoint_path: str, geometry: MozillaGeometry) -> None:
    """Re-save a plain checkpoint in the --train_cudnn form: drop the LSTM's Adam slots, add the opaque
    kernel (the canonical LSTM, bias split half/half as TF restores it) and its slots (the LSTM's moments;
    both cuDNN biases get the gradient of their sum, so both get its moments)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_path)
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    half = tensors[LSTM_BIAS] / 2
    tensors[OPAQUE_PREFIX] = cudnn_opaque_params(tensors[LSTM_KERNEL], half, half)
    for slot in ADAM_SLOTS:
        bias_moment = tensors.pop(f"{LSTM_BIAS}/{slot}")
        kernel_moment = tensors.pop(f"{LSTM_KERNEL}/{slot}")
        tensors[f"{OPAQUE_PREFIX}/{slot}"] = cudnn_opaque_params(kernel_moment, bias_moment, bias_moment)
    write_bundle(checkpoint_path, tensors)


def write_bundle(checkpoint_path: str, tensors: Mapping[str, np.ndarray]) -> None:
    """Write ``tensors`` as a name-based V2 bundle at prefix ``checkpoint_path`` (replacing its files)."""
    import tensorflow as tf

    for suffix in (".index", ".data-00000-of-00001"):
        if os.path.exists(checkpoint_path + suffix):
            os.remove(checkpoint_path + suffix)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=tf.constant(checkpoint_path), tensor_names=tf.constant(names),
                      shape_and_slices=tf.constant([""] * len(names)),
                      tensors=[tf.constant(tensors[name]) for name in names])


def _check_variables(checkpoint_path: str, geometry: MozillaGeometry, cudnn: bool) -> None:
    import tensorflow as tf

    saved = {name: tuple(shape) for name, shape in tf.train.list_variables(checkpoint_path)}
    expected = {name: shape for name, (shape, _) in expected_variables(geometry, cudnn).items()}
    if saved != expected:
        diff = sorted(set(saved.items()) ^ set(expected.items()))
        raise FixtureError(f"{checkpoint_path}: variables differ from the release layout: {diff}")


def write_flags_txt(path, n_hidden: int, cudnn: bool, checkpoint_dir: str = "") -> None:
    """flags.txt as Mozilla's train.py writes it (``FLAGS.flags_into_string()``, absl flagfile syntax:
    ``--n_hidden=8``, booleans ``--train_cudnn`` / ``--noload_cudnn``), for a subset of Mozilla's flags."""
    from absl import flags

    values = flags.FlagValues()
    for define, name, default in (
            (flags.DEFINE_string, "alphabet_config_path", "data/alphabet.txt"),
            (flags.DEFINE_string, "checkpoint_dir", checkpoint_dir),
            (flags.DEFINE_integer, "n_hidden", n_hidden), (flags.DEFINE_boolean, "train_cudnn", cudnn),
            (flags.DEFINE_boolean, "load_cudnn", False), (flags.DEFINE_boolean, "layer_norm", False),
            (flags.DEFINE_boolean, "automatic_mixed_precision", False),
            (flags.DEFINE_float, "learning_rate", 0.0001), (flags.DEFINE_float, "dropout_rate", 0.4),
            (flags.DEFINE_float, "relu_clip", RELU_CLIP), (flags.DEFINE_float, "beta1", BETA1),
            (flags.DEFINE_float, "beta2", BETA2), (flags.DEFINE_float, "epsilon", EPSILON),
            (flags.DEFINE_integer, "feature_win_len", 32), (flags.DEFINE_integer, "feature_win_step", 20),
            (flags.DEFINE_integer, "audio_sample_rate", SAMPLE_RATE),
            (flags.DEFINE_integer, "train_batch_size", 128), (flags.DEFINE_integer, "epochs", 125)):
        define(name, default, f"Mozilla's --{name}", flag_values=values)
    values.mark_as_parsed()
    Path(path).write_text(values.flags_into_string(), encoding="utf-8")


def write_alphabet_txt(path, labels: Sequence[str]) -> None:
    """An alphabet file in Mozilla's format: one label per line, ``#`` comments, ``\\#`` for a # label."""
    lines = ["# Each line in this file represents the Unicode codepoint (UTF-8 encoded)",
             "# associated with a numeric label.",
             *("\\" + label if label.startswith("#") else label for label in labels),
             "# The last (non-comment) line needs to end with a newline."]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_broken_checkpoint(directory, kind: str = "misshaped", n_hidden: int = 8, tensor: str | None = None,
                            prefix: str = "best_dev", step: int = RELEASE_STEP, seed: int = 0) -> BrokenCheckpoint:
    """A release-like checkpoint (12 model tensors, global_step, state file, flags.txt) with ``tensor``
    (default: layer_5/weights for "misshaped", the LSTM bias for "missing") one column too wide or absent."""
    if kind not in ("misshaped", "missing"):
        raise FixtureError(f"kind must be 'misshaped' or 'missing', got {kind!r}")
    tensor = tensor or ("layer_5/weights" if kind == "misshaped" else LSTM_BIAS)
    if tensor not in WEIGHT_NAMES:
        raise FixtureError(f"{tensor} is not one of Mozilla's weight names")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    geometry = MozillaGeometry(n_hidden=n_hidden, num_classes=len(ENGLISH) + 1)
    tensors: dict[str, np.ndarray] = dict(initial_weights(geometry, seed))
    expected = geometry.shapes()[tensor]
    saved_shape = None
    if kind == "missing":
        del tensors[tensor]
    else:
        saved_shape = expected[:-1] + (expected[-1] + 1,)
        tensors[tensor] = np.resize(tensors[tensor], saved_shape).astype(np.float32)
    tensors["global_step"] = np.int64(step)
    checkpoint_path = str(directory / f"{prefix}-{step}")
    write_bundle(checkpoint_path, tensors)
    write_state_file(directory, f"{prefix}-{step}", "best_dev_checkpoint" if prefix == "best_dev" else "checkpoint")
    write_flags_txt(directory / "flags.txt", n_hidden=n_hidden, cudnn=True, checkpoint_dir=str(directory))
    return BrokenCheckpoint(directory, checkpoint_path, kind, tensor, expected, saved_shape)


def write_state_file(directory, checkpoint_name: str, state_name: str = "checkpoint") -> Path:
    """A CheckpointState text file naming ``checkpoint_name`` (relative to ``directory``)."""
    path = Path(directory) / state_name
    path.write_text(f'model_checkpoint_path: "{checkpoint_name}"\n'
                    f'all_model_checkpoint_paths: "{checkpoint_name}"\n', encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------------- reference

def reference_outputs(fixture: ReleaseFixture, audio_int16: np.ndarray) -> ReferenceOutputs:
    """Features, logits and probabilities of Mozilla's training graph (rebuilt in tf.compat.v1 with the
    code that wrote the fixture, its 12 weights restored by a Saver from the fixture's files) for one clip."""
    import tensorflow as tf

    v1 = tf.compat.v1
    geometry = fixture.geometry
    placeholder_init = {name: np.zeros(shape, np.float32) for name, shape in geometry.shapes().items()}
    graph = tf.Graph()
    with graph.as_default():
        samples = v1.placeholder(tf.float32, [None], name="samples")
        features = _audio_to_features(samples)
        logits = create_model(features[None], placeholder_init, geometry)
        probs = tf.nn.softmax(logits)
        saver = v1.train.Saver(var_list=v1.global_variables())
    with v1.Session(graph=graph) as session:
        saver.restore(session, fixture.checkpoint_path)
        result = session.run([features, logits, probs], {samples: training_samples(audio_int16)})
    features_value, logits_value, probs_value = result
    return ReferenceOutputs(features_value, logits_value[:, 0], probs_value[:, 0])


def reference_features(audio_int16: np.ndarray) -> np.ndarray:
    """MFCC [T, 26] of Mozilla's training features (the fixture graph's feature part) for one int16 clip."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        samples = v1.placeholder(tf.float32, [None], name="samples")
        features = _audio_to_features(samples)
    with v1.Session(graph=graph) as session:
        return session.run(features, {samples: training_samples(audio_int16)})


def reference_probabilities(fixture: ReleaseFixture, audio_int16: np.ndarray) -> np.ndarray:
    """Softmax [T, C] of the fixture's TF1 training graph for one int16 clip (batch 1, dropout off)."""
    return reference_outputs(fixture, audio_int16).probs


def numpy_forward(weights: Mapping[str, np.ndarray], mfcc: np.ndarray) -> np.ndarray:
    """Mozilla's acoustic model in plain numpy (float64), for one clip: MFCC [T, 26] -> softmax [T, C].

    Documents the math the checkpoint's layout implies: 19-frame windows zero-padded 9 frames each side
    and flattened offset-major; three clipped-ReLU layers; an LSTM whose kernel multiplies [x, h_prev]
    and whose column blocks are the gates i, c (candidate), f, o, forget bias 0; clipped-ReLU layer_5;
    linear layer_6; softmax over classes (blank last)."""
    w = {name: np.asarray(weights[name], np.float64) for name in WEIGHT_NAMES}
    geometry = geometry_from_shapes({name: value.shape for name, value in w.items()}, "numpy_forward")
    mfcc = np.asarray(mfcc, np.float64)
    steps, ctx, n = len(mfcc), geometry.n_context, geometry.n_hidden
    padded = np.concatenate([np.zeros((ctx, geometry.n_input)), mfcc, np.zeros((ctx, geometry.n_input))])
    x = np.stack([padded[t:t + geometry.window].reshape(-1) for t in range(steps)])

    def dense(name, value, relu=True):
        out = value @ w[f"{name}/weights"] + w[f"{name}/bias"]
        return np.minimum(np.maximum(out, 0.0), RELU_CLIP) if relu else out

    def sigmoid(value):
        return 1.0 / (1.0 + np.exp(-value))

    for name in ("layer_1", "layer_2", "layer_3"):
        x = dense(name, x)
    h, c, outputs = np.zeros(n), np.zeros(n), []
    for t in range(steps):
        gates = np.concatenate([x[t], h]) @ w[LSTM_KERNEL] + w[LSTM_BIAS]
        i, candidate, f, o = np.split(gates, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(candidate)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    logits = dense("layer_6", dense("layer_5", np.array(outputs).reshape(steps, n)), relu=False)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
