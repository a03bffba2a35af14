"""Model families behind one interface: Deep Speech 2 (``model.py``) and Mozilla DeepSpeech 0.9's
model (``mozilla/``). The trainer, evaluation, export and the entry points ask this module, never a
family's module, for a model, its features and what a checkpoint directory holds.

A model of any family is a Keras model called as ``model((features, lengths), training)`` ->
``(logits, output lengths)``, with ``model_config`` (a frozen dataclass: ``family``, ``time_stride``,
``to_json``), ``normalization`` (a FeatureNormalization layer, or None when the features enter as they
are), ``layers_from_output()`` (weight layers, output first: --drop_source_layers),
``build_for()`` and ``summary_line()``.

A checkpoint directory is described by its ``model.json`` (written by this trainer), or, for
Mozilla's and Coqui's TF1 release checkpoints, by a description derived from the tensors' shapes.
"""
from __future__ import annotations

import json

from .features import FeatureConfig
from .model import DeepSpeech2, ModelConfig
from .mozilla import (AUDIO_WIN_LEN, FAMILY as MOZILLA, SAMPLE_RATE, WIN_LEN_MS, WIN_STEP_MS,
                      checkpoint as release)
from .mozilla.model import MozillaConfig, MozillaModel
from .util.log import log

DEEPSPEECH2 = "deepspeech2"
FAMILIES = (DEEPSPEECH2, MOZILLA)
_CONFIGS = {DEEPSPEECH2: ModelConfig, MOZILLA: MozillaConfig}
_MODELS = {DEEPSPEECH2: DeepSpeech2, MOZILLA: MozillaModel}


def config_from_dict(d: dict):
    """A model.json ``model`` object -> the config of its family (Deep Speech 2 when it names none)."""
    family = d.get("family", DEEPSPEECH2)
    if family not in _CONFIGS:
        raise ValueError(f"model family {family!r} is not one this trainer knows ({', '.join(FAMILIES)})")
    return _CONFIGS[family].from_dict(d)


def family_of(config) -> str:
    return getattr(config, "family", DEEPSPEECH2)


def build_model(config):
    """The Keras model of ``config`` (either family), its weights created."""
    family = family_of(config)
    return _MODELS[family](config, name=family).build_for()


def mozilla_features(sample_rate: int = SAMPLE_RATE) -> FeatureConfig:
    """Mozilla 0.9's features: 26 MFCC of 32 ms windows every 20 ms at 16 kHz, not normalized."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"--audio_sample_rate {sample_rate}: Mozilla's model family runs at {SAMPLE_RATE} Hz "
                         f"(its export graph computes {AUDIO_WIN_LEN}-sample windows)")
    return FeatureConfig(sample_rate=SAMPLE_RATE, win_len_ms=WIN_LEN_MS, win_step_ms=WIN_STEP_MS, kind="mfcc",
                         normalization="none")


def release_description(path: str, labels: list[str] | None) -> dict:
    """A model.json-like description of Mozilla release checkpoint ``path``: geometry from its shapes,
    ``labels`` the alphabet (None: the one beside it, or none known)."""
    geometry = release.release_geometry(path)
    config = MozillaConfig(n_hidden=geometry.n_hidden, num_classes=geometry.num_classes,
                           n_context=geometry.n_context)
    return {"model": json.loads(config.to_json()), "features": mozilla_features().to_dict(),
            "alphabet": labels, "bytes_output_mode": False, "release_checkpoint": path}


def describe_directory(directory: str, which: str = "auto") -> dict | None:
    """What ``directory`` holds: its model.json, else a Mozilla release checkpoint's derived description
    (alphabet from alphabet.txt beside it, or None), else None."""
    from .checkpoint import read_description

    description = read_description(directory)
    if description is not None:
        return description
    path = release.find_release_checkpoint(directory, which)
    if path is None:
        return None
    alphabet_file = release.release_alphabet_file(path)
    labels = None
    if alphabet_file:
        from ds_ctcdecoder.alphabet import Alphabet

        labels = Alphabet.from_file(alphabet_file).labels
    description = release_description(path, labels)
    log.info("%s holds a Mozilla/Coqui release checkpoint (%s): n_hidden %d, %d output classes%s", directory,
             path, description["model"]["n_hidden"], description["model"]["num_classes"],
             f", alphabet {alphabet_file}" if alphabet_file else "")
    return description
