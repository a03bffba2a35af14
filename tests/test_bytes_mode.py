"""Mozilla's bytes output mode end to end: --bytes_output_mode trains, tests with a bytes-mode scorer and
exports a model the client decodes to valid UTF-8, on a tiny Mandarin espeak-ng corpus."""
import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
from conftest import ROOT, TINY_FLAGS, run_trainer


@pytest.mark.slow
def test_bytes_output_mode_trains_tests_and_exports(tmp_path):
    import shutil

    from test_ctcdecode import KENLM_BINS, build_lm
    if shutil.which("espeak-ng") is None or not os.path.exists("/usr/share/games/fortunes/tang300"):
        pytest.skip("needs espeak-ng and fortunes-zh (make install)")
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    corpus = tmp_path / "cmn"
    subprocess.run([sys.executable, str(ROOT / "bin" / "import_espeak.py"), str(corpus), "--language", "cmn",
                    "--train_utterances", "24", "--dev_utterances", "4", "--test_utterances", "4", "-j", "2",
                    "--log_level", "2"], check=True)
    rows = [line.split(",", 2) for name in ("train", "dev", "test")
            for line in (corpus / f"{name}.csv").read_text(encoding="utf-8").splitlines()[1:]]
    lm = build_lm(tmp_path, [r[2] for r in rows], "--character_level")
    scorer = tmp_path / "zh.bytes.scorer"
    subprocess.run([str(ROOT / ".venv" / "bin" / "generate_scorer_package"), "--lm", lm / "lm.binary",
                    "--vocab", lm / "vocab-500.txt", "--package", scorer, "--default_alpha", "0.75",
                    "--default_beta", "1.0", "--force_bytes_output_mode"], check=True, capture_output=True)
    vocabulary = set((lm / "vocab-500.txt").read_text(encoding="utf-8").split())
    ck, export = tmp_path / "ck", tmp_path / "export"
    proc = run_trainer("--train_files", corpus / "train.csv", "--dev_files", corpus / "dev.csv",
                       "--test_files", corpus / "test.csv", "--bytes_output_mode", "--alphabet_config_path",
                       tmp_path / "no-such-alphabet.txt", "--train_batch_size", 8, "--epochs", 2,
                       "--checkpoint_dir", ck, "--scorer_path", scorer, "--beam_width", 16,
                       "--test_output_file", tmp_path / "out.json", "--export_dir", export, *TINY_FLAGS)
    assert "Test on test.csv - WER:" in proc.stderr and "Testing with beam search of width 16 with scorer" in proc.stderr
    description = json.loads((ck / "model.json").read_text())
    assert description["bytes_output_mode"] and description["model"]["num_classes"] == 256
    results = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert len(results) == 4 and all(set(r["res"]) <= vocabulary for r in results)
    # model.json, not the flags, makes a later test a bytes-mode one; greedy output is valid UTF-8
    again = run_trainer("--test_files", corpus / "test.csv", "--checkpoint_dir", ck, "--beam_width", 0,
                        "--test_output_file", tmp_path / "greedy.json", *TINY_FLAGS)
    assert "Testing with greedy decoding" in again.stderr
    for row in json.loads((tmp_path / "greedy.json").read_text(encoding="utf-8")):
        assert "\ufffd" not in row["res"] and row["res"].encode("utf-8").decode("utf-8") == row["res"]
    import deepspeech
    model = deepspeech.Model(str(export / "output_graph.pb"))
    assert model._impl.utf8  # the export says bytes mode (metadata "utf8": true)
    with wave.open(str(corpus / rows[-1][0])) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    plain = model.stt(audio)
    assert "\ufffd" not in plain
    model.enableExternalScorer(str(scorer))
    metadata = model.sttWithMetadata(audio, 2)
    for transcript in metadata.transcripts:
        assert all(len(token.text) == 1 and token.text in vocabulary for token in transcript.tokens)
    assert str(metadata.transcripts[0]) == model.stt(audio)
