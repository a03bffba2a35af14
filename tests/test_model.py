"""The Deep Speech 2 layers, each on its own, and the assembled model."""
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from deepspeech_training.model import (DeepSpeech2, Lookahead, MaskedBatchNorm, ModelConfig,
                                       RecurrentLayer, clipped_relu, output_lengths)


def test_clipped_relu_is_min_max_0_20():
    x = tf.constant([-5.0, 0.5, 19.0, 25.0])
    np.testing.assert_allclose(clipped_relu(x).numpy(), [0.0, 0.5, 19.0, 20.0])


def test_masked_batch_norm_ignores_padding():
    bn = MaskedBatchNorm()
    x = tf.random.normal([2, 5, 3], seed=1) * 3 + 1
    mask = tf.sequence_mask([5, 3], 5)
    padded = tf.where(mask[:, :, None], x, 1000.0)  # garbage in padding must not matter
    y = bn(padded, mask, training=True)
    valid = tf.boolean_mask(y, mask)
    np.testing.assert_allclose(tf.reduce_mean(valid, 0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(tf.math.reduce_std(valid, 0).numpy(), 1, atol=2e-3)
    # the first update takes 90% of the batch's moments (num_updates warm-up), over valid frames only
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * tf.reduce_mean(tf.boolean_mask(x, mask), 0),
                               rtol=1e-4)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_recurrent_layer_padding_does_not_change_outputs(rnn_type, bidirectional):
    layer = RecurrentLayer(8, rnn_type, bidirectional)
    x = tf.random.normal([1, 6, 4], seed=2)
    alone = layer(x, tf.constant([6]), training=False)
    padded_x = tf.concat([x, tf.random.normal([1, 3, 4])], axis=1)
    padded = layer(padded_x, tf.constant([6]), training=False)
    np.testing.assert_allclose(padded[:, :6].numpy(), alone.numpy(), atol=1e-5)
    assert np.all(padded[:, 6:].numpy() == 0)
    assert alone.shape[-1] == 8 * (2 if bidirectional else 1)


def test_unidirectional_layer_is_causal():
    layer = RecurrentLayer(8, "gru", bidirectional=False)
    x = tf.random.normal([1, 6, 4], seed=3)
    y1 = layer(x, tf.constant([6]))
    x2 = tf.concat([x[:, :4], tf.random.normal([1, 2, 4], seed=4)], axis=1)
    y2 = layer(x2, tf.constant([6]))
    np.testing.assert_allclose(y1[:, :4].numpy(), y2[:, :4].numpy(), atol=1e-6)
    assert not np.allclose(y1[:, 4:].numpy(), y2[:, 4:].numpy())


def test_lookahead_sees_exactly_tau_future_frames():
    tau = 2
    layer = Lookahead(tau)
    x = tf.random.normal([1, 8, 3], seed=5)
    y = layer(x)
    changed = x.numpy().copy()
    changed[0, 5] += 1.0  # frame 5 influences outputs 3, 4, 5 only
    diff = np.abs(layer(tf.constant(changed)).numpy() - y.numpy()).sum(-1)[0]
    assert list(np.nonzero(diff > 1e-6)[0]) == [5 - tau, 5 - tau + 1, 5]


def test_model_shapes_lengths_and_config_roundtrip():
    cfg = tiny_config(rnn_layers=2)
    model = DeepSpeech2(cfg).build_for()
    features = tf.random.normal([2, 50, cfg.n_features])
    logits, lengths = model((features, tf.constant([50, 31])), training=False)
    assert logits.shape == (2, 25, cfg.num_classes) and logits.dtype == tf.float32
    assert list(lengths.numpy()) == [25, 16] == list(output_lengths(np.array([50, 31]), cfg))
    again = DeepSpeech2.from_config(model.get_config())
    assert again.model_config == cfg
    assert ModelConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg


def test_paper_configurations_are_reachable():
    from deepspeech_training.model import ConvSpec
    two_d = (ConvSpec(32, (11, 41), (2, 2)), ConvSpec(32, (11, 21), (1, 2)))
    bidir = ModelConfig(161, 29, conv=two_d, conv_type="2d", rnn_layers=7, rnn_units=1760)
    bidir.validate()  # 2x 2D conv + 7 bidirectional GRU
    streaming = ModelConfig(161, 29, rnn_layers=3, bidirectional=False, lookahead=80,
                            conv=(ConvSpec(32, (11, 41), (2, 2)),) * 3)
    streaming.validate()
    with pytest.raises(ValueError, match="lookahead"):
        ModelConfig(161, 29, lookahead=80).validate()
    with pytest.raises(ValueError, match="1 to 3"):
        ModelConfig(161, 29, conv=()).validate()
