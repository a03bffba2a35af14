"""Checkpoints in Mozilla's layout, written atomically, describing their own model.

``save_dir`` holds ``train-<step>.*`` with the ``checkpoint`` state file (the last ``max_to_keep``),
``best_dev-<step>.*`` with ``best_dev_checkpoint`` (the best by dev loss), ``model.json`` (features,
geometry, alphabet) and ``flags.txt``. A checkpoint's data and index files are written before the state file
is swapped in (write-then-rename), so a run killed mid-write still loads the previous one.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from .mozilla import checkpoint as release
from .transfer import check_output_layer, geometry_differences, layer_of
from .util.log import log, mozilla_log

DESCRIPTION = "model.json"
# Mozilla DeepSpeech 0.9's log lines on loading (its scripts grep them), per --load_* kind
LOADING = {"best": "Loading best validating checkpoint from %s", "last": "Loading most recent checkpoint from %s"}
NOT_FOUND = {"best": "Could not find best validating checkpoint.", "last": "Could not find most recent checkpoint."}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with this model; the message says why."""


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_description(checkpoint_dir: str) -> dict | None:
    path = os.path.join(checkpoint_dir, DESCRIPTION)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _key(variable) -> str:
    return variable.path.split("/", 1)[-1]  # drop the model's own name


def _stored_key(key: str) -> str:
    """The name tf.train.Checkpoint gives the model variable ``key`` in the checkpoint file."""
    return f"model/{key}".replace("/", ".S") + "/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointStore:
    """Saves and restores model weights, optimizer state and training counters."""

    def __init__(self, model, optimizer, counters: dict, load_dir: str, save_dir: str,
                 max_to_keep: int = 5, description: dict | None = None):
        """``description``: this model's model.json, to say how a checkpoint that does not fit differs."""
        self.model, self.optimizer, self.load_dir, self.save_dir = model, optimizer, load_dir, save_dir
        self.description = description
        objects = {f"model/{_key(v)}": v for v in model.variables}
        if optimizer is not None:
            objects.update({f"optimizer/{v.path}": v for v in optimizer.variables})
        objects.update({f"counters/{k}": v for k, v in counters.items()})
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.max_to_keep = {"last": max(max_to_keep, 1), "best": 1}
        if save_dir:
            os.makedirs(save_dir, exist_ok=True)

    @staticmethod
    def find(directory: str, which: str) -> str | None:
        """Path of the 'best' or 'last' checkpoint in ``directory``, or None."""
        state = "best_dev_checkpoint" if which == "best" else "checkpoint"
        if not directory or not os.path.isdir(directory):
            return None
        return release.latest_checkpoint(directory, state)

    def resolve(self, which: str) -> str | None:
        """Mozilla's --load_train / --load_evaluate: auto tries best, then last (logged as Mozilla)."""
        if which == "init":
            mozilla_log.info("Initializing all variables.")
            return None
        order = {"auto": ("best", "last"), "best": ("best",), "last": ("last",)}[which]
        for kind in order:
            path = self.find(self.load_dir, kind)
            if path:
                mozilla_log.info(LOADING[kind], path)
                return path
            mozilla_log.info(NOT_FOUND[kind])
        if which != "auto":
            raise CheckpointError(f"no {which} checkpoint in {self.load_dir!r}")
        return None

    def check_shapes(self, path: str, dropped: tuple[str, ...] = (), new_run: bool = False) -> None:
        """Fail naming the first kept layer variable whose shape differs from the checkpoint's, with the
        geometry fields that differ by the model.json beside it, or why its output layer cannot be kept."""
        source = read_description(os.path.dirname(path))
        output_layer = self.model.layers_from_output()[0].name
        if self.description:
            reason = check_output_layer(source, self.description["alphabet"], list(dropped), output_layer)
            if reason:
                raise CheckpointError(f"{path}: {reason}" + ("" if new_run else (
                    " in a new run (--load_checkpoint_dir with its directory, --save_checkpoint_dir "
                    "another)")))
        stored = dict(tf.train.list_variables(path))
        differences = "; ".join(geometry_differences(source, self.description))
        why = f": {differences}" if differences else f" (see {DESCRIPTION} beside it)"
        for v in self.model.variables:
            key = _key(v)
            if layer_of(key) in dropped:
                continue
            if _stored_key(key) not in stored:
                raise CheckpointError(f"{path}: has no weights for layer variable {key}: the checkpoint "
                                      f"was made with another geometry{why}")
            shape = list(stored[_stored_key(key)])
            if shape != list(v.shape):
                hint = (" (the output layer: another alphabet needs --drop_source_layers 1)"
                        if layer_of(key) == output_layer and not differences else "")
                raise CheckpointError(
                    f"{path}: layer variable {key} has shape {shape} in the checkpoint but "
                    f"{list(v.shape)} in this model{hint}: the checkpoint was made with another "
                    f"geometry{why}")

    def restore(self, which: str, with_optimizer: bool = True) -> str | None:
        path = self.resolve(which)
        return self._read(path, with_optimizer) if path else None

    def restore_for_training(self, which: str, dropped: tuple[str, ...] = ()) -> tuple[str | None, bool]:
        """-> (checkpoint loaded, whether it continues this run).

        With a --load_checkpoint_dir other than the --save_checkpoint_dir, the loaded weights start a
        new run (fine-tuning): only the model's weights are read, without the layers in ``dropped``, and
        the optimizer and counters stay fresh. Once that run has saved into its own directory, the same
        command resumes from there instead (all state, nothing dropped again), so a killed fine-tuning
        run loses nothing either.
        """
        if which == "init":
            mozilla_log.info("Initializing all variables.")
            return None, False
        separate = bool(self.save_dir) and (
            not self.load_dir or os.path.realpath(self.load_dir) != os.path.realpath(self.save_dir))
        if not separate:
            path = self.restore(which)
            if path is None:
                mozilla_log.info("Initializing all variables.")
            return path, True
        own = self.find(self.save_dir, "last")
        if own:
            mozilla_log.info(LOADING["last"], own)
            return self._read(own, True), True
        path = self.resolve(which)
        if path:
            self.read_weights(path, dropped)
        else:
            mozilla_log.info("Initializing all variables.")
        return path, False

    def read_weights(self, path: str, dropped: tuple[str, ...] = ()) -> None:
        """Assign the model's variables from ``path``, all but the layers in ``dropped``, which keep their
        fresh values. Every value is read before any is assigned, so a failure changes nothing."""
        if release.is_release_checkpoint(path):
            self._check_release_alphabet(path, dropped)
            release.import_release(path, self.model, None, dropped)
            log.info("Loaded checkpoint %s: the weights%s, not the optimizer state", path,
                     f" except {', '.join(dropped)}'s" if dropped else "")
            return
        self.check_shapes(path, dropped, new_run=True)
        reader = tf.train.load_checkpoint(path)
        values = [(v, reader.get_tensor(_stored_key(_key(v)))) for v in self.model.variables
                  if layer_of(_key(v)) not in dropped]
        for v, value in values:
            mozilla_log.info("Loading variable from checkpoint: %s", _key(v))
            v.assign(value)
        for v in self.model.variables:
            if layer_of(_key(v)) in dropped:
                mozilla_log.info("Initializing variable: %s", _key(v))
        log.info("Loaded checkpoint %s: the weights%s, not the optimizer state", path,
                 f" except {', '.join(dropped)}'s" if dropped else "")

    def _check_release_alphabet(self, path: str, dropped: tuple[str, ...]) -> None:
        """A release checkpoint's output layer fits this alphabet only if it has as many classes (its
        labels are unknown unless alphabet.txt lies beside it)."""
        labels = None
        alphabet_file = release.release_alphabet_file(path)
        if alphabet_file:
            from ds_ctcdecoder.alphabet import Alphabet

            labels = Alphabet.from_file(alphabet_file).labels
        output_layer = self.model.layers_from_output()[0].name
        if self.description and labels is not None:
            reason = check_output_layer({"alphabet": labels}, self.description["alphabet"], list(dropped),
                                        output_layer)
            if reason:
                raise CheckpointError(f"{path}: {reason}")

    def _read(self, path: str, with_optimizer: bool) -> str:
        if release.is_release_checkpoint(path):
            self._check_release_alphabet(path, ())
            release.import_release(path, self.model, self.optimizer if with_optimizer else None)
            return path
        self.check_shapes(path)
        status = self.checkpoint.read(path)
        for v in self.model.variables:
            mozilla_log.info("Loading variable from checkpoint: %s", _key(v))
        if with_optimizer:
            status.assert_existing_objects_matched()
        else:
            status.expect_partial()
        log.info("Loaded checkpoint %s", path)
        return path

    def save(self, which: str, step: int) -> str:
        """Write ``train-<step>`` or ``best_dev-<step>``, then point the state file at it."""
        name, state = ("best_dev", "best_dev_checkpoint") if which == "best" else ("train", "checkpoint")
        path = self.checkpoint.write(os.path.join(self.save_dir, f"{name}-{step}"))
        previous = tf.train.get_checkpoint_state(self.save_dir, latest_filename=state)
        kept = [p for p in (previous.all_model_checkpoint_paths if previous else []) if p != path]
        kept = kept[-(self.max_to_keep[which] - 1):] if self.max_to_keep[which] > 1 else []
        tf.compat.v1.train.update_checkpoint_state(
            self.save_dir, path, all_model_checkpoint_paths=kept + [path], latest_filename=state)
        for old in set(previous.all_model_checkpoint_paths if previous else []) - set(kept + [path]):
            for f in tf.io.gfile.glob(f"{old}.*"):
                tf.io.gfile.remove(f)
        log.debug("Saved checkpoint %s", path)
        return path

    def describe(self, description: dict, flags_text: str = "") -> None:
        """Write model.json (and flags.txt) so the checkpoint can be loaded without the flags."""
        write_atomic(os.path.join(self.save_dir, DESCRIPTION), json.dumps(description, indent=2))
        if flags_text:
            write_atomic(os.path.join(self.save_dir, "flags.txt"), flags_text)
