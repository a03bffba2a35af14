"""The recurrent kernels (recurrent.py) against the reference formulation (RecurrentLayer._scan):
outputs, gradients and moving statistics, train and inference modes, with padding; Mozilla's LSTM
(mozilla/model.py) packed for cuDNN against its generic loop."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from deepspeech_training import devices, recurrent
from deepspeech_training.checkpoint import CheckpointStore
from deepspeech_training.model import DeepSpeech2, RecurrentLayer
from deepspeech_training.mozilla.model import MozillaConfig, MozillaLSTM, MozillaModel, cudnn_params

LENGTHS = [7, 4, 2]


def _layer(rnn_type, bidirectional, seed=0):
    keras.utils.set_random_seed(seed)
    layer = RecurrentLayer(8, rnn_type, bidirectional)
    x = tf.random.normal([3, 7, 5], seed=1) * 2 + 0.5
    x = tf.where(tf.sequence_mask(LENGTHS, 7)[:, :, None], x, 1000.0)  # garbage in the padding
    layer(x, tf.constant(LENGTHS))
    layer.bn.moving_mean.assign(tf.random.normal(layer.bn.moving_mean.shape, seed=3))
    layer.bn.moving_variance.assign(tf.random.uniform(layer.bn.moving_variance.shape, 0.5, 2, seed=4))
    return layer, x


def _run(layer, kernel, x, training):
    """Outputs, gradients (input and every weight) and the statistics after the call; restores them."""
    saved = [v.numpy() for v in layer.non_trainable_variables]
    layer.kernel = kernel
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, tf.constant(LENGTHS), training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(y.shape, [1, 2]))
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    stats = [v.numpy() for v in layer.non_trainable_variables]
    for v, s in zip(layer.non_trainable_variables, saved):
        v.assign(s)
    return tf.cast(y, tf.float32).numpy(), [tf.cast(g, tf.float32).numpy() for g in grads], stats


def _max_errors(got, want):
    return (np.abs(got[0] - want[0]).max(), max(np.abs(a - b).max() for a, b in zip(got[1], want[1])),
            max(np.abs(a - b).max() for a, b in zip(got[2], want[2])))


@pytest.mark.parametrize("training", [True, False], ids=["train", "inference"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("kernel,rnn_type", [("generic", "gru"), ("generic", "lstm"), ("generic", "rnn"),
                                             ("fused", "gru"), ("fused", "lstm")])
def test_kernel_equals_reference(kernel, rnn_type, bidirectional, training):
    layer, x = _layer(rnn_type, bidirectional)
    want = _run(layer, "scan", x, training)
    got = _run(layer, kernel, x, training)
    out, grad, stats = _max_errors(got, want)
    assert out < 1e-5 and grad < 1e-5 and stats < 1e-5, (out, grad, stats)
    assert np.all(got[0][1, 4:] == 0) and np.all(got[1][0][1, 4:] == 0)  # padding: no output, no gradient
    if training:  # the moving statistics did move, the same way
        assert np.abs(want[2][0] - layer.bn.moving_mean.numpy()).max() > 1e-3


@pytest.mark.parametrize("policy,tolerance", [("mixed_bfloat16", 0.1), ("mixed_float16", 0.01)])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_fused_kernel_under_mixed_precision(rnn_type, policy, tolerance):
    """Under mixed precision the kernels round differently (the fused one folds BatchNorm into the
    weights before the low-precision product): equal to ``tolerance`` relative to the outputs' scale."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer, x = _layer(rnn_type, True)
        want = _run(layer, "scan", x, True)
        for kernel in ("generic", "fused"):
            got = _run(layer, kernel, x, True)
            assert np.abs(got[0] - want[0]).max() < tolerance
            for a, b in zip(got[1], want[1]):
                assert np.abs(a - b).max() < tolerance * max(1.0, np.abs(b).max())
            assert max(np.abs(a - b).max() for a, b in zip(got[2], want[2])) < tolerance
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "inference"])
def test_cudnn_parameter_packing(rnn_type, training):
    """cuDNN's own equations, run from the packed parameter vector CudnnRNNV3 would get, equal the layer
    (the gate reordering, the transposes and the two biases are where a packing goes wrong)."""
    layer, x = _layer(rnn_type, True)
    lengths = tf.constant(LENGTHS)
    mask = tf.sequence_mask(lengths, 7)
    kernel, bias = recurrent.folded_input(layer, x, mask, training)
    kernels, biases = tf.split(kernel, 2, axis=1), tf.split(bias, 2)
    inputs = [x, tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)]
    outs = [recurrent.cudnn_reference(layer, inputs[d], lengths, kernels[d], biases[d], d) for d in (0, 1)]
    got = recurrent.merge_directions(outs, lengths, mask).numpy()
    layer.kernel = "scan"
    want = layer(x, lengths, training=training).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("first,second", [("fused", "generic"), ("generic", "fused")])
def test_checkpoint_trained_with_one_kernel_loads_into_the_other(tmp_path, first, second):
    cfg = tiny_config(rnn_layers=2)
    features = tf.random.normal([2, 30, cfg.n_features], seed=5)
    lengths = tf.constant([30, 21])
    trained = DeepSpeech2(cfg).build_for()
    for layer in trained.rnns:
        layer.kernel = first
    opt = keras.optimizers.SGD(0.01)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(trained((features, lengths), training=True)[0]))
        opt.apply_gradients(zip(tape.gradient(loss, trained.trainable_variables), trained.trainable_variables))
    CheckpointStore(trained, None, {}, "", str(tmp_path)).save("last", 2)
    loaded = DeepSpeech2(cfg).build_for()
    assert CheckpointStore(loaded, None, {}, str(tmp_path), "").restore("last", with_optimizer=False)
    for layer in loaded.rnns:
        layer.kernel = second
    assert [v.name for v in loaded.weights] == [v.name for v in trained.weights]
    assert trained.rnns[0].bn.updates.numpy() == 2  # the fused kernel moved the statistics too
    for training in (False, True):
        np.testing.assert_allclose(loaded((features, lengths), training=training)[0].numpy(),
                                   trained((features, lengths), training=training)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_fused_kernel_runs_on_a_fresh_layer():
    """A layer whose first call is fused (the kernel measurement's copy) builds its BatchNorm too."""
    layer = RecurrentLayer(8, "lstm", True)
    layer.kernel = "fused"
    y = layer(tf.ones([2, 5, 3]), tf.constant([5, 3]), training=False)
    assert y.shape == (2, 5, 16) and np.all(y.numpy()[1, 3:] == 0)
    assert [v.path.split("/", 1)[1] for v in layer.weights][-1] == "bn/updates"


# ------------------------------------------------------------------------------ Mozilla 0.9's LSTM

MOZILLA_LENGTHS = [7, 4, 1]


def _mozilla_layer(seed=0):
    """A MozillaLSTM (6 units, 5 inputs) with random weights, a random (not zero) bias, and inputs with
    garbage in the padding."""
    keras.utils.set_random_seed(seed)
    layer = MozillaLSTM(6)
    x = tf.random.normal([3, 7, 5], seed=1)
    mask = tf.sequence_mask(MOZILLA_LENGTHS, 7)
    x = tf.where(mask[:, :, None], x, 1000.0)
    layer(x, mask)
    layer.bias.assign(tf.random.normal(layer.bias.shape, seed=2))
    return layer, x, mask


@pytest.fixture
def cudnn_on_cpu(monkeypatch):
    """The fused path as on a GPU, with cuDNN's op replaced by its documented equations evaluated from
    the same packed vector (recurrent.cudnn_equations): everything but the op itself runs."""
    monkeypatch.setattr(recurrent, "gpu_visible", lambda: True)
    monkeypatch.setattr(recurrent, "cudnn_sequence", recurrent.cudnn_equations)


def _mozilla_run(layer, kernel, x, mask):
    layer.kernel = kernel
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask)
        loss = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, [3, 4]))
    grads = tape.gradient(loss, [x, layer.gate_kernel, layer.bias])
    return y.numpy(), [g.numpy() for g in grads]


def test_mozilla_lstm_cudnn_packing_equals_the_generic_loop(cudnn_on_cpu):
    """Mozilla's kernel [x, h] x (i, c, f, o) packed for cuDNN (gates i, f, g, o, matrices transposed, the
    bias as input bias): cuDNN's equations from that vector give the generic loop's outputs and gradients
    (inputs, kernel, bias), with per-sample lengths."""
    layer, x, mask = _mozilla_layer()
    units, inputs = 6, 5
    params = cudnn_params(layer.gate_kernel, layer.bias, inputs, tf.float32)
    assert params.shape == (4 * (units * inputs + units * units + 2 * units),)  # cuDNN's canonical size
    np.testing.assert_array_equal(params.numpy()[-4 * units:], 0.0)  # recurrent biases
    want = _mozilla_run(layer, "generic", x, mask)
    got = _mozilla_run(layer, "fused", x, mask)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    assert np.abs(want[0]).max() > 0.1 and np.all(got[0][1, 4:] == 0) and np.all(got[0][2, 1:] == 0)
    for g, w, name in zip(got[1], want[1], ("inputs", "kernel", "bias")):
        assert np.abs(w).max() > 1e-2, name
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)
    assert np.all(got[1][0][1, 4:] == 0)  # padding: no gradient


def test_mozilla_lstm_fused_without_gpu_runs_the_generic_loop(monkeypatch):
    layer, x, mask = _mozilla_layer()
    monkeypatch.setattr(recurrent, "cudnn_sequence", None)  # would fail if called
    assert not recurrent.gpu_visible()
    np.testing.assert_array_equal(_mozilla_run(layer, "fused", x, mask)[0],
                                  _mozilla_run(layer, "generic", x, mask)[0])


def test_mozilla_kernel_choice_log_lines():
    model = MozillaModel(MozillaConfig(n_hidden=8, dropout=(0.0,) * 4)).build_for()
    layout = "Recurrent layers lstm (unidirectional LSTM, 8 units, 8 inputs, Mozilla's layout (gates i, c, f, o, " \
             "no BatchNorm)): "
    cpu = devices.choose_recurrent_kernels(model, "auto")
    assert cpu == [layout + "generic kernel (x W + b in one product, one TensorFlow while loop): Mozilla's LSTM "
                   "runs fused only in cuDNN, which needs a GPU; with no BatchNorm to fold, Keras' loop would only "
                   "move x W into each step, so the generic loop runs"]
    assert model.lstm.kernel == "generic"
    forced = devices.choose_recurrent_kernels(model, "fused")[0]
    assert forced.endswith("so the generic loop runs (--rnn_kernel fused ignored)") and model.lstm.kernel == "generic"
    gpu = devices.choose_recurrent_kernels(model, "auto", on_gpu=True)
    assert gpu == [layout + "fused kernel (cuDNN CudnnRNNV3, the weights packed in cuDNN's gate order i, f, g, o): "
                   "cuDNN runs the whole sequence in one kernel"]
    assert model.lstm.kernel == "fused"
    for kwargs, why in ((dict(xla=True), "cannot be compiled with XLA"),
                        (dict(precision="mixed_bfloat16"), "not bfloat16"),
                        (dict(requested="generic"), "forced by --rnn_kernel generic")):
        line = devices.choose_recurrent_kernels(model, **{"requested": "auto", "on_gpu": True, **kwargs})[0]
        assert "generic kernel (x W + b" in line and why in line and model.lstm.kernel == "generic"


@pytest.mark.parametrize("first,second", [("fused", "generic"), ("generic", "fused")])
def test_mozilla_checkpoint_trained_with_one_kernel_loads_into_the_other(tmp_path, cudnn_on_cpu, first, second):
    cfg = MozillaConfig(n_hidden=8, dropout=(0.0,) * 4)
    features = tf.random.normal([2, 12, cfg.n_features], seed=5)
    lengths = tf.constant([12, 7])
    trained = MozillaModel(cfg, name="mozilla").build_for()
    trained.lstm.kernel = first
    opt = keras.optimizers.SGD(0.1)
    before = trained.lstm.gate_kernel.numpy()
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(trained((features, lengths), training=True)[0]))
        opt.apply_gradients(zip(tape.gradient(loss, trained.trainable_variables), trained.trainable_variables))
    assert np.abs(trained.lstm.gate_kernel.numpy() - before).max() > 1e-4  # it did train
    CheckpointStore(trained, None, {}, "", str(tmp_path)).save("last", 2)
    loaded = MozillaModel(cfg, name="mozilla").build_for()
    assert CheckpointStore(loaded, None, {}, str(tmp_path), "").restore("last", with_optimizer=False)
    loaded.lstm.kernel = second
    assert [v.path for v in loaded.weights] == [v.path for v in trained.weights]
    assert "mozilla/lstm/kernel" in [v.path for v in loaded.weights]
    for name, value in trained.tf1_weights().items():
        np.testing.assert_array_equal(loaded.tf1_weights()[name], value)
    np.testing.assert_allclose(loaded((features, lengths))[0].numpy(), trained((features, lengths))[0].numpy(),
                               rtol=1e-5, atol=1e-5)
