#!/usr/bin/env python3
"""Run a trained model over a CSV once and save its per-frame probabilities for decoder benchmarks.

    .venv/bin/python bench/dump_logits.py --checkpoint_dir runs/demo/checkpoints \
        --test_files data/espeak-en/test.csv --dump_to .cache/bench/clean.npz [--dump_checkpoint train-156]

--dump_checkpoint picks one checkpoint of the directory by name (an early one gives the noisier
outputs of a half-trained model); without it --load_evaluate applies (best, then last).
The .npz holds every utterance's softmax rows back to back (``probs``, ``offsets``), the reference
``transcripts``, the audio ``seconds`` and the alphabet ``labels`` (blank last).
"""
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from deepspeech_training import evaluate as ev  # noqa: E402
from deepspeech_training.data import load_samples  # noqa: E402
from deepspeech_training.decoding import softmax  # noqa: E402
from deepspeech_training.distribute import make_strategy  # noqa: E402
from deepspeech_training.flags import FLAGS, checkpoint_dirs, define_flags  # noqa: E402
from deepspeech_training.run import files, load_for_inference  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402


def staged_checkpoint(load_dir: str, name: str) -> str:
    """A directory whose 'last' checkpoint is ``load_dir/name`` (model.json copied beside it)."""
    target = os.path.abspath(os.path.join(load_dir, name))
    if not os.path.exists(target + ".index"):
        raise ValueError(f"no checkpoint {name!r} in {load_dir}")
    staged = tempfile.mkdtemp(prefix="dump_logits_")
    shutil.copy(os.path.join(load_dir, "model.json"), staged)
    with open(os.path.join(staged, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{target}"\n')
    return staged


def main(argv):
    del argv
    setup_logging(FLAGS.log_level)
    load_dir = checkpoint_dirs()[0]
    if FLAGS.dump_checkpoint:
        load_dir = staged_checkpoint(load_dir, FLAGS.dump_checkpoint)
        FLAGS.load_evaluate = "last"
    strategy = make_strategy(FLAGS.cpu_devices)
    model, features, alphabet = load_for_inference(strategy, load_dir)
    [csv] = files(FLAGS.test_files)
    samples = load_samples([csv], alphabet=alphabet, features=features, limit=FLAGS.limit_test,
                           time_stride=model.model_config.time_stride, fail_fast=True, progress=False)
    rows = {}
    for group in ev.infer(model, strategy, samples, os.path.basename(csv), features, FLAGS.test_batch_size,
                          FLAGS.show_progressbar):
        for logits, _loss, index in group:
            rows[index] = softmax(logits).astype(np.float32)
    order = sorted(rows)
    probs = [rows[i] for i in order]
    np.savez_compressed(
        FLAGS.dump_to, probs=np.concatenate(probs), offsets=np.cumsum([0] + [len(p) for p in probs]),
        transcripts=np.array([samples[i].transcript for i in order]),
        seconds=np.array([samples[i].duration for i in order]),
        labels=np.array(alphabet.labels))
    log.info("Wrote %d utterances (%d frames) to %s", len(order), sum(len(p) for p in probs), FLAGS.dump_to)
    return 0


if __name__ == "__main__":
    define_flags()
    flags.DEFINE_string("dump_to", "logits.npz", "the .npz file to write")
    flags.DEFINE_string("dump_checkpoint", "", "a checkpoint of --checkpoint_dir by name (e.g. train-156)")
    app.run(lambda argv: sys.exit(main(argv)))
