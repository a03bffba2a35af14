"""Mozilla DeepSpeech 0.9.3's CI scripts (tests/mozilla_ci_scripts.py), unchanged, in a copy of the project.

The copy (tracked and new files, the decoder library and KenLM linked) gets Mozilla's scripts as
bin/run-tc-*.sh and its data/smoke_test from bin/make_smoke_test.sh. The scripts write fixed paths under
/tmp (/tmp/ckpt, /tmp/train, /tmp/resume.log...), so each runs in a mount namespace (``unshare``) whose /tmp
is a private directory holding the copy at /tmp/ds. They run in the order of Mozilla's taskcluster scripts,
sharing what those share (the one-clip model in /tmp/ckpt), and the tests assert what Mozilla's CI asserts:
exit status 0, the lines its scripts grep, the exported files and tc-asserts.sh's exact transcript.
"""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from mozilla_ci_scripts import SCRIPTS

TRANSCRIPT = "she had your dark suit in greasy wash water all year"  # taskcluster/tc-asserts.sh
EPOCHS = 249  # tc-train-tests.sh: ./bin/run-tc-ldc93s1_new.sh 249 "${sample_rate}"
BYTES_EPOCHS = 200  # tc-train-extra-tests.sh: ./bin/run-tc-ldc93s1_new_bytes.sh 200 "${sample_rate}"
RATE = "16000"
DECODER_LIB = Path("native_client/ctcdecode/ds_ctcdecoder/libctcdecode.so")
KENLM = Path(".cache/kenlm")
SHARED = Path("/tmp/ds")  # where the copy is inside the namespace
IN_NAMESPACE = 'mount --bind "$0" /tmp && cd /tmp/ds && exec "$@"'


def _missing_tools() -> str:
    missing = [t for t in ("espeak-ng", "sox", "bible", "unshare") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} (make install)"
    if not (ROOT / DECODER_LIB).exists() or not (ROOT / KENLM / "bin" / "lmplz").exists():
        return "needs the CTC decoder library and KenLM's tools (make install)"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /tmp"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return "Mozilla's scripts write /tmp/ckpt etc.: needs a private /tmp (unshare -rm, user namespaces)"
    return ""


def copy_project(dest: Path) -> None:
    """The project's tracked and new (not ignored) files; the decoder library and KenLM as links."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, dest / name
        if not source.is_file() or name.split("/")[0] == ".venv":
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for link in (DECODER_LIB, KENLM):
        (dest / link).parent.mkdir(parents=True, exist_ok=True)
        (dest / link).symlink_to((ROOT / link).resolve())


class Sandbox:
    """A private /tmp (``tmp`` here) holding the project copy at /tmp/ds, where Mozilla's scripts run."""

    def __init__(self, tmp: Path):
        self.tmp, self.project = tmp, tmp / "ds"
        copy_project(self.project)
        for name, text in SCRIPTS.items():
            (self.project / "bin" / name).write_text(text)
            (self.project / "bin" / name).chmod(0o755)
        code = [str(SHARED / p) for p in ("training", "native_client/python", "native_client/ctcdecode")]
        (tmp / "home").mkdir()  # a fresh HOME: default directories (checkpoints, summaries) start empty
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
        self.env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "HOME": "/tmp/home", "PYTHONPATH": os.pathsep.join(code), "PY": "python",
                    "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(self, *command, timeout=600, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", IN_NAMESPACE, str(self.tmp), *map(str, command)],
                              env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-5000:]}")
        return proc

    def script(self, name, *args, **kwargs) -> subprocess.CompletedProcess:
        return self.run(f"./bin/{name}", *args, **kwargs)

    def transcribe(self, model: str, *extra: str) -> str:
        """Our client (deepspeech) on the one clip with an exported model -> its transcript."""
        return self.run("python", "-m", "deepspeech.client", "--model", model, "--audio",
                        "data/smoke_test/LDC93S1.wav", *extra).stdout.strip()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    box = Sandbox(tmp_path_factory.mktemp("mozilla_tmp"))
    box.run("bin/make_smoke_test.sh", timeout=300)
    # as in Mozilla's CI, data/smoke_test has the clip but no CSV: the scripts' importer step makes it
    (box.project / "data" / "smoke_test" / "ldc93s1.csv").unlink()
    return box


@pytest.fixture(scope="module")
def trained(sandbox):
    """tc-train-tests.sh's first step: the one-clip model in /tmp/ckpt, tested and exported to /tmp/train."""
    (sandbox.tmp / "train").mkdir()
    (sandbox.tmp / "train_tflite").mkdir()  # tc-train-tests.sh makes both first
    return sandbox.script("run-tc-ldc93s1_new.sh", EPOCHS, RATE, timeout=900)


def test_smoke_test_layout(sandbox):
    data = sandbox.project / "data" / "smoke_test"
    for name in ("LDC93S1.wav", "LDC93S1.txt", "pruned_lm.scorer", "pruned_lm.bytes.scorer", "vocab.txt",
                 "vocab.pruned.txt", "vocab.pruned.bytes.txt", "LDC93S1_pcms16le_1_8000.wav",
                 "russian_sample_data/ru.wav", "russian_sample_data/ru.csv", "russian_sample_data/alphabet.ru"):
        assert (data / name).stat().st_size > 0, name
    assert re.fullmatch(r"0 \d+ She had your dark suit in greasy wash water all year\.\n",
                        (data / "LDC93S1.txt").read_text())
    assert set(TRANSCRIPT.split()) <= set((data / "vocab.pruned.txt").read_text().split())
    assert "d a r k" in (data / "vocab.pruned.bytes.txt").read_text().splitlines()


def test_train_test_export_and_exact_transcript(sandbox, trained):
    out = trained.stdout
    assert (sandbox.project / "data" / "smoke_test" / "ldc93s1.csv").is_file()  # the importer step ran
    assert f"I Finished training epoch {EPOCHS} - loss:" in out
    assert re.search(r"I Saved new best validating model with loss [\d.]+ to: /tmp/ckpt/best_dev-\d+", out)
    assert re.search(r"I Test on ldc93s1\.csv - WER: 0\.000000, CER: 0\.000000, loss: [\d.]+", out), out[-3000:]
    assert f' - res: "{TRANSCRIPT}"' in out
    assert "I Models exported at /tmp/train" in out
    assert any((sandbox.tmp / "ldc93s1_cache").iterdir())  # --feature_cache '/tmp/ldc93s1_cache'
    assert sandbox.transcribe("/tmp/train/output_graph.pb") == TRANSCRIPT
    assert sandbox.transcribe("/tmp/train/output_graph.pb", "--scorer", "data/smoke_test/pruned_lm.scorer") \
        == TRANSCRIPT


def test_rerun_tflite_export_and_resume(sandbox, trained):
    """tc-train-tests.sh after the training: the same script again (1 epoch, cached features), the TFLite
    and zip exports, then run-tc-ldc93s1_checkpoint.sh, which must resume from the best checkpoint."""
    again = sandbox.script("run-tc-ldc93s1_new.sh", 1, RATE)
    assert "I Loading best validating checkpoint from /tmp/ckpt/best_dev-" in again.stdout
    assert f' - res: "{TRANSCRIPT}"' in again.stdout
    tflite = sandbox.script("run-tc-ldc93s1_tflite.sh", RATE)
    assert "I Exported packaged model /tmp/train_tflite/en-us.zip" in tflite.stdout
    assert (sandbox.tmp / "train_tflite" / "output_graph.tflite").stat().st_size > 0
    with zipfile.ZipFile(sandbox.tmp / "train_tflite" / "en-us.zip") as archive:
        names = set(archive.namelist())
    assert {"output_graph.tflite", "pruned_lm.scorer"} <= names and any(n.endswith(".md") for n in names)
    assert sandbox.transcribe("/tmp/train_tflite/output_graph.tflite") == TRANSCRIPT
    resumed = sandbox.script("run-tc-ldc93s1_checkpoint.sh")
    log = (sandbox.tmp / "resume.log").read_text()
    assert "Loading best validating checkpoint from /tmp/ckpt/best_dev-" in log and resumed.returncode == 0


def test_single_shot_inference(sandbox, trained):
    """Its first command resumes the model of /tmp/ckpt (Mozilla's CI trains a fresh one for 1 epoch
    there); the second prints the transcript."""
    proc = sandbox.script("run-tc-ldc93s1_singleshotinference.sh")
    assert proc.stdout.strip().splitlines()[-1] == TRANSCRIPT


def test_metrics_files(sandbox):
    proc = sandbox.script("run-tc-ldc93s1_new_metrics.sh", 2, RATE)
    for epoch in (1, 2):
        assert re.search(rf"I Metrics for epoch {epoch} on \./data/smoke_test/ldc93s1\.csv - loss: [\d.]+",
                         proc.stdout), proc.stdout[-3000:]
    assert (sandbox.tmp / "train_metrics" / "output_graph.pb").stat().st_size > 0


@pytest.mark.slow
def test_bytes_output_mode(sandbox):
    """tc-train-extra-tests.sh's bytes-mode steps: train (UTF-8 byte outputs), export TFLite, resume. Its
    CI checks no transcript: the character scorer (Mozilla's design, no space in its vocabulary) drops
    the spaces; greedy decoding of the export gets the sentence."""
    proc = sandbox.script("run-tc-ldc93s1_new_bytes.sh", BYTES_EPOCHS, RATE, timeout=900)
    assert re.search(r"I Test on ldc93s1\.csv - WER: [\d.]+, CER: [\d.]+, loss: [\d.]+", proc.stdout)
    assert sandbox.transcribe("/tmp/train_bytes/output_graph.pb") == TRANSCRIPT
    sandbox.script("run-tc-ldc93s1_new_bytes_tflite.sh", RATE)
    assert (sandbox.tmp / "train_bytes_tflite" / "output_graph.tflite").stat().st_size > 0
    sandbox.script("run-tc-ldc93s1_checkpoint_bytes.sh")
    assert "Loading best validating checkpoint from /tmp/ckpt_bytes/best_dev-" in \
        (sandbox.tmp / "resume.log").read_text()


def test_graph_augmentations(sandbox):
    """No --checkpoint_dir: the default one, under the (fresh) HOME."""
    proc = sandbox.script("run-tc-graph_augmentations.sh")
    assert "I Finished training epoch 1 - loss:" in proc.stdout
    assert (sandbox.tmp / "home" / ".local" / "share" / "deepspeech" / "checkpoints" / "model.json").is_file()


@pytest.mark.slow
def test_transfer_learning_to_russian(sandbox):
    proc = sandbox.script("run-tc-transfer.sh", timeout=900)
    assert proc.stdout.count("I Test on ru.csv - WER:") == 3  # evaluate.py once per --load_train
    assert "I Initializing variable: logits/kernel" in proc.stdout  # --drop_source_layers 1


@pytest.mark.slow  # ~1 min; the augmentations themselves are tested in test_augment.py
def test_sample_augmentations(sandbox):
    if not all((ROOT / "bin" / f).exists() for f in ("play.py", "compare_samples.py")):
        pytest.skip("bin/play.py and bin/compare_samples.py: other worker")
    sandbox.script("run-tc-sample_augmentations.sh")


@pytest.mark.parametrize("name, args", [  # the two trainings take 2-2.5 min each on 2 cores: slow
    pytest.param("run-tc-ldc93s1_new_sdb.sh", (220, RATE), marks=pytest.mark.slow),
    pytest.param("run-tc-ldc93s1_new_sdb_csv.sh", (109, RATE), marks=pytest.mark.slow),
    ("run-tc-ldc93s1_checkpoint_sdb.sh", ())])
def test_sdb_scripts(sandbox, name, args):
    if not (ROOT / "training" / "deepspeech_training" / "sdb.py").exists():
        pytest.skip("SDB: other worker")
    proc = sandbox.script(name, *args, timeout=900)
    if "checkpoint" in name:
        assert "Loading best validating checkpoint from /tmp/ckpt_sdb/" in (sandbox.tmp / "resume.log").read_text()
    else:
        assert f' - res: "{TRANSCRIPT}"' in proc.stdout


@pytest.mark.slow
def test_run_ldc93s1_overfits_with_the_default_model(sandbox):
    """bin/run-ldc93s1.sh, Mozilla's command line (--n_hidden 100 --epochs 200, no dev set) with the default
    Deep Speech 2 geometry: the clip spoken by espeak-ng, imported, and learnt word for word."""
    proc = sandbox.run("bin/run-ldc93s1.sh", timeout=900)
    assert (sandbox.project / "data" / "ldc93s1" / "ldc93s1.csv").is_file()
    assert "I Finished training epoch 200 - loss:" in proc.stdout
    assert re.search(r"I Test on ldc93s1\.csv - WER: 0\.000000, CER: 0\.000000", proc.stdout), proc.stdout[-3000:]
    assert f' - res: "{TRANSCRIPT}"' in proc.stdout
    assert (sandbox.tmp / "home" / ".local" / "share" / "deepspeech" / "ldc93s1" / "model.json").is_file()
