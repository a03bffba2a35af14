"""Transfer learning: --drop_source_layers, --freeze_source_layers, checks of a checkpoint that does not fit."""
import json
import os
import re
import shutil
import string
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_FLAGS, run_trainer, tiny_config

from deepspeech_training.checkpoint import CheckpointError
from deepspeech_training.features import FeatureConfig
from deepspeech_training.train import Trainer, TrainConfig
from ds_ctcdecoder.alphabet import Alphabet

LABELS = [" "] + list(string.ascii_lowercase) + ["'"]


def make_trainer(load, save, labels=LABELS, drop=0, freeze=0, **geometry):
    cfg = tiny_config(num_classes=len(labels) + 1, **geometry)
    description = {"features": FeatureConfig().to_dict(), "model": json.loads(cfg.to_json()),
                   "alphabet": list(labels)}
    train_cfg = TrainConfig(drop_source_layers=drop, freeze_source_layers=freeze, summary_dir="",
                            show_progressbar=False, learning_rate=0.0001)
    return Trainer(tf.distribute.get_strategy(), cfg, FeatureConfig(), Alphabet.from_labels(labels),
                   train_cfg, (str(load), str(save)), 2, description)


def values(model) -> dict:
    return {v.path.split("/", 1)[1]: v.numpy().copy() for v in model.variables}


def make_source(directory, labels=LABELS, **geometry) -> dict:
    """A checkpoint whose every variable (statistics, counters, step too) differs from a fresh model's."""
    source = make_trainer(directory, directory, labels, **geometry)
    rng = np.random.default_rng(1)
    for v in source.model.variables:
        v.assign(v.numpy() + rng.normal(0.5, 0.1, v.shape).astype(v.dtype))
    source.optimizer.iterations.assign(7)
    source.counters.epoch.assign(3)
    source.store.describe(source.description)
    source.store.save("last", 7)
    return values(source.model)


LOOKAHEAD = dict(bidirectional=False, lookahead=2, rnn_layers=2)  # 6 weight layers


@pytest.mark.parametrize("drop, fresh", [(1, {"logits"}), (3, {"logits", "fc", "lookahead"}),
                                         (6, {"logits", "fc", "lookahead", "rnn_2", "rnn_1", "conv_1"})])
def test_drop_source_layers_reinitializes_exactly_the_last_n(tmp_path, drop, fresh):
    source = make_source(tmp_path / "src", **LOOKAHEAD)
    tuned = make_trainer(tmp_path / "src", tmp_path / "tuned", drop=drop, **LOOKAHEAD)
    initial = values(tuned.model)
    tuned.prepare([])  # no samples needed: the normalization statistics come from the checkpoint
    after = values(tuned.model)
    for key, value in after.items():
        if key.split("/")[0] in fresh:
            np.testing.assert_array_equal(value, initial[key], err_msg=key)
            assert not np.array_equal(value, source[key]), key
        else:
            np.testing.assert_array_equal(value, source[key], err_msg=key)
    assert any(k.startswith("normalization/") for k in after)
    # a new run: fresh optimizer (step 0, --learning_rate) and counters, model.json of the new model
    assert int(tuned.optimizer.iterations.numpy()) == 0 and int(tuned.counters.epoch.numpy()) == 0
    assert float(tuned.learning_rate.numpy()) == pytest.approx(0.0001)
    assert json.loads((tmp_path / "tuned" / "model.json").read_text())["model"]["lookahead"] == 2


def test_new_alphabet_needs_the_output_layer_dropped(tmp_path):
    make_source(tmp_path / "src")
    bigger = LABELS + ["ü"]
    with pytest.raises(CheckpointError, match=r"alphabet of 28 labels.*has 29.*--drop_source_layers 1"):
        make_trainer(tmp_path / "src", tmp_path / "a", bigger).prepare([])
    swapped = LABELS[:1] + LABELS[2:3] + LABELS[1:2] + LABELS[3:]  # a <-> b: same size
    with pytest.raises(CheckpointError, match=r"another alphabet of the same size \(labels 1: 'a' -> 'b', "
                                              r"2: 'b' -> 'a'\).*--drop_source_layers 1"):
        make_trainer(tmp_path / "src", tmp_path / "b", swapped).prepare([])
    make_trainer(tmp_path / "src", tmp_path / "c", bigger, drop=1).prepare([])  # what the message says
    assert (tmp_path / "c" / "model.json").exists() and not (tmp_path / "a" / "model.json").exists()


def test_mismatching_geometry_names_layer_shapes_and_fields(tmp_path):
    make_source(tmp_path / "src")
    with pytest.raises(CheckpointError) as err:
        make_trainer(tmp_path / "src", tmp_path / "new", rnn_units=32, drop=1).prepare([])
    message = str(err.value)
    assert "layer variable rnn_1/input_kernel has shape [8, 96] in the checkpoint but [8, 192]" in message
    assert "rnn_units 16 in the checkpoint, 32 here (--n_hidden)" in message
    assert "fc_units" not in message and "another geometry" in message
    with pytest.raises(CheckpointError, match=r"no weights for layer variable rnn_2/input_kernel.*"
                                              r"rnn_layers 1 in the checkpoint, 2 here \(--rnn_layers\)"):
        make_trainer(tmp_path / "src", tmp_path / "deeper", rnn_layers=2).prepare([])
    with pytest.raises(CheckpointError, match=r"conv 8:5x9:2x2 in the checkpoint, 8:3x9:2x2 here "
                                              r"\(--conv_layers\)"):
        make_trainer(tmp_path / "src", tmp_path / "conv", conv=(tiny_config().conv[0].__class__(
            8, (3, 9), (2, 2)),), drop=1).prepare([])


def test_out_of_range_or_sourceless_transfer_is_an_error(tmp_path):
    make_source(tmp_path / "src")
    with pytest.raises(ValueError, match=r"--drop_source_layers 5: this model has 4 weight layers \(logits, "
                                         r"fc, rnn_1, conv_1, counted from the output\); use 0 to 4"):
        make_trainer(tmp_path / "src", tmp_path / "new", drop=5).prepare([])
    with pytest.raises(ValueError, match="--freeze_source_layers -1"):
        make_trainer(tmp_path / "src", tmp_path / "new", freeze=-1).prepare([])
    with pytest.raises(CheckpointError, match="need a checkpoint to start from"):
        make_trainer(tmp_path / "none", tmp_path / "new", drop=1).prepare([])


def test_frozen_layers_and_their_batchnorm_stay_unchanged(tmp_path):
    source = make_source(tmp_path / "src")
    tuned = make_trainer(tmp_path / "src", tmp_path / "tuned", LABELS + ["ü"], drop=1, freeze=1)
    tuned.prepare([])
    model = tuned.model
    assert {v.path.split("/")[1] for v in model.trainable_variables} == {"logits"}
    features = tf.random.normal([2, 40, 33], seed=1)
    for _ in range(3):  # what the train step does: differentiate and update the trainable variables
        with tf.GradientTape() as tape:
            logits, _ = model((features, tf.constant([40, 30])), training=True)
            loss = tf.reduce_mean(tf.square(logits))
        grads = tape.gradient(loss, model.trainable_variables)
        tuned.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    after = values(model)
    for key, value in after.items():
        if key.startswith("logits/"):
            assert not np.array_equal(value, source.get(key, value + 1)), key
        else:  # incl. conv_1/bn/moving_mean and the BatchNorm update counters
            np.testing.assert_array_equal(value, source[key], err_msg=key)


def test_fine_tuning_run_freezes_resumes_tests_and_exports(tiny_corpus, tmp_path):
    """English -> an alphabet with one more letter: the CLI workflow, from the dropped output layer to an
    export of the fine-tuned weights."""
    src, tuned = tmp_path / "src", tmp_path / "tuned"
    new_alphabet = tmp_path / "alphabet.txt"
    new_alphabet.write_text((tiny_corpus / "alphabet.txt").read_text() + "ü\n")
    data = ["--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8, *TINY_FLAGS]
    run_trainer(*data, "--epochs", 1, "--checkpoint_dir", src,
                "--alphabet_config_path", tiny_corpus / "alphabet.txt")
    tune = [*data, "--load_checkpoint_dir", src, "--save_checkpoint_dir", tuned,
            "--alphabet_config_path", new_alphabet, "--learning_rate", 0.0001]
    refused = run_trainer(*tune, "--epochs", 1, check=False)
    assert refused.returncode == 1 and "--drop_source_layers 1" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tuned / "model.json").exists()
    tune += ["--drop_source_layers", 1, "--freeze_source_layers", 1]
    first = run_trainer(*tune, "--epochs", 1)
    assert "Re-initialized (--drop_source_layers 1): logits" in first.stderr
    assert "Frozen (not trained, BatchNorm statistics fixed): conv_1, rnn_1, fc" in first.stderr
    assert "A fresh optimizer at learning rate 0.0001, step 0" in first.stderr
    assert (tuned / "train-6.index").exists()  # 48 samples / 8: the new run counts from step 0
    again = run_trainer(*tune, "--epochs", 2, "--test_files", tiny_corpus / "test.csv",
                        "--test_output_file", tmp_path / "test.json", "--export_dir", tmp_path / "export")
    assert f"Loaded checkpoint {tuned}/train-6" in again.stderr and "Resuming at epoch 2" in again.stderr
    assert "Re-initialized" not in again.stderr and (tuned / "train-12.index").exists()
    source = tf.train.load_checkpoint(str(src / "train-6"))
    final = tf.train.load_checkpoint(str(tuned / "train-12"))
    shapes = final.get_variable_to_shape_map()
    for key in shapes:  # every weight and statistic but the output layer's (and dropout's RNG state)
        if key.startswith("model.S") and not key.startswith(("model.Slogits", "model.Sseed_generator")):
            np.testing.assert_array_equal(final.get_tensor(key), source.get_tensor(key), err_msg=key)
    assert shapes["model.Slogits.Skernel/.ATTRIBUTES/VARIABLE_VALUE"] == [64, 30]
    # test and export read the fine-tuned run: the source cannot even be loaded with this alphabet
    assert "Test on test.csv - WER:" in again.stderr
    assert len(json.loads((tmp_path / "test.json").read_text())) == 8
    assert (tmp_path / "export" / "output_graph.pb").exists()


def espeak_corpus(out, *args):
    subprocess.run([sys.executable, str(ROOT / "bin" / "import_espeak.py"), str(out),
                    *map(str, args), "-j", "2", "--log_level", "2"], check=True)
    return out


def dev_cer(log: str) -> list[float]:
    found = re.findall(r"Epoch \d+: dev \S+ loss \S+, greedy WER \S+, CER ([\d.]+)%", log)
    return [float(v) / 100 for v in found]


@pytest.mark.slow
def test_english_model_transfers_to_mandarin_faster_than_scratch(tmp_path):
    """A small English model, its output layer dropped, learns Mandarin characters faster than the same
    model from scratch: same data, steps, learning rate and seed. Dev: held-out renditions (other voices,
    speeds, pitches) of the training sentences."""
    if any(shutil.which(t) is None for t in ("espeak-ng", "sox", "bible")) or \
            not os.path.exists("/usr/share/games/fortunes/tang300"):
        pytest.skip("needs espeak-ng, sox, bible-kjv and fortunes-zh (make install)")
    geometry = ["--n_hidden", 96, "--conv_type", "1d", "--conv_layers", "96:11:3", "--rnn_layers", 1,
                "--dropout_rate", 0, "--train_batch_size", 8, "--dev_batch_size", 20, "--noshow_progressbar",
                "--summary_dir", "", "--checkpoint_secs", 0]
    en = espeak_corpus(tmp_path / "en", "--train_utterances", 400, "--dev_utterances", 20,
                       "--test_utterances", 20)
    run_trainer(*geometry, "--train_files", en / "train.csv", "--alphabet_config_path", en / "alphabet.txt",
                "--epochs", 6, "--learning_rate", 0.003, "--checkpoint_dir", tmp_path / "english")
    cmn = espeak_corpus(tmp_path / "cmn", "--language", "cmn", "--vocab_size", 150, "--train_utterances", 300,
                        "--dev_utterances", 30, "--test_utterances", 10)
    rows = (cmn / "train.csv").read_text(encoding="utf-8").splitlines()
    (cmn / "tr.csv").write_text("\n".join(rows[:261]) + "\n", encoding="utf-8")
    (cmn / "dv.csv").write_text("\n".join(rows[:1] + rows[261:]) + "\n", encoding="utf-8")
    assert {r.split(",", 2)[2] for r in rows[261:]} <= {r.split(",", 2)[2] for r in rows[1:261]}
    target = [*geometry, "--train_files", cmn / "tr.csv", "--dev_files", cmn / "dv.csv", "--epochs", 5,
              "--alphabet_config_path", cmn / "alphabet.txt", "--learning_rate", 0.002]
    runs = {"transfer": [*target, "--load_checkpoint_dir", tmp_path / "english", "--drop_source_layers", 1,
                         "--save_checkpoint_dir", tmp_path / "transfer"],
            "scratch": [*target, "--checkpoint_dir", tmp_path / "scratch"]}
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "DeepSpeech.py"), *map(str, args)], cwd=ROOT,
                                    stderr=subprocess.PIPE, text=True) for name, args in runs.items()}
    logs = {name: proc.communicate(timeout=600)[1] for name, proc in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), logs
    cer = {name: dev_cer(log) for name, log in logs.items()}
    assert len(cer["transfer"]) == len(cer["scratch"]) == 5, cer
    assert cer["transfer"][-1] < cer["scratch"][-1] - 0.1, cer
    assert cer["transfer"][-1] < 0.8, cer  # it does transcribe, beyond emitting a few frequent characters
