"""Mozilla 0.9's model family: the Keras model, its features and the import of release checkpoints
(fixtures written by a TF1 graph in Mozilla's exact layout, tests/mozilla_fixtures.py)."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_trainer, tiny_config
from deepspeech_training import families
from deepspeech_training.checkpoint import CheckpointStore
from deepspeech_training.mozilla import GeometryError, checkpoint as release
from deepspeech_training.mozilla.model import MozillaConfig, MozillaModel, OverlappingWindows
from deepspeech_training.train import TrainConfig, make_optimizer
from deepspeech_training.features import spectrogram
sys.path.insert(0, str(ROOT / "util"))

from mozilla_fixtures import numpy_forward, reference_features, toy_clip, training_samples, write_broken_checkpoint, \
    write_release_checkpoint


def _model(n_hidden=8, num_classes=29):
    return families.build_model(MozillaConfig(n_hidden=n_hidden, num_classes=num_classes, dropout=(0.0,) * 4))


def _probs(model, features):
    logits, _ = model((tf.constant(features[None]), tf.constant([len(features)])), training=False)
    return tf.nn.softmax(logits[0]).numpy()


@pytest.fixture(scope="module", params=["cudnn", "plain"])
def fixture(request, tmp_path_factory):
    return write_release_checkpoint(tmp_path_factory.mktemp(request.param), n_hidden=8,
                                    cudnn=request.param == "cudnn")


def test_windows_are_offset_major_with_zeros_beyond_the_ends():
    x = np.arange(5 * 3, dtype=np.float32).reshape(1, 5, 3)
    w = OverlappingWindows(2)(tf.constant(x)).numpy()
    assert w.shape == (1, 5, 15)
    padded = np.concatenate([np.zeros((2, 3)), x[0], np.zeros((2, 3))])
    for t in range(5):
        np.testing.assert_array_equal(w[0, t], padded[t:t + 5].reshape(-1))


def test_mfcc_features_are_the_training_graphs():
    audio = toy_clip(frames=60, seed=2)
    ours = families.mozilla_features()
    fixture_features = reference_features(audio)
    mine = spectrogram(tf.constant(training_samples(audio)), ours).numpy()
    assert ours.n_features == 26 and mine.shape == fixture_features.shape == (60, 26)
    np.testing.assert_allclose(mine, fixture_features, atol=1e-5)


def test_imported_release_checkpoint_gives_the_graphs_probabilities(fixture):
    model = _model()
    release.import_release(fixture.checkpoint_path, model)
    for name, value in fixture.weights.items():
        np.testing.assert_array_equal(model.tf1_weights()[name], value)
    np.testing.assert_allclose(_probs(model, fixture.features), fixture.probabilities, atol=1e-5)
    other = toy_clip(frames=90, seed=7)
    reference = fixture.reference(other)
    np.testing.assert_allclose(_probs(model, reference.features), reference.probs, atol=1e-5)
    np.testing.assert_allclose(numpy_forward(model.tf1_weights(), reference.features), reference.probs, atol=1e-5)


def test_padding_does_not_change_a_sequences_outputs(fixture):
    model = _model()
    release.import_release(fixture.checkpoint_path, model)
    f = fixture.features
    batch = np.zeros((2, len(f) + 13, 26), np.float32)
    batch[0, :len(f)] = f
    batch[1] = np.random.default_rng(0).normal(size=batch.shape[1:])
    logits, _ = model((tf.constant(batch), tf.constant([len(f), batch.shape[1]])), training=False)
    np.testing.assert_allclose(tf.nn.softmax(logits[0, :len(f)]).numpy(), fixture.probabilities, atol=1e-5)


def test_adam_state_continues_and_the_cudnn_lstm_moments_start_at_zero(fixture):
    model = _model()
    optimizer = make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    release.import_release(fixture.checkpoint_path, model, optimizer)
    reader = tf.train.load_checkpoint(fixture.checkpoint_path)
    assert int(optimizer.iterations.numpy()) == fixture.step  # Mozilla's global_step
    for name, variable in model.tf1_variables().items():
        m, v = release._optimizer_slots(optimizer, variable)
        if fixture.cudnn and name.startswith("cudnn_lstm/"):
            assert not np.any(m.numpy()) and not np.any(v.numpy())
        else:
            np.testing.assert_array_equal(m.numpy(), reader.get_tensor(f"{name}/Adam"))
            np.testing.assert_array_equal(v.numpy(), reader.get_tensor(f"{name}/Adam_1"))


def test_directory_description_from_shapes(fixture):
    description = families.describe_directory(str(fixture.directory))
    assert description["model"]["family"] == "mozilla"
    assert description["model"]["n_hidden"] == 8 and description["model"]["num_classes"] == 29
    assert description["release_checkpoint"] == fixture.checkpoint_path
    assert description["features"]["kind"] == "mfcc"


def test_state_file_with_the_training_machines_absolute_path(tmp_path):
    fixture = write_release_checkpoint(tmp_path, n_hidden=8)
    (tmp_path / "best_dev_checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/deepspeech/best_dev-1466475"\n'
        'all_model_checkpoint_paths: "/home/someone/deepspeech/best_dev-1466475"\n')
    assert release.find_release_checkpoint(str(tmp_path)) == fixture.checkpoint_path


def test_dropped_output_layer_takes_a_new_alphabet(fixture):
    model = _model(num_classes=12)
    store = CheckpointStore(model, None, {}, load_dir=str(fixture.directory), save_dir="")
    fresh = model.tf1_weights()["layer_6/weights"].copy()
    store.read_weights(fixture.checkpoint_path, dropped=("layer_6",))
    weights = model.tf1_weights()
    np.testing.assert_array_equal(weights["layer_5/weights"], fixture.weights["layer_5/weights"])
    np.testing.assert_array_equal(weights["layer_6/weights"], fresh)
    with pytest.raises(GeometryError, match=r"layer_6/weights has shape \[8, 29\] in the checkpoint but "
                                            r"\[8, 12\] in this model"):
        CheckpointStore(_model(num_classes=12), None, {}, str(fixture.directory), "").read_weights(
            fixture.checkpoint_path)


@pytest.mark.parametrize("kind", ["misshaped", "missing"])
def test_broken_checkpoint_names_the_tensor_and_changes_nothing(tmp_path, kind):
    broken = write_broken_checkpoint(tmp_path, kind=kind, n_hidden=8)
    model = _model()
    before = model.tf1_weights()
    with pytest.raises(GeometryError) as err:
        release.import_release(broken.checkpoint_path, model)
    assert broken.tensor in str(err.value) and "\n" not in str(err.value)
    if kind == "misshaped":
        assert str(list(broken.saved_shape)) in str(err.value) and str(list(broken.expected_shape)) in str(err.value)
    for name, value in model.tf1_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_model_json_round_trip():
    cfg = MozillaConfig(n_hidden=16, num_classes=5, dropout=(0.1, 0.2, 0.3, 0.4))
    again = families.config_from_dict(json.loads(cfg.to_json()))
    assert again == cfg and isinstance(families.build_model(again), MozillaModel)
    legacy = json.loads(tiny_config().to_json())
    del legacy["family"]  # a model.json written before families existed
    assert families.config_from_dict(legacy) == tiny_config()


# ------------------------------------------------------------------------ Mozilla's command lines

def _test_loss(log: str) -> float:
    found = re.findall(r"Test on \S+ - WER: \S+, CER: \S+, loss: ([\d.]+)", log)
    assert found, log[-3000:]
    return float(found[-1])


def _listing(directory) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in Path(directory).iterdir()}


def test_mozillas_fine_tuning_command_on_a_release_checkpoint(tiny_corpus, tmp_path):
    """TRAINING.rst's fine-tuning line, unchanged, against a release-format (cuDNN) checkpoint directory:
    imported with the log saying what, dev loss falls, new checkpoints land beside it, and the result
    tests and answers --one_shot_infer."""
    fixture = write_release_checkpoint(tmp_path / "release", n_hidden=16)
    test = ["--test_files", tiny_corpus / "dev.csv", "--noshow_progressbar", "--beam_width", 8]
    before = _test_loss(run_trainer("--checkpoint_dir", fixture.directory, *test, script="evaluate.py").stderr)
    assert _listing(fixture.directory) == _listing(fixture.directory)  # evaluation writes nothing
    proc = run_trainer("--n_hidden", 2048, "--checkpoint_dir", fixture.directory, "--epochs", 3,
                       "--train_files", tiny_corpus / "train.csv", "--dev_files", tiny_corpus / "dev.csv",
                       "--train_batch_size", 8, "--learning_rate", 0.001, *test)
    log = proc.stderr
    assert "Imported Mozilla checkpoint" in log and "cuDNN form, global step 1466475" in log
    assert "CUDNN variable not found: cudnn_lstm/" in log
    assert "--n_hidden 2048: the checkpoint's layers have 16 units" in log
    after = _test_loss(log)
    assert after < before, (before, after)
    description = json.loads((fixture.directory / "model.json").read_text())
    assert description["model"]["family"] == "mozilla" and description["model"]["n_hidden"] == 16
    best = tf.train.latest_checkpoint(str(fixture.directory), "best_dev_checkpoint")
    assert int(best.rsplit("-", 1)[1]) > 1466475  # the step goes on from the release's global step
    wav = sorted((tiny_corpus / "wav" / "dev").glob("*.wav"))[0]
    out = run_trainer("--checkpoint_dir", fixture.directory, "--one_shot_infer", wav).stdout
    assert len(out.splitlines()) == 1 and set(out.strip()) <= set(" abcdefghijklmnopqrstuvwxyz'")
    export = tmp_path / "export"
    run_trainer("--checkpoint_dir", fixture.directory, "--export_dir", export, "--export_pbmm", "--export_tflite")
    _same_transcripts_as_mozillas_runtime(export, sorted((tiny_corpus / "wav" / "dev").glob("*.wav"))[:3])


def _same_transcripts_as_mozillas_runtime(export: Path, wavs: list[Path]) -> None:
    """Each exported file transcribes each clip in our client as in Mozilla's (Coqui's) runtime."""
    import deepspeech
    import soundfile
    from mozilla_runtime import Runtime, library_path

    for name, libraries in (("output_graph.pb", ("deepspeech",)), ("output_graph.pbmm", ("deepspeech",)),
                            ("output_graph.tflite", ("deepspeech-tflite", "stt"))):
        ours = deepspeech.Model(str(export / name))
        for library in libraries:
            if not library_path(library).is_file():
                continue
            theirs = Runtime(library).model(export / name)
            for wav in wavs:
                audio = soundfile.read(wav, dtype="int16")[0]
                assert ours.stt(audio) == theirs.stt(audio), (name, library, wav)


def test_transfer_to_a_new_alphabet_drops_layer_6(tiny_corpus, tmp_path):
    fixture = write_release_checkpoint(tmp_path / "release", n_hidden=16)
    alphabet = tmp_path / "new.txt"
    alphabet.write_text((tiny_corpus / "alphabet.txt").read_text() + "ü\n")
    before = _listing(fixture.directory)
    log = run_trainer("--load_checkpoint_dir", fixture.directory, "--save_checkpoint_dir", tmp_path / "mine",
                      "--drop_source_layers", 1, "--alphabet_config_path", alphabet, "--epochs", 1,
                      "--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8,
                      "--noshow_progressbar", "--load_cudnn").stderr
    assert "Initializing variable: layer_6/weights" in log and "kept all but layer_6" in log
    assert "Loading variable from checkpoint: layer_5/weights" in log
    assert _listing(fixture.directory) == before  # the release directory is only read
    description = json.loads((tmp_path / "mine" / "model.json").read_text())
    assert description["model"]["num_classes"] == 30 and description["alphabet"][-1] == "ü"


def test_bad_checkpoint_directories_are_one_line_errors(tmp_path, tiny_corpus):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = write_broken_checkpoint(tmp_path / "broken", kind="misshaped", n_hidden=8)
    for directory, expected in ((empty, "holds neither a model.json"),
                                (broken.directory, f"{broken.tensor} has shape {list(broken.saved_shape)}")):
        before = _listing(directory)
        proc = run_trainer("--checkpoint_dir", directory, "--test_files", tiny_corpus / "dev.csv",
                           "--noshow_progressbar", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
        assert _listing(directory) == before


def test_a_new_mozilla_model_trains_with_the_trainers_capabilities(tiny_corpus, tmp_path):
    """--model_family mozilla with SortaGrad, --augment, two replicas, bfloat16 mixed precision, a dev set,
    a test report and a scorer: the family is one module behind the trainer's interface."""
    proc = run_trainer("--model_family", "mozilla", "--n_hidden", 16, "--checkpoint_dir", tmp_path / "ck",
                       "--train_files", tiny_corpus / "train.csv", "--dev_files", tiny_corpus / "dev.csv",
                       "--test_files", tiny_corpus / "test.csv", "--epochs", 1, "--train_batch_size", 4,
                       "--cpu_devices", 2, "--automatic_mixed_precision", "--mixed_precision_dtype", "bfloat16",
                       "--augment", "frequency_mask[p=0.5,n=1:2,size=1:2]", "--augment", "volume[p=0.5]",
                       "--noshow_progressbar", "--beam_width", 4)
    log = proc.stderr
    assert "Mozilla DeepSpeech 0.9 model" in log and "MirroredStrategy over 2 device(s)" in log
    assert "Augmenting training samples: frequency_mask" in log and "Epoch 1: dev" in log
    assert "Recurrent layers lstm (unidirectional LSTM, 16 units, 16 inputs, Mozilla's layout" in log
    assert "generic kernel (x W + b in one product, one TensorFlow while loop): Mozilla's LSTM runs fused " \
           "only in cuDNN, which needs a GPU" in log
    assert re.search(r"Test on \S+ - WER: [\d.]+, CER: [\d.]+, loss: [\d.]+", log)
    description = json.loads((tmp_path / "ck" / "model.json").read_text())
    assert description["model"]["family"] == "mozilla" and description["features"]["kind"] == "mfcc"
    assert tf.train.latest_checkpoint(str(tmp_path / "ck"), "best_dev_checkpoint")
