"""The ``deepspeech`` client on real exports (.pb, .tflite) of tiny random models: the Keras model's
probabilities, streaming = one-shot, TFLite without TensorFlow, broken and incompatible model files."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_client import LABELS, RATE, write_wav

import deepspeech
from deepspeech.audio import from_int16, to_int16
from deepspeech.errors import DeepSpeechError
from deepspeech.features import spectrogram


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{'forward'|'step': (keras model, export dir)}: a bidirectional model and a unidirectional one
    (two convolutions of stride 2 x 1, lookahead 2), exported as .pb and float .tflite."""
    import keras
    from conftest import tiny_config

    from deepspeech_training.export import ExportConfig, export_model
    from deepspeech_training.features import FeatureConfig
    from deepspeech_training.model import ConvSpec, DeepSpeech2

    keras.utils.set_random_seed(0)  # a module fixture runs before the tests' own seeding
    out = {}
    for name, overrides in [("forward", {}),
                            ("step", dict(bidirectional=False, lookahead=2, conv_type="1d",
                                          conv=(ConvSpec(8, (5, 1), (2, 1)), ConvSpec(8, (3, 1), (1, 1)))))]:
        model = DeepSpeech2(tiny_config(n_features=161, num_classes=len(LABELS) + 1, **overrides)).build_for()
        rng = np.random.default_rng(0)
        for v in model.non_trainable_variables:  # features of speech are around 0 after normalization
            if v.path.endswith("/mean"):
                v.assign(np.full(v.shape, -5.0, np.float32))
            elif v.path.endswith("/std"):
                v.assign(rng.uniform(2.0, 4.0, v.shape).astype(np.float32))
        directory = tmp_path_factory.mktemp(f"export_{name}")
        export_model(model, FeatureConfig(), LABELS, ExportConfig(str(directory), tflite=True,
                                                                   quantize="none", n_steps=4, beam_width=32))
        out[name] = (model, directory)
    return out


def exported(exports, function, suffix=".tflite"):
    return str(exports[function][1] / f"output_graph{suffix}")


def keras_probs(model, audio):
    import tensorflow as tf

    from deepspeech_training.features import FeatureConfig
    from deepspeech_training.features import spectrogram as tf_spectrogram

    features = tf_spectrogram(tf.constant(from_int16(audio)), FeatureConfig())
    logits, lengths = model((features[None], tf.constant([features.shape[0]])), training=False)
    return tf.nn.softmax(logits[0]).numpy()[:int(lengths[0])]


def speechlike(seconds=1.3, seed=0):
    rng = np.random.default_rng(seed)
    return to_int16(0.2 * rng.standard_normal(int(RATE * seconds)) * np.hanning(int(RATE * seconds)))


@pytest.mark.parametrize("function", ["forward", "step"])
@pytest.mark.parametrize("suffix", [".pb", ".tflite"])
def test_exported_models_compute_the_keras_models_probabilities(exports, function, suffix):
    keras_model = exports[function][0]
    model = deepspeech.Model(exported(exports, function, suffix))
    assert model.sampleRate() == 16000 and model.beamWidth() == 32
    audio = speechlike()
    features = spectrogram(from_int16(audio), model._impl.framing)
    expected = keras_probs(keras_model, audio)
    np.testing.assert_allclose(model._impl.probs(features), expected, atol=2e-4)
    assert model._impl.streaming == (function == "step")


@pytest.mark.parametrize("function", ["forward", "step"])
def test_stream_of_an_export_ends_with_the_one_shot_result(exports, function):
    model = deepspeech.Model(exported(exports, function))
    audio = speechlike(seed=1)
    one_shot = model.sttWithMetadata(audio, 1).transcripts[0]
    assert len(one_shot.tokens) > 3  # the random model says something
    for size in (160, 1000, 4800):
        stream = model.createStream()
        for offset in range(0, len(audio), size):
            stream.feedAudioContent(audio[offset:offset + size])
            if offset == 8000:
                partial = stream.intermediateDecode()
        final = stream.finishStreamWithMetadata(1).transcripts[0]
        assert final.tokens == one_shot.tokens, (size, final.tokens, one_shot.tokens)
        assert final.confidence == pytest.approx(one_shot.confidence)
        assert partial  # an intermediate result while audio arrives (a beam may still change its start)


def test_cli_and_tflite_without_tensorflow(exports, tmp_path):
    tflite = exports["step"][1] / "output_graph.tflite"
    wav = write_wav(tmp_path / "a.wav", speechlike())
    code = (f"import sys, soundfile, deepspeech\n"
            f"m = deepspeech.Model({str(tflite)!r})\n"
            f"audio, _ = soundfile.read({wav!r}, dtype='int16')\n"
            f"print(m.stt(audio))\n"
            f"assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = os.path.join(os.path.dirname(sys.executable), "deepspeech")
    cli = subprocess.run([command, "--model", str(tflite), "--audio", wav, "--json"], capture_output=True,
                         text=True)
    assert cli.returncode == 0, cli.stderr
    result = json.loads(cli.stdout)
    assert len(result["transcripts"]) == 3
    assert " ".join(w["word"] for w in result["transcripts"][0]["words"]) == proc.stdout.strip()


def test_cli_refuses_broken_and_incompatible_models(exports, tmp_path):
    with open(exported(exports, "step"), "rb") as f:
        tflite = f.read()
    newer = tmp_path / "newer.tflite"
    newer.write_bytes(tflite.replace(b'"format_version": 1', b'"format_version": 7'))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tflite[:len(tflite) // 3])
    junk = tmp_path / "junk.pb"
    junk.write_bytes(os.urandom(3000))
    wav = write_wav(tmp_path / "a.wav", speechlike())
    command = os.path.join(os.path.dirname(sys.executable), "deepspeech")
    for model, message in [(newer, "(0x2003)"), (truncated, "CreateModel failed")]:
        proc = subprocess.run([command, "--model", str(model), "--audio", wav], capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 2  # "Loading model ..." and the error
    for model in (junk, tmp_path):  # TensorFlow formats: in this process, which has TensorFlow loaded
        with pytest.raises(DeepSpeechError, match="CreateModel failed with .*" + str(model)):
            deepspeech.Model(str(model))


@pytest.mark.slow
def test_trained_streaming_model_through_cli_and_evaluate_tflite(tmp_path):
    """Mozilla's smoke test for the client: overfit one espeak-ng clip with a unidirectional model,
    export TFLite; the CLI (one-shot and streaming) and evaluate_tflite.py read the clip as the
    trainer's --one_shot_infer does."""
    from conftest import ROOT, run_trainer
    from rapidfuzz.distance import Levenshtein

    if any(shutil.which(tool) is None for tool in ("espeak-ng", "sox", "bible")):
        pytest.skip("needs espeak-ng, sox and bible-kjv (make install)")
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "bin" / "import_espeak.py"), str(data), "--train_utterances", "1",
                    "--dev_utterances", "1", "--test_utterances", "1", "--seed", "7", "--log_level", "2"],
                   check=True)
    one, checkpoint = data / "train.csv", tmp_path / "ckpt"
    run_trainer("--train_files", one, "--train_batch_size", 1, "--epochs", 80, "--learning_rate", 0.003,
                "--dropout_rate", 0, "--n_hidden", 64, "--conv_type", "1d", "--conv_layers", "64:5:2",
                "--rnn_layers", 1, "--nobidirectional", "--lookahead", 2, "--checkpoint_dir", checkpoint,
                "--noshow_progressbar", "--export_dir", tmp_path / "export", "--export_tflite",
                "--export_quantize", "none", timeout=1200)
    wav, _, expected = one.read_text().splitlines()[1].split(",", 2)
    trainer = run_trainer("--one_shot_infer", data / wav, "--checkpoint_dir", checkpoint, "--load_evaluate",
                          "last").stdout.strip().splitlines()[-1]
    command = [os.path.join(os.path.dirname(sys.executable), "deepspeech"), "--model",
               str(tmp_path / "export" / "output_graph.tflite"), "--audio", str(data / wav)]
    one_shot = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    streamed = subprocess.run(command + ["--stream", "1600"], capture_output=True, text=True, check=True)
    lines = streamed.stdout.strip().splitlines()
    assert one_shot == trainer and lines[-1] == one_shot and len(lines) > 3
    assert Levenshtein.distance(one_shot, expected) <= 0.25 * len(expected), (one_shot, expected)
    report = subprocess.run([sys.executable, str(ROOT / "evaluate_tflite.py"), "--model", command[2],
                             "--csv", str(one), "--proc", "1", "--report_count", "1"],
                            capture_output=True, text=True, check=True)
    assert f' - res: "{one_shot}"' in report.stdout and "Test on " in report.stdout


@pytest.mark.parametrize("suffix", [".pb", ".pbmm", ".tflite", "saved_model"])
def test_step_export_takes_a_batch_of_streams(exports, suffix, tmp_path):
    """A dynamic batch in every format: 3 streams at different positions in one call == 3 calls."""
    from deepspeech.runtime import load_runtime

    directory = exports["step"][1]
    if suffix == ".pbmm" and not (directory / "output_graph.pbmm").exists():
        from deepspeech import pbmm
        pbmm.convert(str(directory / "output_graph.pb"), str(directory / "output_graph.pbmm"))
    if suffix == "saved_model" and not (directory / "saved_model").exists():
        from deepspeech_training.export import write_savedmodel
        from deepspeech_training.inference import model_function

        model = exports["step"][0]
        fn = model_function(model, 4)
        write_savedmodel(fn.function, model, load_runtime(str(directory / "output_graph.pb")).metadata,
                         str(directory / "saved_model"))
    runtime = load_runtime(str(directory / "saved_model") if suffix == "saved_model" else exported(
        exports, "step", suffix))
    meta = runtime.metadata["streaming"]
    assert runtime.batched and meta["batch"] == "dynamic"
    rng = np.random.default_rng(3)
    rows = [(rng.normal(-5, 3, [1, meta["window_frames"], meta["n_features"]]).astype(np.float32),
             np.array([4 * k], np.int32), np.array([2 ** 30 if k != 1 else 9], np.int32),
             rng.normal(0, 0.5, [1, meta["state_size"]]).astype(np.float32)) for k in range(3)]
    singles = [runtime.step(*row) for row in rows]
    for _ in range(2):  # the batch size changes between calls (TFLite resizes its inputs)
        batch = runtime.step(*(np.concatenate(parts) for parts in zip(*rows)))
        for i, single in enumerate(singles):
            np.testing.assert_allclose(batch["probs"][i], single["probs"][0], atol=1e-5)
            np.testing.assert_allclose(batch["new_state"][i], single["new_state"][0], atol=1e-5)
        runtime.step(*rows[0])


def test_transcribe_py_from_the_checkpoint_equals_the_export(exports, tiny_corpus, tmp_path):
    """Mozilla's way (--checkpoint_dir: the training checkpoint, segments batched) and --model (the
    export through the client) give the same .tlog: segments, transcripts and word times."""
    import soundfile

    from deepspeech_training import transcribe
    from deepspeech_training.checkpoint import CheckpointStore
    from deepspeech_training.features import FeatureConfig
    from deepspeech_training.run import _description
    from ds_ctcdecoder import Alphabet

    model, directory = exports["forward"]
    checkpoint = tmp_path / "ck"
    checkpoint.mkdir()
    store = CheckpointStore(model, None, {}, load_dir="", save_dir=str(checkpoint))
    store.save("best", 1)
    store.describe(_description(FeatureConfig(), model.model_config, Alphabet.from_labels(LABELS)))
    (tmp_path / "alphabet.txt").write_text("\n".join(LABELS) + "\n")
    clips = [soundfile.read(tiny_corpus / "wav" / "test" / name, dtype="int16")[0]
             for name in sorted(os.listdir(tiny_corpus / "wav" / "test"))[:3]]
    silence = np.zeros(RATE, np.int16)
    wav = write_wav(tmp_path / "talk.wav", np.concatenate([silence, clips[0], silence, clips[1], silence,
                                                           clips[2], silence]))
    common = ["--src", wav, "--beam_width", "16", "--alphabet_config_path", str(tmp_path / "alphabet.txt")]
    tlogs = {}
    for name, options in [("export", ["--model", str(directory / "output_graph.pb")]),
                          ("batched", ["--checkpoint_dir", str(checkpoint)]),
                          ("one_by_one", ["--checkpoint_dir", str(checkpoint), "--batch_size", "1",
                                          "--outlier_duration_ms", "1500", "--outlier_batch_size", "2"])]:
        assert transcribe.main([*common, *options, "--dst", str(tmp_path / f"{name}.tlog")]) == 0
        tlogs[name] = json.loads((tmp_path / f"{name}.tlog").read_text())
    segments = tlogs["export"]
    assert len(segments) == 3 and all(s["transcript"] for s in segments)  # the random model says something
    for name in ("batched", "one_by_one"):
        assert [(s["start"], s["end"], s["transcript"]) for s in tlogs[name]] == \
            [(s["start"], s["end"], s["transcript"]) for s in segments]
        for ours, theirs in zip(tlogs[name], segments):
            assert [w["word"] for w in ours["words"]] == [w["word"] for w in theirs["words"]]
            assert [w["start_time"] for w in ours["words"]] == pytest.approx([w["start_time"] for w in theirs["words"]],
                                                                             abs=1e-3)
    assert transcribe.main(["--src", wav, "--checkpoint_dir", str(tmp_path / "none"), "--force"]) == 1
