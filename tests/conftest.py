"""Shared test harness: tiny model configs, a tiny espeak-ng corpus, and a trainer runner."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

from deepspeech_training.model import ConvSpec, ModelConfig  # noqa: E402

TINY_FLAGS = ["--n_hidden", "64", "--conv_type", "1d", "--conv_layers", "64:5:2", "--rnn_layers", "1",
              "--noshow_progressbar", "--report_count", "1", "--summary_dir", ""]


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws the same random weights and data on every machine: a random model's
    transcripts are near-ties, and an unlucky draw must not turn into a failure elsewhere."""
    import keras

    keras.utils.set_random_seed(0)


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough to build and step in well under a second."""
    base = dict(n_features=33, num_classes=29, conv=(ConvSpec(8, (5, 9), (2, 2)),), rnn_layers=1,
                rnn_units=16, fc_units=16, dropout=0.0)
    base.update(overrides)
    return ModelConfig(**base)


needs_espeak = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("espeak-ng", "sox", "bible")),
    reason="needs espeak-ng, sox and bible-kjv (make install)")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A small English corpus spoken by espeak-ng: 48 train, 8 dev, 8 test utterances."""
    if any(shutil.which(tool) is None for tool in ("espeak-ng", "sox", "bible")):
        pytest.skip("needs espeak-ng, sox and bible-kjv (make install)")
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(ROOT / "bin" / "import_espeak.py"), str(out), "--seed", "3",
                    "--train_utterances", "48", "--dev_utterances", "8", "--test_utterances", "8",
                    "-j", "2", "--log_level", "2"], check=True)
    return out


def run_trainer(*args, timeout=600, check=True, env=None, script="DeepSpeech.py"):
    """./DeepSpeech.py (or another top-level ``script``) with ``args`` -> CompletedProcess (stdout and
    stderr as text)."""
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc
