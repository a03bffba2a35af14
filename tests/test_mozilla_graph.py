"""Mozilla 0.9.3's export graph built from a weights dict (mozilla/graph.py, mozilla/tflite.py).

The frozen .pb and the .tflite must compute what a plain numpy forward of the weights computes, and
Mozilla's own runtimes (libdeepspeech.so 0.9.3 TF and TFLite builds, Coqui's libstt.so 1.4) must load
them and transcribe a clip exactly as Mozilla's streaming procedure (tests/mozilla_stream.py) run on
the same graph in TF 2.21 / LiteRT and decoded by our decoder.
"""
import os
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "util"))

from ds_ctcdecoder import Alphabet  # noqa: E402
from mozilla_stream import PbModel, TfliteModel, decode, stream_probs  # noqa: E402

from deepspeech_training.mozilla import (LSTM_BIAS, LSTM_KERNEL, WEIGHT_NAMES, GeometryError,  # noqa: E402
                                         MozillaGeometry)
from deepspeech_training.mozilla.graph import (MOZILLA_OPS, GraphExportError, inference_graph_def,  # noqa: E402
                                               write_pb)
from deepspeech_training.mozilla.tflite import MAX_VERSIONS, tflite_model  # noqa: E402

ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))
N_HIDDEN, BEAM = 16, 50


def library_missing(name):
    from mozilla_runtime import library_path
    return not library_path(name).is_file()


def needs_runtime(*names):
    missing = [name for name in names if library_missing(name)]
    return pytest.mark.skipif(bool(missing), reason=f"needs Mozilla's/Coqui's runtime {missing} in "
                                                    ".cache/reference (make install fetches it)")


def random_weights(seed=0, n=N_HIDDEN):
    """Random weights whose output is not all blank: letters favoured by layer_6's bias."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in MozillaGeometry(n_hidden=n).shapes().items():
        scale = 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1
        weights[name] = rng.normal(0, scale, shape).astype(np.float32)
    weights["layer_1/weights"] *= 0.2  # MFCCs are large
    weights["layer_6/weights"] *= 12  # peaked outputs: no near-ties for the beam search
    weights["layer_6/bias"][-1] -= 1.0
    return weights


# 2.78 s: the finishing window's padding (zeros, or 0.9.3 TFLite's stale samples) changes the text
CLIP_SAMPLES = 44431


def clip(samples=CLIP_SAMPLES, seed=1):
    """int16 audio: a gliding, pulsing tone in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    freq = 300 + 200 * np.sin(2 * np.pi * 0.7 * t)
    tone = 8000 * np.sin(2 * np.pi * np.cumsum(freq) / 16000) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t))
    return (tone + rng.normal(0, 500, len(t))).astype(np.int16)


# ------------------------------------------------------------------------------------ numpy reference

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_forward(w, input_node, length, c, h):
    """Mozilla's model in numpy: (probabilities [16, C], c and h after ``length`` steps)."""
    x = input_node[0].reshape(16, -1).astype(np.float64)  # index k*26 + c, k = 0 is t-9

    def dense(x, name, relu=True):
        y = x @ w[f"{name}/weights"] + w[f"{name}/bias"]
        return np.minimum(np.maximum(y, 0), 20.0) if relu else y

    for name in ("layer_1", "layer_2", "layer_3"):
        x = dense(x, name)
    n = c.shape[1]
    c, h, outputs = c.astype(np.float64), h.astype(np.float64), np.zeros((16, n))
    for t in range(length):
        gates = np.concatenate([x[t:t + 1], h], 1) @ w[LSTM_KERNEL] + w[LSTM_BIAS]
        i, j, f, o = np.split(gates, 4, axis=1)  # i, c, f, o; forget bias 0
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        outputs[t] = h[0]
    logits = dense(dense(outputs, "layer_5"), "layer_6", relu=False)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True), c, h


def random_inputs(seed=2, n=N_HIDDEN):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 10, (1, 16, 19, 26)).astype(np.float32), rng.normal(0, 0.5, (1, n)).astype(np.float32),
            rng.normal(0, 0.5, (1, n)).astype(np.float32))


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def weights():
    return random_weights()


@pytest.fixture(scope="module")
def graph_def(weights):
    return inference_graph_def(weights, ALPHABET.Serialize(), beam_width=BEAM)


@pytest.fixture(scope="module")
def pb_path(graph_def, tmp_path_factory):
    path = tmp_path_factory.mktemp("pb") / "output_graph.pb"
    write_pb(path, graph_def)
    return path


@pytest.fixture(scope="module")
def pb_model(graph_def):
    return PbModel(graph_def)


@pytest.fixture(scope="module")
def tflite_files(weights, tmp_path_factory):
    """{"float": path, "quantized": path}."""
    tmp = tmp_path_factory.mktemp("tflite")
    paths = {}
    for kind in ("float", "quantized"):
        paths[kind] = tmp / f"{kind}.tflite"
        paths[kind].write_bytes(tflite_model(weights, ALPHABET.Serialize(), beam_width=BEAM,
                                             quantize=kind == "quantized"))
    return paths


@pytest.fixture(scope="module")
def pb_transcripts(pb_model):
    """Our streaming reference on the .pb: {"zero": text, "stale": text with 0.9.3 TFLite's stale window}."""
    audio = clip()
    return {kind: decode(stream_probs(pb_model, audio, stale_window=kind == "stale"), ALPHABET, BEAM)
            for kind in ("zero", "stale")}


# ------------------------------------------------------------------------------------------------ .pb

@pytest.mark.parametrize("length", [16, 5, 0])
def test_pb_equals_the_numpy_forward(weights, pb_model, length):
    input_node, c0, h0 = random_inputs()
    probs, c, h = pb_model.run(["logits", "new_state_c", "new_state_h"],
                               {"input_node": input_node, "input_lengths": np.array([length], np.int32),
                                "previous_state_c": c0, "previous_state_h": h0})
    want_probs, want_c, want_h = numpy_forward(weights, input_node, length, c0, h0)
    assert probs.shape == (16, 1, 29) and c.shape == h.shape == (1, N_HIDDEN)
    np.testing.assert_allclose(probs[:, 0], want_probs, atol=1e-5)
    np.testing.assert_allclose(c, want_c, atol=1e-5)
    np.testing.assert_allclose(h, want_h, atol=1e-5)
    if length == 0:
        np.testing.assert_array_equal(c, c0)
    else:
        assert probs[:length, 0].argmax(1).tolist() != [28] * length  # not all blank


def test_pb_interface_names_shapes_and_metadata(weights, graph_def):
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    nodes = {node.name: node for node in graph_def.node}
    placeholders = {name: [d.size for d in node.attr["shape"].shape.dim] for name, node in nodes.items()
                    if node.op == "Placeholder"}
    assert placeholders == {"input_samples": [512], "input_node": [1, 16, 19, 26], "input_lengths": [1],
                            "previous_state_c": [1, N_HIDDEN], "previous_state_h": [1, N_HIDDEN]}
    assert nodes["logits"].op == "Softmax"
    assert nodes["new_state_c"].op == nodes["new_state_h"].op == nodes["mfccs"].op == "Identity"
    for name in WEIGHT_NAMES:  # the variables' names and values
        assert nodes[name].op == "Const"
        np.testing.assert_array_equal(tensor_util.MakeNdarray(nodes[name].attr["value"].tensor), weights[name])
    values = {name: tensor_util.MakeNdarray(node.attr["value"].tensor).tolist() for name, node in nodes.items()
              if name.startswith("metadata_")}
    assert values == {"metadata_version": [6], "metadata_sample_rate": [16000], "metadata_feature_win_len": [32],
                      "metadata_feature_win_step": [20], "metadata_beam_width": [BEAM],
                      "metadata_alphabet": [ALPHABET.Serialize()]}
    assert nodes["metadata_version"].attr["dtype"].type == tf.int32.as_datatype_enum
    lstm = [node for node in graph_def.node if node.op == "BlockLSTM"]
    assert len(lstm) == 1 and lstm[0].attr["forget_bias"].f == 0 and lstm[0].attr["cell_clip"].f == -1
    mfcc = next(node for node in graph_def.node if node.op == "Mfcc")
    assert mfcc.attr["upper_frequency_limit"].f == 8000 and mfcc.attr["dct_coefficient_count"].i == 26
    with_language = inference_graph_def(weights, ALPHABET.Serialize(), language="Fake English (fk-FK)")
    [language] = [n for n in with_language.node if n.name == "metadata_language"]
    assert tensor_util.MakeNdarray(language.attr["value"].tensor).tolist() == [b"Fake English (fk-FK)"]
    assert not [n for n in graph_def.node if n.name == "metadata_language"]


def test_pb_uses_only_mozillas_ops_and_no_default_attrs(graph_def):
    from tensorflow.python.framework import op_def_registry

    assert {node.op for node in graph_def.node} <= MOZILLA_OPS
    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        for attr in op_def.attr:
            if attr.name in node.attr and attr.HasField("default_value"):
                assert node.attr[attr.name] != attr.default_value, (node.name, attr.name)
        assert not node.device
    # attributes newer than TF 2.3 that a TF 2.21 graph would carry
    assert not any(name in node.attr for node in graph_def.node for name in ("bad_indices_policy", "grad_a",
                                                                             "grad_b", "Truncate"))


def test_pb_mfccs_are_tensorflows_audio_features(pb_model):
    import tensorflow as tf

    window = clip(512).astype(np.float32) / 32768
    spectrogram = tf.raw_ops.AudioSpectrogram(input=window[:, None], window_size=512, stride=320,
                                              magnitude_squared=True)
    want = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=16000, upper_frequency_limit=8000,
                           lower_frequency_limit=20, filterbank_channel_count=40, dct_coefficient_count=26)
    np.testing.assert_allclose(pb_model.mfcc(window), want.numpy().reshape(26), rtol=1e-6, atol=1e-6)


def test_write_pb_is_atomic(graph_def, tmp_path):
    path = tmp_path / "graph.pb"
    path.write_bytes(b"old")
    write_pb(path, graph_def)
    assert type(graph_def).FromString(path.read_bytes()) == graph_def  # (attr maps serialize in any order)
    assert os.listdir(tmp_path) == ["graph.pb"] and oct(path.stat().st_mode & 0o777) != oct(0o600)


def test_bad_weights_and_alphabet_are_one_line_errors(weights):
    bad = dict(weights, **{"layer_2/bias": np.zeros(3, np.float32)})
    with pytest.raises(GeometryError, match=r"the weights: layer_2/bias has shape \[3\], expected \[16\]"):
        inference_graph_def(bad, ALPHABET.Serialize())
    missing = {k: v for k, v in weights.items() if k != LSTM_KERNEL}
    with pytest.raises(GeometryError, match="missing tensor"):
        tflite_model(missing, ALPHABET.Serialize())
    with pytest.raises(GraphExportError, match="metadata_alphabet"):
        inference_graph_def(weights, "abc")


@needs_runtime("deepspeech")
def test_libdeepspeech_transcribes_the_pb_as_our_streaming_reference(pb_path, pb_transcripts):
    from mozilla_runtime import Runtime

    with Runtime("deepspeech").model(pb_path) as model:
        assert model.beam_width() == BEAM and model.sample_rate() == 16000
        text = model.stt(clip())
        with model.create_stream() as stream:
            audio = clip()
            for start in range(0, len(audio), 3001):
                stream.feed(audio[start:start + 3001])
            streamed = stream.finish()
    assert len(text.replace(" ", "")) > 10
    assert text == streamed == pb_transcripts["zero"]


# --------------------------------------------------------------------------------------------- .tflite

def test_tflite_interface(tflite_files):
    from deepspeech_training.mozilla.tflite import builtin_code, builtin_names
    from tensorflow.lite.tools import flatbuffer_utils

    names = builtin_names()
    for kind, path in tflite_files.items():
        model = TfliteModel(path.read_bytes())
        shapes = {name: d["shape"].tolist() for name, d in {**model.inputs, **model.outputs}.items()}
        assert list(model.inputs) == ["input_node", "previous_state_c", "previous_state_h", "input_samples"]
        assert shapes["input_node"] == [1, 16, 19, 26] and shapes["logits"] == [16, 29]
        assert shapes["new_state_c"] == shapes["previous_state_h"] == [1, N_HIDDEN] and shapes["mfccs"] == [1, 26]
        metadata = ["metadata_version", "metadata_sample_rate", "metadata_feature_win_len",
                    "metadata_feature_win_step", "metadata_beam_width"]
        assert list(model.outputs) == ["logits", "new_state_c", "new_state_h", "mfccs", *metadata,
                                       "metadata_alphabet"]
        values = model.run(metadata + ["metadata_alphabet"], {})
        assert [v.tolist() for v in values] == [[6], [16000], [32], [20], [BEAM], [ALPHABET.Serialize()]]
        fb = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
        graph = fb.subgraphs[0]
        produced = {i for op in graph.operators for i in op.outputs}
        assert set(graph.outputs) <= produced  # Mozilla's loader runs each output's producer
        codes = {(names.get(builtin_code(c)), c.customCode, c.version) for c in fb.operatorCodes}
        assert {(code, v) for name, code, v in codes if code} == {(b"AudioSpectrogram", 1), (b"Mfcc", 1)}
        assert all(v <= MAX_VERSIONS.get(name, 1) for name, code, v in codes if not code), codes
        assert ("FULLY_CONNECTED", None, 3) in codes if kind == "quantized" else True
        assert not fb.signatureDefs


def test_tflite_equals_the_numpy_forward(weights, tflite_files):
    input_node, c0, h0 = random_inputs()
    want_probs, want_c, want_h = numpy_forward(weights, input_node, 16, c0, h0)
    for kind, atol in (("float", 1e-5), ("quantized", 0.05)):
        model = TfliteModel(tflite_files[kind].read_bytes())
        probs, c, h = model.run(["logits", "new_state_c", "new_state_h"], {
            "input_node": input_node, "previous_state_c": c0, "previous_state_h": h0})
        np.testing.assert_allclose(probs, want_probs, atol=atol, err_msg=kind)
        np.testing.assert_allclose(c, want_c, atol=atol * 4, err_msg=kind)
        np.testing.assert_allclose(h, want_h, atol=atol, err_msg=kind)


def test_tflite_mfccs_equal_the_pb(tflite_files, pb_model):
    model = TfliteModel(tflite_files["float"].read_bytes())
    audio = clip(8000).astype(np.float32) / 32768
    for start in (0, 1600, 6400):
        window = audio[start:start + 512]
        np.testing.assert_allclose(model.mfcc(window), pb_model.mfcc(window), rtol=1e-4, atol=1e-4)


@needs_runtime("deepspeech-tflite", "stt")
def test_old_tflite_runtimes_transcribe_as_the_pb(tflite_files, pb_transcripts):
    """libstt 1.4 zero-pads the finishing audio window as the TF build does; deepspeech-tflite 0.9.3
    leaves the previous window's samples in it (stale), so its text is our reference with that window."""
    from mozilla_runtime import Runtime

    texts = {}
    for name in ("stt", "deepspeech-tflite"):
        with Runtime(name).model(tflite_files["float"]) as model:
            assert model.beam_width() == BEAM
            texts[name] = model.stt(clip())
    assert texts == {"stt": pb_transcripts["zero"], "deepspeech-tflite": pb_transcripts["stale"]}
    assert pb_transcripts["zero"] != pb_transcripts["stale"]  # the clip shows the quirk


@needs_runtime("deepspeech-tflite", "stt")
def test_old_tflite_runtimes_transcribe_the_quantized_file_as_litert(tflite_files):
    from mozilla_runtime import Runtime

    model = TfliteModel(tflite_files["quantized"].read_bytes())
    audio = clip()
    want = {kind: decode(stream_probs(model, audio, stale_window=kind == "stale"), ALPHABET, BEAM)
            for kind in ("zero", "stale")}
    texts = {}
    for name in ("stt", "deepspeech-tflite"):
        with Runtime(name).model(tflite_files["quantized"]) as loaded:
            texts[name] = loaded.stt(audio)
    assert len(texts["stt"].replace(" ", "")) > 10
    assert texts == {"stt": want["zero"], "deepspeech-tflite": want["stale"]}


def test_operator_versions_the_old_runtimes_lack_are_refused(tflite_files):
    from deepspeech_training.mozilla.tflite import TFLiteExportError, builtin_code, builtin_names, check_operators
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_files["quantized"].read_bytes()))
    check_operators(model)
    [fc] = [c for c in model.operatorCodes if builtin_names()[builtin_code(c)] == "FULLY_CONNECTED" and c.version == 3]
    fc.version = 12  # what TF 2.21 writes for per-channel int8 weights
    with pytest.raises(TFLiteExportError, match="FULLY_CONNECTED version 12, which TF 2.3's and TF 2.9's TFLite"):
        check_operators(model)


@needs_runtime("deepspeech-tflite", "stt")
def test_quantized_file_with_zero_biases_loads_in_the_old_runtimes(tmp_path):
    """Mozilla initializes biases to zero; the converter then leaves them out of FULLY_CONNECTED."""
    from mozilla_runtime import Runtime

    weights = random_weights(seed=3)
    for name in weights:
        if name.endswith("/bias") and name != "layer_6/bias":
            weights[name][:] = 0.0
    path = tmp_path / "zero_bias.tflite"
    path.write_bytes(tflite_model(weights, ALPHABET.Serialize(), beam_width=BEAM, quantize=True))
    model = TfliteModel(path.read_bytes())
    audio = clip()
    want = decode(stream_probs(model, audio), ALPHABET, BEAM)
    with Runtime("stt").model(path) as loaded:
        assert loaded.stt(audio) == want and len(want.replace(" ", "")) > 10
    with Runtime("deepspeech-tflite").model(path) as loaded:
        assert loaded.stt(audio) == decode(stream_probs(model, audio, stale_window=True), ALPHABET, BEAM)
