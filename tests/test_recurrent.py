"""The recurrent kernels (recurrent.py) against the reference formulation (RecurrentLayer._scan):
outputs, gradients and moving statistics, train and inference modes, with padding."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from deepspeech_training import recurrent
from deepspeech_training.checkpoint import CheckpointStore
from deepspeech_training.model import DeepSpeech2, RecurrentLayer

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
