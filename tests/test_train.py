"""The trainer end to end through ./DeepSpeech.py, as a user runs it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY_FLAGS, run_trainer


def csvs(corpus):
    return ["--train_files", corpus / "train.csv", "--dev_files", corpus / "dev.csv",
            "--test_files", corpus / "test.csv"]


def test_mozilla_command_line_runs_unchanged(tiny_corpus, tmp_path):
    ck = tmp_path / "ck"
    proc = run_trainer(*csvs(tiny_corpus), "--train_batch_size", 8, "--n_hidden", 100, "--epochs", 3,
                       "--checkpoint_dir", ck, "--noshow_progressbar", "--noearly_stop", "--max_to_keep", 1,
                       "--learning_rate", 0.001, "--dropout_rate", 0.05, "--summary_dir", tmp_path / "tb",
                       "--test_output_file", tmp_path / "test.json")
    names = set(os.listdir(ck))
    assert {"checkpoint", "best_dev_checkpoint", "flags.txt", "model.json", "training_curves.png"} <= names
    assert sum(n.startswith("train-") and n.endswith(".index") for n in names) == 1  # --max_to_keep 1
    assert any(n.startswith("best_dev-") for n in names)
    assert "Deep Speech 2:" in proc.stderr and "trainable parameters" in proc.stderr
    assert "Test on test.csv - WER:" in proc.stderr and "Padding efficiency" in proc.stderr
    rows = json.loads((tmp_path / "test.json").read_text())
    assert len(rows) == 8 and {"wav_filename", "src", "res", "wer", "cer", "loss"} <= set(rows[0])
    assert os.listdir(tmp_path / "tb" / "train") and os.listdir(tmp_path / "tb" / "dev")
    described = json.loads((ck / "model.json").read_text())
    assert described["model"]["rnn_units"] == 100 and described["features"]["win_len_ms"] == 20


def test_overfits_one_clip(tiny_corpus, tmp_path):
    """bin/run-smoke.sh's check: one clip, trained on alone, comes back word for word."""
    one = tmp_path / "one.csv"
    lines = (tiny_corpus / "train.csv").read_text().splitlines()
    wav, _, transcript = lines[1].split(",", 2)
    one.write_text(f"{lines[0]}\n{tiny_corpus / wav},0,{transcript}\n")
    ck = tmp_path / "ck"
    run_trainer("--train_files", one, "--epochs", 80, "--checkpoint_dir", ck, "--learning_rate", 0.003,
                "--dropout_rate", 0, *TINY_FLAGS)
    out = run_trainer("--one_shot_infer", tiny_corpus / wav, "--checkpoint_dir", ck, "--load_evaluate", "last")
    assert out.stdout.strip() == transcript


def wait_for(predicate, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def start_trainer(args):
    return subprocess.Popen([sys.executable, str(ROOT / "DeepSpeech.py"), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_and_sigint(tiny_corpus, tmp_path):
    ck = tmp_path / "ck"
    args = ["--train_files", tiny_corpus / "train.csv", "--train_batch_size", 4, "--epochs", 4,
            "--checkpoint_dir", ck, "--checkpoint_secs", 1, *TINY_FLAGS]
    proc = start_trainer(args)
    assert wait_for(lambda: (ck / "checkpoint").exists(), 240), "no checkpoint written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = (ck / "checkpoint").read_text()
    proc = start_trainer(args)  # the same command continues from the last checkpoint
    assert wait_for(lambda: (ck / "checkpoint").read_text() != state, 240)
    proc.send_signal(signal.SIGINT)  # saves a checkpoint, then stops
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Resuming at epoch" in err and "Received SIGINT" in err
    final = run_trainer(*args)
    assert "Resuming at epoch" in final.stderr and "Training finished: done" in final.stderr
    history = json.loads((ck / "model.json").read_text())  # still describes the model
    assert history["model"]["rnn_units"] == 64


def test_checkpoint_of_another_geometry_names_the_layer(tiny_corpus, tmp_path):
    ck = tmp_path / "ck"
    base = ["--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8, "--epochs", 1,
            "--checkpoint_dir", ck, *TINY_FLAGS]
    run_trainer(*base)
    proc = run_trainer(*base, "--n_hidden", 32, "--epochs", 2, check=False)
    assert proc.returncode == 1
    assert "rnn_1/input_kernel" in proc.stderr and "another geometry" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fine_tuning_from_another_checkpoint_dir(tiny_corpus, tmp_path):
    """--load_checkpoint_dir A --save_checkpoint_dir B trains --epochs more epochs from A's weights."""
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    base = ["--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8, "--epochs", 1, *TINY_FLAGS]
    run_trainer(*base, "--checkpoint_dir", first)
    assert (first / "train-6.index").exists()  # 48 samples / 8 = 6 steps
    args = [*base, "--load_checkpoint_dir", first, "--save_checkpoint_dir", tuned]
    proc = run_trainer(*args)
    assert "Loaded checkpoint" in proc.stderr and "Starting a new run of 1 epochs" in proc.stderr
    assert (tuned / "train-6.index").exists()  # a new run: fresh optimizer and step count
    again = run_trainer(*args)  # the same command now resumes the fine-tuning run itself
    assert f"Loaded checkpoint {tuned}" in again.stderr and "already trained 1 epochs" in again.stderr
    assert not (first / "train-12.index").exists()


def test_user_errors_are_one_line(tmp_path):
    proc = run_trainer("--train_files", tmp_path / "nope.csv", "--checkpoint_dir", tmp_path, check=False)
    assert proc.returncode == 1 and "nope.csv: data set CSV not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_trainer("--test_files", tmp_path / "x.csv", "--checkpoint_dir", tmp_path / "empty", check=False)
    assert proc.returncode == 1 and "holds neither a model.json" in proc.stderr


def test_mandarin_character_alphabet_end_to_end(tmp_path):
    """A Mandarin corpus: alphabet built from the CSVs, trained and tested with character transcripts."""
    import shutil
    if shutil.which("espeak-ng") is None or not os.path.exists("/usr/share/games/fortunes/tang300"):
        pytest.skip("needs espeak-ng and fortunes-zh (make install)")
    corpus = tmp_path / "cmn"
    subprocess.run([sys.executable, str(ROOT / "bin" / "import_espeak.py"), str(corpus), "--language",
                    "cmn", "--train_utterances", "24", "--dev_utterances", "4", "--test_utterances", "4",
                    "-j", "2", "--log_level", "2"], check=True)
    alphabet = tmp_path / "alphabet.txt"
    subprocess.run([sys.executable, str(ROOT / "bin" / "build_alphabet.py"), "--csv",
                    f"{corpus / 'train.csv'},{corpus / 'dev.csv'},{corpus / 'test.csv'}",
                    "--output", str(alphabet)], check=True, capture_output=True)
    from ds_ctcdecoder.alphabet import Alphabet
    labels = Alphabet.from_file(str(alphabet)).labels
    assert len(labels) > 50 and all("\u4e00" <= c <= "\u9fff" for c in labels)
    proc = run_trainer(*csvs(corpus), "--alphabet_config_path", alphabet, "--train_batch_size", 8,
                       "--epochs", 2, "--checkpoint_dir", tmp_path / "ck", "--test_output_file",
                       tmp_path / "out.json", *TINY_FLAGS)
    assert "Test on test.csv - WER:" in proc.stderr
    rows = json.loads((tmp_path / "out.json").read_text())
    assert len(rows) == 4 and all(set(r["res"]) <= set(labels) for r in rows)
    assert all(" " not in r["src"] for r in rows)


def test_testing_with_a_scorer_and_tuning_it(tiny_corpus, tmp_path):
    """--scorer_path switches the test to beam search with the LM; lm_optimizer writes alpha/beta back."""
    from test_ctcdecode import KENLM_BINS, build_lm

    from ds_ctcdecoder.package import read_package
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    lines = [line.split(",", 2)[2] for line in (tiny_corpus / "train.csv").read_text().splitlines()[1:]]
    lm = build_lm(tmp_path, lines)
    scorer = tmp_path / "kenlm.scorer"
    subprocess.run([str(ROOT / ".venv" / "bin" / "generate_scorer_package"), "--alphabet",
                    tiny_corpus / "alphabet.txt", "--lm", lm / "lm.binary", "--vocab", lm / "vocab-500.txt",
                    "--package", scorer, "--default_alpha", "0.5", "--default_beta", "1.0"], check=True)
    ck = tmp_path / "ck"
    common = ["--alphabet_config_path", tiny_corpus / "alphabet.txt", "--checkpoint_dir", ck, *TINY_FLAGS]
    run_trainer("--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8, "--epochs", 1, *common)
    proc = run_trainer("--test_files", tiny_corpus / "test.csv", "--scorer_path", scorer, "--beam_width", 32,
                       "--test_output_file", tmp_path / "out.json", *common)
    assert "Testing with beam search of width 32 with scorer" in proc.stderr
    vocabulary = set((lm / "vocab-500.txt").read_text().split())
    for row in json.loads((tmp_path / "out.json").read_text()):
        assert set(row["res"].split()) <= vocabulary  # the lexicon constrains every transcript
    bad = run_trainer("--test_files", tiny_corpus / "test.csv", "--scorer_path", lm / "lm.binary", *common,
                      check=False)
    assert bad.returncode == 1 and "lm.binary: a bare KenLM model" in bad.stderr and "Traceback" not in bad.stderr
    args = ["--test_files", tiny_corpus / "dev.csv", "--scorer_path", scorer, "--n_trials", 3, "--beam_width", 16,
            "--update_scorer", *common]
    tuned = subprocess.run([sys.executable, str(ROOT / "lm_optimizer.py"), *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "Best params: lm_alpha=" in tuned.stderr
    assert (read_package(str(scorer)).alpha, read_package(str(scorer)).beta) != (0.5, 1.0)
