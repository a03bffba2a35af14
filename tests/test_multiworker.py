"""Synchronous training on several processes (MultiWorkerMirroredStrategy via TF_CONFIG, launched by
bin/run-multiworker.sh) and on 2 logical CPU devices: the same global batch gives the same training as
one process on one device, and checkpoints move freely between them."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_FLAGS, run_trainer


def flags(corpus, *extra):
    # no dropout: its masks are drawn per device, so they would differ between the set-ups
    return [*TINY_FLAGS, "--dropout_rate", 0, "--optimizer", "sgd", "--learning_rate", 0.002,
            "--train_files", corpus / "train.csv", "--dev_files", corpus / "dev.csv", *extra]


def run_workers(n, *args, timeout=600):
    proc = subprocess.run(["bash", str(ROOT / "bin" / "run-multiworker.sh"), "--local", str(n), "--",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PY": sys.executable})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def last_checkpoint(directory) -> dict:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(directory)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE") and "save_counter" not in name}


def assert_same_training(a: dict, b: dict, atol=2e-4):
    assert a.keys() == b.keys()
    history = next(k for k in a if k.startswith("counters") and "history" in k)
    # rows of (epoch, train loss, dev loss, dev WER, dev CER)
    np.testing.assert_allclose(a[history], b[history], rtol=1e-3)
    for name in a:
        if name.startswith("model"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-3, atol=atol, err_msg=name)


def test_two_workers_and_two_devices_train_as_one_process(tiny_corpus, tmp_path):
    """Global batch 8: 1 process x 8, 2 worker processes x 4, 2 logical CPUs x 4."""
    one, two, mirrored = tmp_path / "one", tmp_path / "two", tmp_path / "mirrored"
    run_trainer(*flags(tiny_corpus, "--epochs", 1, "--train_batch_size", 8, "--checkpoint_dir", one))
    workers = run_workers(2, *flags(tiny_corpus, "--epochs", 1, "--train_batch_size", 4,
                                    "--checkpoint_dir", two))
    log = workers.stderr
    assert "[worker 0] INFO Global batch: 8 (4 per device x 2 devices on 2 hosts)" in log
    assert "worker 1 of 2 host(s), 2 replica(s)" in log and "worker 0 of 2 host(s) (chief)" in log
    assert "[worker 0] INFO Saved new best validating model" in log
    assert "[worker 1] INFO Saved" not in log  # only the chief writes
    run_trainer(*flags(tiny_corpus, "--epochs", 1, "--train_batch_size", 4, "--cpu_devices", 2,
                       "--checkpoint_dir", mirrored))
    reference = last_checkpoint(one)
    assert_same_training(reference, last_checkpoint(two))
    assert_same_training(reference, last_checkpoint(mirrored))

    # each one's checkpoint resumes in the other for a second epoch: both end at the same weights
    shutil.copytree(one, tmp_path / "one_then_two")
    shutil.copytree(two, tmp_path / "two_then_one")
    resumed = run_workers(2, *flags(tiny_corpus, "--epochs", 2, "--train_batch_size", 4,
                                    "--checkpoint_dir", tmp_path / "one_then_two",
                                    "--test_files", tiny_corpus / "test.csv", "--export_dir", tmp_path / "export"))
    assert "[worker 0] INFO Resuming at epoch 2" in resumed.stderr
    assert "[worker 1] INFO Resuming at epoch 2" in resumed.stderr
    assert "[worker 0] INFO Test on test.csv" in resumed.stderr  # the chief tests...
    assert "[worker 1] INFO Test on" not in resumed.stderr  # ...alone
    assert (tmp_path / "export" / "output_graph.pb").exists()  # and exports
    single = run_trainer(*flags(tiny_corpus, "--epochs", 2, "--train_batch_size", 8,
                                "--checkpoint_dir", tmp_path / "two_then_one"))
    assert "Resuming at epoch 2" in single.stderr
    assert_same_training(last_checkpoint(tmp_path / "one_then_two"), last_checkpoint(tmp_path / "two_then_one"))


def test_bad_tf_config_is_a_clear_error(tmp_path):
    proc = run_trainer("--train_files", tmp_path / "x.csv", "--checkpoint_dir", tmp_path, check=False,
                       env={"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", '
                                         '"index": 5}}'})
    assert proc.returncode == 1
    assert "TF_CONFIG cannot be used" in proc.stderr and "Traceback" not in proc.stderr


def child_processes(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return children


def test_a_signal_to_one_worker_stops_every_worker_after_a_checkpoint(tiny_corpus, tmp_path):
    ck = tmp_path / "ck"
    args = flags(tiny_corpus, "--epochs", 100, "--train_batch_size", 4, "--checkpoint_dir", ck,
                 "--checkpoint_secs", 1)
    proc = subprocess.Popen(["bash", str(ROOT / "bin" / "run-multiworker.sh"), "--local", "2", "--",
                             *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PY": sys.executable})
    try:
        deadline = time.time() + 300
        while not (ck / "checkpoint").exists() and time.time() < deadline:
            time.sleep(0.5)
        assert (ck / "checkpoint").exists(), "no checkpoint written"
        second = [pid for pid in child_processes(proc.pid)
                  if b'"index": 1' in open(f"/proc/{pid}/environ", "rb").read()]
        assert len(second) == 1
        os.kill(second[0], signal.SIGTERM)  # a preempted host, say
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "[worker 1] WARNING Received SIGTERM" in err
    assert "[worker 0] WARNING Another host was signalled: saving a checkpoint and stopping" in err
    assert "Traceback" not in err
    assert last_checkpoint(ck)  # the chief's last checkpoint is complete and loads


@pytest.mark.slow
def test_two_workers_train_the_demo_geometry_as_one_process(tiny_corpus, tmp_path):
    """The demo's geometry (the flag defaults: 512-filter conv, 3 bidirectional GRU layers of 256), 4 steps."""
    common = ["--dropout_rate", 0, "--optimizer", "sgd", "--learning_rate", 0.0005, "--epochs", 1,
              "--limit_train", 32, "--train_files", tiny_corpus / "train.csv", "--noshow_progressbar",
              "--summary_dir", ""]
    run_trainer(*common, "--train_batch_size", 8, "--checkpoint_dir", tmp_path / "one")
    run_workers(2, *common, "--train_batch_size", 4, "--checkpoint_dir", tmp_path / "two")
    one, two = last_checkpoint(tmp_path / "one"), last_checkpoint(tmp_path / "two")
    assert one["model/rnn_3/input_kernel".replace("/", ".S") + "/.ATTRIBUTES/VARIABLE_VALUE"].shape == (512, 1536)
    assert_same_training(one, two)
