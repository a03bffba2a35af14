"""The Mozilla 0.9.3 / Coqui 1.x release-checkpoint fixtures themselves (tests/mozilla_fixtures.py):
names, shapes, dtypes, files, and that the reference probabilities are what the TF1 graph computes."""
import numpy as np
import pytest
import tensorflow as tf
from deepspeech_training.mozilla import (
    LSTM_BIAS,
    LSTM_KERNEL,
    WEIGHT_NAMES,
    GeometryError,
    MozillaGeometry,
    geometry_from_shapes,
)
from ds_ctcdecoder.alphabet import Alphabet
from mozilla_fixtures import (
    ENGLISH,
    OPAQUE_NAMES,
    RELEASE_STEP,
    BrokenCheckpoint,
    cudnn_opaque_params,
    expected_variables,
    frame_count,
    numpy_forward,
    opaque_size,
    reference_features,
    reference_outputs,
    reference_probabilities,
    toy_clip,
    write_broken_checkpoint,
    write_release_checkpoint,
)

N = 8
LSTM_SLOTS = {f"{name}/{slot}" for name in (LSTM_KERNEL, LSTM_BIAS) for slot in ("Adam", "Adam_1")}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release_checkpoint(tmp_path_factory.mktemp("release"), n_hidden=N)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return write_release_checkpoint(tmp_path_factory.mktemp("plain"), n_hidden=N, cudnn=False, prefix="train",
                                    step=1234, with_alphabet_txt=True)


def saved_variables(path):
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    return {name: (tuple(shape), dtypes[name].name) for name, shape in tf.train.list_variables(path)}, reader


@pytest.mark.parametrize("form", ["release", "plain"])
def test_variables_are_the_release_table_scaled_to_n_hidden(form, request):
    fixture = request.getfixturevalue(form)
    saved, _ = saved_variables(fixture.checkpoint_path)
    assert saved == expected_variables(MozillaGeometry(n_hidden=N), cudnn=form == "release")
    shapes = MozillaGeometry(n_hidden=N).shapes()
    assert {name: saved[name][0] for name in WEIGHT_NAMES} == shapes
    assert shapes[LSTM_KERNEL] == (16, 32) and shapes["layer_1/weights"] == (494, 8)
    assert saved["global_step"] == ((), "int64") and saved["learning_rate"] == ((), "float32")
    assert geometry_from_shapes({name: shape for name, (shape, _) in saved.items()}) == fixture.geometry
    assert fixture.geometry.num_classes == len(ENGLISH) + 1 == 29


def test_cudnn_form_has_opaque_kernel_and_no_lstm_adam_slots(release, plain):
    saved, reader = saved_variables(release.checkpoint_path)
    assert not LSTM_SLOTS & set(saved)
    assert {saved[name] for name in OPAQUE_NAMES} == {((8 * N * N + 8 * N,), "float32")}
    assert opaque_size(release.geometry) == 4 * N * N + 4 * N * N + 8 * N == 576
    assert {name for name in saved if name.endswith("/Adam")} == \
        {f"{name}/Adam" for name in WEIGHT_NAMES if "lstm" not in name} | {OPAQUE_NAMES[0] + "/Adam"}
    plain_saved, _ = saved_variables(plain.checkpoint_path)
    assert LSTM_SLOTS <= set(plain_saved) and not set(OPAQUE_NAMES) & set(plain_saved)
    # the opaque buffer is the canonical LSTM in cuDNN's packing (bias split half/half)
    kernel, bias = reader.get_tensor(LSTM_KERNEL), reader.get_tensor(LSTM_BIAS)
    opaque = reader.get_tensor(OPAQUE_NAMES[0])
    np.testing.assert_array_equal(opaque, cudnn_opaque_params(kernel, bias / 2, bias / 2))
    w_f = opaque[N * N:2 * N * N].reshape(N, N)  # W_f: the forget gate's input matrix, kernel block 2 (i, c, f, o)
    np.testing.assert_array_equal(w_f, kernel[:N, 2 * N:3 * N].T)
    b = opaque[-8 * N:].reshape(8, N)  # b_W (i, f, c, o) then b_R (i, f, c, o): each pair sums to the bias
    np.testing.assert_allclose(b[0] + b[4], bias[:N], rtol=1e-6)
    np.testing.assert_allclose(b[1] + b[5], bias[2 * N:3 * N], rtol=1e-6)


def test_weights_and_training_state_are_as_saved(release, plain):
    for fixture in (release, plain):
        _, reader = saved_variables(fixture.checkpoint_path)
        for name in WEIGHT_NAMES:
            np.testing.assert_array_equal(fixture.weights[name], reader.get_tensor(name))
            assert fixture.weights[name].dtype == np.float32 and np.abs(fixture.weights[name]).max() > 0.01
        assert reader.get_tensor("global_step") == fixture.step
        # two Adam steps: the bias-correction powers started at beta and were multiplied twice
        np.testing.assert_allclose(reader.get_tensor("beta1_power"), 0.9 ** 3, rtol=1e-6)
        np.testing.assert_allclose(reader.get_tensor("beta2_power"), 0.999 ** 3, rtol=1e-6)
        np.testing.assert_allclose(reader.get_tensor("learning_rate"), 0.001)
        slots = [name for name in reader.get_variable_to_shape_map() if "/Adam" in name]
        assert all(np.abs(reader.get_tensor(name)).max() > 0 for name in slots)
    assert release.step == RELEASE_STEP and release.checkpoint_path.endswith("best_dev-1466475")


def test_state_files_flags_and_alphabet(release, plain):
    state = tf.train.get_checkpoint_state(str(release.directory), latest_filename="best_dev_checkpoint")
    assert state.model_checkpoint_path == release.checkpoint_path
    assert list(state.all_model_checkpoint_paths) == [release.checkpoint_path]
    assert 'model_checkpoint_path: "best_dev-1466475"' in release.state_file.read_text()
    assert tf.train.latest_checkpoint(str(release.directory)) is None  # no `checkpoint` file beside best_dev
    assert tf.train.latest_checkpoint(str(plain.directory)) == plain.checkpoint_path
    assert plain.state_file.name == "checkpoint" and plain.checkpoint_path.endswith("train-1234")
    assert sorted(p.name for p in release.directory.iterdir()) == [
        "best_dev-1466475.data-00000-of-00001", "best_dev-1466475.index", "best_dev_checkpoint", "flags.txt"]
    flags = release.directory.joinpath("flags.txt").read_text().splitlines()
    assert {"--n_hidden=8", "--train_cudnn", "--noload_cudnn", "--nolayer_norm"} <= set(flags)
    assert "--notrain_cudnn" in plain.directory.joinpath("flags.txt").read_text().splitlines()
    alphabet = Alphabet.from_file(str(plain.directory / "alphabet.txt"))
    assert len(alphabet) == 28 and alphabet.decode([0, 1, 27]) == " a'"


def test_reference_probabilities_are_what_the_graph_computes(release, plain):
    for fixture in (release, plain):
        # the graph rebuilt and restored from the files gives what the training session computed
        out = reference_outputs(fixture, fixture.audio)
        np.testing.assert_allclose(out.probs, fixture.probabilities, atol=1e-6)
        np.testing.assert_allclose(out.features, fixture.features, atol=1e-6)
        assert out.features.shape == (120, 26) and out.probs.shape == (120, 29)
        np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(numpy_forward(fixture.weights, out.features), out.probs, atol=1e-5)
        np.testing.assert_allclose(out.logits - out.logits.max(1, keepdims=True),
                                   np.log(out.probs) - np.log(out.probs).max(1, keepdims=True), atol=1e-4)
    other = toy_clip(frames=57, seed=5)
    probs = reference_probabilities(release, other)
    assert probs.shape == (57, 29)
    np.testing.assert_allclose(numpy_forward(release.weights, reference_features(other)), probs, atol=1e-5)


def test_reference_is_sensitive_to_the_lstm_layout(release):
    """The fixture can catch a wrong gate order or a wrong kernel row split: each changes the output."""
    out = reference_outputs(release, release.audio)
    n = N
    swapped = dict(release.weights)  # i, c, f, o -> i, f, c, o (Keras' order), kernel and bias
    order = np.r_[0:n, 2 * n:3 * n, n:2 * n, 3 * n:4 * n]
    swapped[LSTM_KERNEL], swapped[LSTM_BIAS] = swapped[LSTM_KERNEL][:, order], swapped[LSTM_BIAS][order]
    rows = dict(release.weights)  # h rows first instead of x rows first
    rows[LSTM_KERNEL] = np.concatenate([rows[LSTM_KERNEL][n:], rows[LSTM_KERNEL][:n]])
    bias_only = dict(release.weights)
    bias_only[LSTM_BIAS] = bias_only[LSTM_BIAS][order]
    for wrong in (swapped, rows, bias_only):
        assert np.abs(numpy_forward(wrong, out.features) - out.probs).max() > 1e-3


@pytest.mark.parametrize("samples", [512, 831, 832, 1151, 16000, 46797])
def test_feature_frames(samples):
    audio = (1000 * np.sin(np.arange(samples) * 0.05)).astype(np.int16)
    features = reference_features(audio)
    assert features.shape == (1 + (samples - 512) // 320, 26) == (frame_count(samples), 26)
    assert np.isfinite(features).all()


def test_fixture_is_deterministic_and_seeded(tmp_path, release):
    again = write_release_checkpoint(tmp_path / "a", n_hidden=N)
    other = write_release_checkpoint(tmp_path / "b", n_hidden=N, seed=1, alphabet_labels="abc")
    for name in WEIGHT_NAMES:
        np.testing.assert_array_equal(again.weights[name], release.weights[name])
    assert not np.array_equal(other.weights["layer_2/weights"], release.weights["layer_2/weights"])
    assert other.weights["layer_6/bias"].shape == (4,) and other.probabilities.shape[1] == 4


@pytest.mark.parametrize("kind", ["misshaped", "missing"])
def test_broken_checkpoint(tmp_path, kind):
    broken = write_broken_checkpoint(tmp_path, kind, n_hidden=N)
    assert isinstance(broken, BrokenCheckpoint) and broken.checkpoint_path.endswith("best_dev-1466475")
    saved, _ = saved_variables(broken.checkpoint_path)
    state = tf.train.get_checkpoint_state(str(tmp_path), latest_filename="best_dev_checkpoint")
    assert state.model_checkpoint_path == broken.checkpoint_path
    shapes = {name: shape for name, (shape, _) in saved.items()}
    if kind == "missing":
        assert broken.tensor == LSTM_BIAS and broken.tensor not in saved and broken.saved_shape is None
        with pytest.raises(GeometryError, match="missing tensor.*cudnn_compatible_lstm_cell/bias"):
            geometry_from_shapes(shapes)
    else:
        assert broken.tensor == "layer_5/weights" and saved[broken.tensor] == ((8, 9), "float32")
        assert broken.expected_shape == (8, 8) and broken.saved_shape == (8, 9)
        with pytest.raises(GeometryError, match=r"layer_5/weights has shape \[8, 9\], expected \[8, 8\]"):
            geometry_from_shapes(shapes)
    assert set(WEIGHT_NAMES) - set(saved) == ({broken.tensor} if kind == "missing" else set())
