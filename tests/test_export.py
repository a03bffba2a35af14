"""Export (.pb, .pbmm, .tflite, SavedModel, model card, zip) and loading it back with load_runtime."""
import json
import os
import re
import subprocess
import sys
import zipfile

from ai_edge_litert.interpreter import Interpreter

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import ROOT, TINY_FLAGS, run_trainer, tiny_config

from deepspeech_training.checkpoint import CheckpointStore
from deepspeech_training.export import ExportConfig, ExportError, ModelCard, export_model
from deepspeech_training.features import FeatureConfig, spectrogram
from deepspeech_training.model import DeepSpeech2

sys.path.insert(0, str(ROOT / "native_client" / "python"))
from deepspeech.runtime import ModelLoadError, load_runtime  # noqa: E402
from deepspeech.streaming import StreamingDriver  # noqa: E402
from ds_ctcdecoder.alphabet import Alphabet  # noqa: E402

LABELS = list(" abcdefghijklmnopqrstuvwxyz'")
FEATURES = FeatureConfig()
FILES = ("output_graph.pb", "output_graph.pbmm", "output_graph.tflite", "saved_model")
VERSION = (ROOT / "training" / "deepspeech_training" / "VERSION").read_text().strip()


# ----------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def audio_csv(tmp_path_factory):
    """Six short clips (tones in noise) and their CSV: calibration and test features."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    rows = ["wav_filename,wav_filesize,transcript"]
    for i in range(6):
        t = np.arange(4000 + 2000 * i) / FEATURES.sample_rate
        clip = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t * (1 + t)) + 0.03 * rng.normal(size=t.size)
        soundfile.write(folder / f"{i}.wav", clip.astype(np.float32), FEATURES.sample_rate, subtype="PCM_16")
        rows.append(f"{i}.wav,{(folder / f'{i}.wav').stat().st_size},tone")
    (folder / "audio.csv").write_text("\n".join(rows) + "\n")
    return folder / "audio.csv"


def clip_features(csv_path):
    folder = csv_path.parent
    clips = [soundfile.read(folder / f"{i}.wav", dtype="float32")[0] for i in range(6)]
    return [spectrogram(tf.constant(c), FEATURES).numpy() for c in clips]


def make_model(bidirectional, features, seed=0, **overrides):
    """A tiny model with realistic normalization and peaked (decisive) outputs."""
    keras.utils.set_random_seed(seed)
    config = tiny_config(n_features=FEATURES.n_features, bidirectional=bidirectional, **overrides)
    model = DeepSpeech2(config).build_for()
    stacked = np.concatenate(features)
    model.normalization.set_statistics(stacked.mean(axis=0), stacked.std(axis=0))
    model.logits.kernel.assign(model.logits.kernel * 8.0)
    return model


def keras_probs(model, features):
    logits, lengths = model((features[None], tf.constant([len(features)])), training=False)
    return tf.nn.softmax(logits[0]).numpy()[:int(lengths[0])]


def runtime_probs(runtime, features):
    if runtime.function_name == "forward":
        return runtime.forward(features[None], [len(features)])[0]
    return StreamingDriver(runtime.step, runtime.metadata["streaming"]).run(features)


def export(model, directory, **options):
    config = ExportConfig(export_dir=str(directory), **options)
    return config, export_model(model, FEATURES, LABELS, config)


@pytest.fixture(scope="module")
def clips(audio_csv):
    return clip_features(audio_csv)


@pytest.fixture(scope="module")
def streaming(clips, tmp_path_factory):
    model = make_model(False, clips, rnn_type="lstm", lookahead=2)
    directory = tmp_path_factory.mktemp("uni") / "export"
    export(model, directory, tflite=True, pbmm=True, savedmodel=True, quantize="none")
    return model, directory


@pytest.fixture(scope="module")
def bidirectional(clips, tmp_path_factory):
    model = make_model(True, clips, seed=1)
    directory = tmp_path_factory.mktemp("bidi") / "export"
    export(model, directory, pbmm=True, savedmodel=True)
    return model, directory


# ------------------------------------------------------------------------------------ float formats

@pytest.mark.parametrize("name", FILES)
def test_streaming_export_equals_the_keras_model(streaming, clips, name):
    model, directory = streaming
    runtime = load_runtime(directory / name)
    assert runtime.function_name == "step"
    assert runtime.format == {"output_graph.pb": "pb", "output_graph.pbmm": "pbmm",
                              "output_graph.tflite": "tflite", "saved_model": "savedmodel"}[name]
    for features in clips[:3]:
        expected = keras_probs(model, features)
        got = runtime_probs(runtime, features)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.std(expected, axis=0).max() > 0.01  # the frames differ: the comparison means something


@pytest.mark.parametrize("name", ["output_graph.pb", "output_graph.pbmm", "saved_model"])
def test_bidirectional_export_equals_the_keras_model(bidirectional, clips, name):
    model, directory = bidirectional
    runtime = load_runtime(directory / name)
    assert runtime.function_name == "forward"
    for features in clips[:3]:
        expected = keras_probs(model, features)
        got = runtime.forward(features[None], [len(features)])[0]
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_bidirectional_tflite_equals_the_keras_model(clips, tmp_path):
    model = make_model(True, clips, seed=1)
    export(model, tmp_path / "export", tflite=True, quantize="none")
    runtime = load_runtime(tmp_path / "export" / "output_graph.tflite")
    for features in clips[:2]:
        np.testing.assert_allclose(runtime_probs(runtime, features), keras_probs(model, features), atol=1e-4)


# ------------------------------------------------------------------------------------------ metadata

def test_metadata_round_trips_in_every_format(streaming):
    model, directory = streaming
    loaded = {name: load_runtime(directory / name).metadata for name in FILES}
    assert loaded["output_graph.tflite"].pop("quantize") == "none"
    reference = loaded["output_graph.pb"]
    assert all(meta == reference for meta in loaded.values())
    assert reference["format"] == "deepspeech2-export" and reference["format_version"] == 1
    assert reference["version"] == VERSION and reference["function"] == "step"
    assert reference["alphabet"] == LABELS and reference["utf8"] is False
    assert reference["features"] == FEATURES.to_dict() and reference["sample_rate"] == 16000
    assert reference["model"] == json.loads(model.model_config.to_json())
    assert reference["streaming"]["n_steps"] == 16 and reference["beam_width"] == 500
    assert reference["author_id"] == "author" and reference["model_version"] == "0.0.1"
    saved = json.loads((directory / "saved_model" / "assets" / "metadata.json").read_text())
    assert saved == reference


def test_frozen_graph_has_mozillas_metadata_nodes(bidirectional):
    _, directory = bidirectional
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString((directory / "output_graph.pb").read_bytes())
    nodes = {node.name: node for node in graph.node}
    value = lambda name: tf.make_ndarray(nodes[name].attr["value"].tensor).tolist()  # noqa: E731
    assert value("metadata_sample_rate") == [16000] and value("metadata_beam_width") == [500]
    assert value("metadata_feature_win_len") == [20] and value("metadata_feature_win_step") == [10]
    assert value("metadata_version") == [1]
    assert Alphabet.Deserialize(value("metadata_alphabet")[0]).labels == LABELS  # Mozilla's binary encoding
    assert json.loads(value("metadata")) == load_runtime(directory / "output_graph.pb").metadata
    assert nodes["features"].op == "Placeholder" and nodes["lengths"].op == "Placeholder"
    assert nodes["probs"].op == "Identity"
    assert not any(node.op in ("VarHandleOp", "ReadVariableOp") for node in graph.node)


# --------------------------------------------------------------------------------------- quantization

def _agreement(a, b):
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


@pytest.mark.parametrize("quantize", ["fp16", "dynamic", "int8"])
def test_quantized_tflite(clips, audio_csv, tmp_path, quantize):
    model = make_model(False, clips)
    _, written = export(model, tmp_path / "q", tflite=True, quantize=quantize,
                        calibration_files=(str(audio_csv),), calibration_samples=4)
    path = tmp_path / "q" / "output_graph.tflite"
    runtime = load_runtime(path)
    assert runtime.metadata["quantize"] == quantize
    got = np.concatenate([runtime_probs(runtime, f) for f in clips])
    expected = np.concatenate([keras_probs(model, f) for f in clips])
    error = np.abs(got - expected).max()
    if quantize == "fp16":
        assert error < 1e-2, error
    else:
        assert _agreement(got, expected) > 0.85, (quantize, error)
    types = {d["dtype"] for d in Interpreter(model_path=str(path)).get_tensor_details()}
    assert (np.int8 in types) == (quantize in ("dynamic", "int8"))
    float_size = (tmp_path / "q" / "output_graph.pb").stat().st_size
    assert path.stat().st_size < float_size


def test_int8_needs_calibration_files(tmp_path):
    config = ExportConfig(export_dir=str(tmp_path), tflite=True, quantize="int8")
    with pytest.raises(ExportError, match="calibration"):
        config.validate()


# -------------------------------------------------------------------------------- model card and zip

def test_model_card_and_zip(clips, tmp_path):
    model = make_model(False, clips)
    scorer = tmp_path / "kenlm.scorer"
    scorer.write_bytes(b"not checked by the export")
    card = ModelCard(author_id="me", model_name="tones", model_version="1.2.3", license="MPL-2.0",
                     language="en-Latn-US", description="A model of tones.")
    _, written = export(model, tmp_path / "out", zip=True, quantize="none", scorer_path=str(scorer),
                        card=card)
    text = (tmp_path / "out" / "me_tones_1.2.3.md").read_text()
    front, body = text.split("---\n")[1:3]
    fields = dict(line.split(": ", 1) for line in front.strip().splitlines())
    assert fields["author"] == '"me"' and fields["model_version"] == '"1.2.3"'
    assert fields["runtime"] == '"tflite"' and fields["license"] == '"MPL-2.0"'
    assert {"acoustic_model_url", "scorer_url", "min_ds_version", "max_ds_version"} <= set(fields)
    assert body.strip() == "A model of tones."
    archive = tmp_path / "out.zip"
    assert str(archive) in written
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["kenlm.scorer", "me_tones_1.2.3.md", "output_graph.tflite"]
        assert z.read("kenlm.scorer") == b"not checked by the export"
    assert load_runtime(tmp_path / "out" / "output_graph.tflite").metadata["model_name"] == "tones"


# ---------------------------------------------------------------------------------------- bad files

def _one_line_error(path, match=None):
    with pytest.raises(ModelLoadError) as info:
        load_runtime(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if match:
        assert re.search(match, message), message
    return info.value


def test_bad_files_raise_model_load_error(streaming, tmp_path):
    _, directory = streaming
    _one_line_error(tmp_path / "missing.pb", "no such file")
    (tmp_path / "empty.tflite").write_bytes(b"")
    _one_line_error(tmp_path / "empty.tflite", "empty")
    (tmp_path / "text.tflite").write_text("hello, not a model")
    _one_line_error(tmp_path / "text.tflite", "not a TFLite model")
    (tmp_path / "text.pb").write_text("hello, not a model")
    _one_line_error(tmp_path / "text.pb")
    for name in ("output_graph.pb", "output_graph.pbmm", "output_graph.tflite"):
        data = (directory / name).read_bytes()
        for keep in (len(data) // 2, len(data) - 100):
            truncated = tmp_path / f"truncated-{keep}-{name}"
            truncated.write_bytes(data[:keep])
            _one_line_error(truncated)
    os.makedirs(tmp_path / "folder")
    _one_line_error(tmp_path / "folder", "not a SavedModel")


def test_files_that_are_not_our_exports(streaming, tmp_path):
    _, directory = streaming

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x):
        return {"y": x * 2.0}

    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [double.get_concrete_function()], double).convert())
    _one_line_error(foreign, "not an export")
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString((directory / "output_graph.pb").read_bytes())
    for node in graph.node:
        if node.name == "metadata":
            newer = json.loads(node.attr["value"].tensor.string_val[0])
            newer["format_version"] = 2
            node.attr["value"].tensor.string_val[0] = json.dumps(newer).encode()
    (tmp_path / "newer.pb").write_bytes(graph.SerializeToString())
    _one_line_error(tmp_path / "newer.pb", "version 2 is newer")
    without = tf.compat.v1.GraphDef()
    without.node.extend(n for n in graph.node if n.name != "metadata")
    (tmp_path / "without.pb").write_bytes(without.SerializeToString())
    _one_line_error(tmp_path / "without.pb", "metadata")


def test_tflite_runtime_does_not_import_tensorflow(streaming):
    _, directory = streaming
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(ROOT / 'native_client' / 'python')!r})\n"
            f"from deepspeech.runtime import load_runtime\n"
            f"rt = load_runtime({str(directory / 'output_graph.tflite')!r}, num_threads=2)\n"
            f"s = rt.metadata['streaming']\n"
            f"out = rt.step(np.zeros([1, s['window_frames'], s['n_features']], np.float32), [0], [5],"
            f" np.zeros([1, s['state_size']], np.float32))\n"
            f"assert out['probs'].shape == (1, s['n_steps'], s['num_classes'])\n"
            f"assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------- entry point

def make_checkpoint(model, directory):
    store = CheckpointStore(model, None, {}, load_dir="", save_dir=str(directory))
    store.save("best", 1)
    store.describe({"version": VERSION, "features": FEATURES.to_dict(),
                    "model": json.loads(model.model_config.to_json()), "alphabet": LABELS})


@pytest.mark.slow
def test_deepspeech_py_exports_a_checkpoint(clips, tmp_path):
    model = make_model(False, clips)
    make_checkpoint(model, tmp_path / "ck")
    alphabet = tmp_path / "alphabet.txt"
    alphabet.write_text("\n".join(LABELS) + "\n")
    common = ["--checkpoint_dir", tmp_path / "ck", "--alphabet_config_path", alphabet, "--log_level", 1]
    out = tmp_path / "out"
    proc = run_trainer(*common, "--export_dir", out, "--export_tflite", "--export_pbmm", "--export_savedmodel",
                       "--export_quantize", "none", "--export_author_id", "me", "--export_model_name", "m",
                       "--export_language", "en-Latn-US")
    for name in (*FILES, "me_m_0.0.1.md"):
        assert (out / name).exists(), name
        assert f"Exported {out / name} (" in proc.stderr
    for name in FILES:
        runtime = load_runtime(out / name)
        assert runtime.metadata["language"] == "en-Latn-US"
        np.testing.assert_allclose(runtime_probs(runtime, clips[0]), keras_probs(model, clips[0]), atol=1e-4)
    bad = run_trainer(*common, "--export_dir", tmp_path / "other", "--export_batch_size", 4, check=False)
    assert bad.returncode == 1 and "--export_batch_size 4: only 1 is supported" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "other").exists()


@pytest.mark.slow
def test_export_follows_training(audio_csv, tmp_path):
    alphabet = tmp_path / "alphabet.txt"
    alphabet.write_text("\n".join(LABELS) + "\n")
    out = tmp_path / "out"
    proc = run_trainer("--train_files", audio_csv, "--epochs", 1, "--train_batch_size", 3,
                       "--checkpoint_dir", tmp_path / "ck", "--alphabet_config_path", alphabet, *TINY_FLAGS,
                       "--nobidirectional", "--export_dir", out, "--export_tflite")
    assert proc.stderr.index("Training finished") < proc.stderr.index(f"Exported {out / 'output_graph.pb'}")
    runtime = load_runtime(out / "output_graph.tflite")
    assert runtime.function_name == "step" and runtime.metadata["quantize"] == "dynamic"
    assert runtime.metadata["model"]["rnn_units"] == 64
