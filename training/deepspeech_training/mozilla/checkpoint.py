"""Mozilla 0.9 / Coqui 1.x TF1 checkpoints (name-based, as released: ``best_dev-1466475``) into the
Keras model of ``model.py``, with Mozilla's loading semantics.

A release checkpoint holds the 12 weight tensors under Mozilla's names, ``global_step``, and Adam's
``X/Adam`` (m) and ``X/Adam_1`` (v) slots with ``beta1_power``/``beta2_power``. cuDNN-trained files
(the releases) have no Adam slots for the LSTM's two tensors and hold ``cudnn_lstm/opaque_kernel*``
instead: those are ignored and the LSTM's moments start from zero, which is what Mozilla's
``--load_cudnn`` does. Every tensor is read and checked before any variable is assigned, so a
checkpoint that does not fit changes nothing.
"""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from . import LSTM_BIAS, LSTM_KERNEL, OPAQUE_PREFIX, WEIGHT_NAMES, GeometryError, MozillaGeometry, geometry_from_shapes
from ..util.log import log

STATE_FILES = {"best": "best_dev_checkpoint", "last": "checkpoint"}


def latest_checkpoint(directory: str, state_file: str) -> str | None:
    """The checkpoint a state file names (``tf.train.latest_checkpoint``), also when it names it by an
    absolute path from the machine that trained it (TF1's Saver writes those): then the same file name
    in ``directory``."""
    path = tf.train.latest_checkpoint(directory, latest_filename=state_file)
    if path:
        return path
    try:
        state = tf.train.get_checkpoint_state(directory, latest_filename=state_file)
    except (tf.errors.OpError, ValueError):
        return None
    if state is None or not state.model_checkpoint_path:
        return None
    local = os.path.join(directory, os.path.basename(state.model_checkpoint_path))
    return local if tf.io.gfile.exists(local + ".index") else None


def list_tensors(path: str) -> dict[str, list[int]]:
    try:
        return {name: list(shape) for name, shape in tf.train.list_variables(path)}
    except (tf.errors.OpError, ValueError):
        return {}


def is_release_checkpoint(path: str) -> bool:
    """True for a TF1 name-based checkpoint of Mozilla's model (``path``: a checkpoint prefix)."""
    return "layer_1/weights" in list_tensors(path)


def find_release_checkpoint(directory: str, which: str = "auto") -> str | None:
    """The prefix of the 'best' / 'last' / 'auto' (best, then last) Mozilla checkpoint in ``directory``."""
    if not directory or not os.path.isdir(directory):
        return None
    for kind in {"auto": ("best", "last"), "best": ("best",), "last": ("last",)}.get(which, ()):
        path = latest_checkpoint(directory, STATE_FILES[kind])
        if path and is_release_checkpoint(path):
            return path
    return None


def release_geometry(path: str) -> MozillaGeometry:
    """The geometry of a release checkpoint from its tensor shapes (GeometryError naming both shapes)."""
    return geometry_from_shapes(list_tensors(path), source=path)


def release_alphabet_file(path: str) -> str | None:
    """``alphabet.txt`` beside a checkpoint (Coqui's releases ship it), if any."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), "alphabet.txt")
    return candidate if os.path.isfile(candidate) else None


def release_step(path: str) -> int:
    reader = tf.train.load_checkpoint(path)
    return int(reader.get_tensor("global_step")) if reader.has_tensor("global_step") else 0


def _read_weights(path: str, model, dropped: tuple[str, ...]) -> list[tuple[str, object, np.ndarray]]:
    """[(TF1 name, variable, value)] of the kept tensors, every shape checked first."""
    stored = list_tensors(path)
    missing = [name for name in WEIGHT_NAMES if name not in stored and model.tf1_layer(name) not in dropped]
    if missing:
        raise GeometryError(f"{path}: not a complete checkpoint of Mozilla's model, missing {', '.join(missing)}")
    reader = tf.train.load_checkpoint(path)
    values = []
    for name, variable in model.tf1_variables().items():
        if model.tf1_layer(name) in dropped:
            continue
        if list(stored[name]) != list(variable.shape):
            hint = " (another alphabet: --drop_source_layers 1)" if name.startswith("layer_6/") else ""
            raise GeometryError(f"{path}: {name} has shape {stored[name]} in the checkpoint but "
                                f"{list(variable.shape)} in this model{hint}")
        values.append((name, variable, reader.get_tensor(name)))
    return values


def _optimizer_slots(optimizer, variable):
    """Keras Adam's (m, v) variables of ``variable``, or None (another optimizer)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(inner, __import__("keras").optimizers.Adam):
        return None
    index = inner._get_variable_index(variable)
    return inner._momentums[index], inner._velocities[index]


def _read_moments(path: str, weights, optimizer) -> tuple[list, list[str]]:
    """[(slot variable, value)] from X/Adam and X/Adam_1, and the names without them (zeroed)."""
    reader = tf.train.load_checkpoint(path)
    assignments, zeroed = [], []
    for name, variable, _ in weights:
        slots = _optimizer_slots(optimizer, variable)
        if slots is None:
            return [], []
        if reader.has_tensor(f"{name}/Adam") and reader.has_tensor(f"{name}/Adam_1"):
            assignments += [(slots[0], reader.get_tensor(f"{name}/Adam")),
                            (slots[1], reader.get_tensor(f"{name}/Adam_1"))]
        else:
            zeroed.append(name)
            assignments += [(slot, np.zeros(slot.shape, np.float32)) for slot in slots]
    return assignments, zeroed


def _adam_iterations(path: str, beta1: float) -> int | None:
    """Keras Adam's ``iterations`` (updates done): Mozilla's ``global_step``, which also numbers its
    checkpoints (``best_dev-1466475``), so that the run's checkpoints continue its numbering; without
    it, from TF1's beta1_power = beta1^(k+1) after k updates."""
    step = release_step(path)
    if step:
        return step
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor("beta1_power"):
        return None
    power = float(reader.get_tensor("beta1_power"))
    return max(0, round(math.log(power) / math.log(beta1)) - 1) if 0.0 < power < 1.0 else None


def import_release(path: str, model, optimizer=None, dropped: tuple[str, ...] = ()) -> None:
    """Assign ``model`` (a MozillaModel) the weights of release checkpoint ``path``, all but the layers
    in ``dropped``; with an Adam ``optimizer`` also its moments and step count, as Mozilla's
    fine-tuning continues them (the LSTM's from zero in a cuDNN checkpoint, Mozilla's --load_cudnn)."""
    weights = _read_weights(path, model, dropped)
    moments, zeroed = _read_moments(path, weights, optimizer) if optimizer is not None else ([], [])
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    iterations = _adam_iterations(path, float(inner.beta_1)) if moments else None
    for name, variable, value in weights:
        log.info("Loading variable from checkpoint: %s", name)
        variable.assign(value)
    for name in WEIGHT_NAMES:
        if model.tf1_layer(name) in dropped:
            log.info("Initializing variable: %s", name)
    for slot, value in moments:
        slot.assign(value)
    for name in zeroed:
        log.info("CUDNN variable not found: %s/Adam (Adam moments start at zero, as Mozilla's --load_cudnn)",
                 name)
    if iterations is not None:
        inner.iterations.assign(iterations)
    opaque = any(key.startswith(OPAQUE_PREFIX) for key in list_tensors(path))
    log.info("Imported Mozilla checkpoint %s (%s form, global step %d): %d weight tensors%s%s", path,
             "cuDNN" if opaque or LSTM_KERNEL in zeroed or LSTM_BIAS in zeroed else "plain",
             release_step(path), len(weights),
             f", Adam moments of {len(weights) - len(zeroed)}" if moments else "",
             f", re-initialized {', '.join(dropped)}" if dropped else "")
