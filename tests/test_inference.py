"""Streaming inference: the exported step function, driven in pieces, equals the full model."""
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, tiny_config

from deepspeech_training.inference import StreamingGeometry, model_function
from deepspeech_training.model import ConvBlock, ConvSpec, DeepSpeech2

sys.path.insert(0, str(ROOT / "native_client" / "python"))
from deepspeech.streaming import StreamingDriver  # noqa: E402

STREAMING_CONFIGS = {
    "gru_two_convs_lookahead2": dict(
        conv=(ConvSpec(6, (5, 1), (2, 1)), ConvSpec(5, (3, 1), (3, 1))), conv_type="1d",
        rnn_type="gru", rnn_layers=2, lookahead=2, n_steps=4),
    "lstm_2d_lookahead3_one_step": dict(
        conv=(ConvSpec(4, (5, 9), (2, 2)),), conv_type="2d", rnn_type="lstm", lookahead=3, n_steps=1),
    "rnn_three_convs_no_lookahead": dict(  # kernel 1 < stride 2: no padding at all
        conv=(ConvSpec(4, (3, 1), (1, 1)), ConvSpec(4, (1, 1), (2, 1)), ConvSpec(5, (4, 1), (2, 1))),
        conv_type="1d", rnn_type="rnn", rnn_layers=2, lookahead=0, n_steps=3),
}
LENGTHS = (1, 2, 7, 12, 25, 38)


def _randomize_statistics(model, seed=0):
    """Nontrivial normalization and BatchNorm statistics, so that padding would show."""
    rng = np.random.default_rng(seed)
    for v in model.non_trainable_variables:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("mean", "moving_mean"):
            v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
        elif name in ("std", "moving_variance"):
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype(np.float32))


def _model(**overrides):
    model = DeepSpeech2(tiny_config(**overrides)).build_for()
    _randomize_statistics(model)
    return model


def _reference(model, features):
    logits, lengths = model((features[None], tf.constant([len(features)])), training=False)
    return tf.nn.softmax(logits[0]).numpy()[:int(lengths[0])]


def _numpy_step(function):
    def step(features, position, valid_frames, state):
        out = function(features=tf.constant(features), position=tf.constant(position),
                       valid_frames=tf.constant(valid_frames), state=tf.constant(state))
        return out["probs"].numpy(), out["new_state"].numpy()
    return step


@pytest.fixture(scope="module", params=sorted(STREAMING_CONFIGS))
def streaming_model(request):
    overrides = dict(STREAMING_CONFIGS[request.param])
    n_steps = overrides.pop("n_steps")
    model = _model(bidirectional=False, rnn_units=8, fc_units=8, n_features=13, num_classes=7,
                   **overrides)
    function = model_function(model, n_steps)
    assert function.name == "step"
    return model, function


def test_step_signature_and_metadata(streaming_model):
    model, function = streaming_model
    meta = function.streaming
    geometry = StreamingGeometry.for_config(model.model_config, meta["n_steps"])
    assert meta == geometry.metadata() and meta["time_stride"] == model.model_config.time_stride
    inputs = {spec.name: spec.shape.as_list() for spec in function.function.structured_input_signature[0]}
    assert inputs == {"features": [None, meta["window_frames"], 13], "position": [None],
                      "valid_frames": [None], "state": [None, meta["state_size"]]}
    assert meta["batch"] == "dynamic"
    outputs = function.function.structured_outputs
    assert outputs["probs"].shape.as_list() == [None, meta["n_steps"], 7]
    assert outputs["new_state"].shape.as_list() == [None, meta["state_size"]]
    ops = {op.type for op in function.function.graph.get_operations()}
    assert not ops & {"While", "StatelessWhile", "Scan"}  # unrolled: converts to TFLite builtins


def _step_calls(function, count=3, seed=7):
    """Batch-1 inputs of ``count`` streams at different positions (real states from earlier steps),
    some open (valid_frames unknown), some ending inside their window."""
    meta = function.streaming
    step = _numpy_step(function.function)
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(count):
        state = np.zeros([1, meta["state_size"]], np.float32)
        for k in range(i + 1):  # stream i has made i steps before the one compared
            features = rng.normal(0, 1, [1, meta["window_frames"], 13]).astype(np.float32)
            position = np.array([k * meta["n_steps"]], np.int32)
            valid = np.array([2 ** 30 if i != 1 else k * meta["n_steps"] * meta["time_stride"] + 2], np.int32)
            inputs = (features, position, valid, state)
            state = step(*inputs)[1]
        calls.append(inputs)
    return calls


def test_batched_step_equals_batch_one_steps(streaming_model):
    """Rows are independent streams: one call on 3 rows == 3 calls of one row."""
    _, function = streaming_model
    calls = _step_calls(function)
    step = _numpy_step(function.function)
    singles = [step(*inputs) for inputs in calls]
    probs, state = step(*(np.concatenate(parts) for parts in zip(*calls)))
    assert probs.shape[0] == state.shape[0] == 3
    for row, (p, s) in enumerate(singles):
        np.testing.assert_allclose(probs[row], p[0], atol=1e-5)
        np.testing.assert_allclose(state[row], s[0], atol=1e-5)
    assert not np.allclose(singles[0][0], singles[2][0])  # different streams, different outputs


@pytest.mark.parametrize("feeding", ["one_at_a_time", "random_chunks", "run"])
def test_stream_equals_full_model(streaming_model, feeding):
    model, function = streaming_model
    driver = StreamingDriver(_numpy_step(function.function), function.streaming)
    rng = np.random.default_rng(len(feeding))
    for length in LENGTHS:
        features = rng.normal(0, 1, [length, 13]).astype(np.float32)
        expected = _reference(model, features)
        if feeding == "run":
            got = driver.run(features)
        else:
            driver.reset()
            cuts = range(1, length) if feeding == "one_at_a_time" else rng.integers(1, length + 1, 3)
            pieces = np.split(features, sorted(set(cuts)))
            got = np.concatenate([driver.feed(piece) for piece in pieces] + [driver.finish()])
        assert got.shape == expected.shape == (-(-length // model.model_config.time_stride), 7)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"length {length}")
    assert np.std(expected, axis=0).max() > 1e-3  # frames differ: the comparison means something


def test_feed_returns_frames_as_soon_as_final(streaming_model):
    """Before the end, a step runs once its window has arrived; its outputs are final then."""
    model, function = streaming_model
    meta = function.streaming
    driver = StreamingDriver(_numpy_step(function.function), meta)
    features = np.random.default_rng(5).normal(0, 1, [60, 13]).astype(np.float32)
    early = driver.feed(features)
    advance = meta["n_steps"] * meta["time_stride"]  # feature frames between two steps' windows
    steps_run = (60 + meta["window_offset"] - meta["window_frames"]) // advance + 1
    assert len(early) == max(steps_run * meta["n_steps"] - meta["lookahead"], 0)
    rest = driver.finish()
    np.testing.assert_allclose(np.concatenate([early, rest]), _reference(model, features), atol=1e-5)
    with pytest.raises(RuntimeError, match="finished"):
        driver.feed(features)


def test_empty_stream_gives_no_frames(streaming_model):
    _, function = streaming_model
    driver = StreamingDriver(_numpy_step(function.function), function.streaming)
    assert driver.feed(np.zeros([0, 13], np.float32)).shape == (0, 7)
    assert driver.finish().shape == (0, 7)


def test_forward_function_equals_model_for_bidirectional():
    model = _model(rnn_type="lstm")
    function = model_function(model)
    assert function.name == "forward" and function.streaming is None
    features = np.random.default_rng(1).normal(0, 1, [37, 33]).astype(np.float32)
    probs = function.function(features=tf.constant(features[None]), lengths=tf.constant([37], tf.int32))
    assert set(probs) == {"probs"}
    np.testing.assert_allclose(probs["probs"].numpy()[0], _reference(model, features), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("conv_type", ["1d", "2d"])
def test_batch_padding_does_not_change_a_samples_outputs(bidirectional, conv_type):
    conv = (ConvSpec(4, (11, 5), (3, 2)), ConvSpec(4, (3, 3), (2, 1)))
    model = _model(conv=conv, conv_type=conv_type, bidirectional=bidirectional, rnn_layers=2,
                   lookahead=0 if bidirectional else 2)
    rng = np.random.default_rng(2)
    lengths = [41, 23, 8]
    batch = rng.normal(3, 2, [3, 41, 33]).astype(np.float32)  # garbage beyond each length
    logits, out_lengths = model((tf.constant(batch), tf.constant(lengths)), training=False)
    for i, length in enumerate(lengths):
        alone = _reference(model, batch[i, :length])
        assert len(alone) == int(out_lengths[i])
        np.testing.assert_allclose(tf.nn.softmax(logits[i]).numpy()[:len(alone)], alone, atol=1e-5)


@pytest.mark.parametrize("conv_type", ["1d", "2d"])
@pytest.mark.parametrize("kernel,stride", [(11, 3), (5, 2), (4, 2), (3, 1)])
def test_conv_padding_is_tf_same_when_length_is_a_multiple_of_the_stride(conv_type, kernel, stride):
    """So the weights of checkpoints trained with 'same' padding keep their alignment."""
    block = ConvBlock(3, (kernel, 5), (stride, 2), conv_type)
    x = tf.random.normal([1, 6 * stride, 9] + ([1] if conv_type == "2d" else []), seed=3)
    y, _ = block(x, tf.constant([6 * stride]))
    same = tf.nn.convolution(x, block.conv.kernel, strides=block.conv.strides, padding="SAME")
    expected = block.activate(same, tf.ones(same.shape[:2], tf.bool))
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
    assert [v.path for v in block.conv.weights] == [f"{block.name}/conv/kernel"]


def test_step_converts_to_tflite_with_the_same_probabilities():
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    model = _model(conv=(ConvSpec(6, (5, 1), (2, 1)), ConvSpec(5, (3, 1), (3, 1))), conv_type="1d",
                   rnn_type="gru", rnn_layers=2, lookahead=2, bidirectional=False)
    function = model_function(model, 4)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.function], function.module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    interpreter = litert.Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner()

    def tflite_step(features, position, valid_frames, state):
        out = runner(features=features, position=position, valid_frames=valid_frames, state=state)
        return out["probs"], out["new_state"]

    features = np.random.default_rng(4).normal(0, 1, [29, 33]).astype(np.float32)
    got = StreamingDriver(tflite_step, function.streaming).run(features)
    np.testing.assert_allclose(got, _reference(model, features), atol=1e-5)
