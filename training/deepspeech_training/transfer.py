"""Transfer learning (Mozilla's --drop_source_layers): which weight layers a loaded checkpoint keeps,
which are re-initialized or frozen, and why a checkpoint does not fit this model.

Weight layers are counted from the output: logits, fc, lookahead (if any), rnn_k .. rnn_1, conv_k ..
conv_1. The feature normalization statistics are not a layer here: they always come from the source.
"""
from __future__ import annotations

from .util.log import log

OUTPUT_LAYER = "logits"

# the flag that sets each geometry field, for messages about a checkpoint that does not fit
FLAG_OF = {"n_features": "--feature_win_len/--audio_sample_rate", "num_classes": "--alphabet_config_path",
           "conv": "--conv_layers", "conv_type": "--conv_type", "rnn_type": "--rnn_type",
           "rnn_layers": "--rnn_layers", "rnn_units": "--n_hidden", "bidirectional": "--bidirectional",
           "lookahead": "--lookahead", "fc_units": "--n_hidden", "relu_clip": "--relu_clip"}


def layers_from_output(model) -> list:
    """The model's weight layers, the output layer first (each family says which they are)."""
    return model.layers_from_output()


def last_layers(model, n: int, flag: str) -> list[str]:
    """Names of the last ``n`` weight layers; ``flag`` names the option in the error for a bad ``n``."""
    names = [layer.name for layer in layers_from_output(model)]
    if not 0 <= n <= len(names):
        raise ValueError(f"{flag} {n}: this model has {len(names)} weight layers "
                         f"({', '.join(names)}, counted from the output); use 0 to {len(names)}")
    return names[:n]


def freeze_all_but_last(model, n: int) -> list[str]:
    """Make every weight layer except the last ``n`` non-trainable -> names of the frozen layers.

    Frozen layers leave the optimizer's update (the train step differentiates trainable variables
    only) and their BatchNorm normalizes with, and keeps, its moving statistics.
    """
    kept = set(last_layers(model, n, "--freeze_source_layers"))
    frozen = [layer for layer in layers_from_output(model) if layer.name not in kept]
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in reversed(frozen)]


def layer_of(key: str) -> str:
    """'rnn_1/bn/gamma' -> 'rnn_1'."""
    return key.split("/", 1)[0]


def geometry_differences(source: dict | None, target: dict | None) -> list[str]:
    """Fields of two model.json descriptions' geometry that differ, e.g.
    'rnn_units 2048 in the checkpoint, 256 here (--n_hidden)'."""
    if not source or not target:
        return []
    a, b = source.get("model", {}), target.get("model", {})
    return [f"{name} {_show(a.get(name))} in the checkpoint, {_show(b.get(name))} here ({flag})"
            for name, flag in FLAG_OF.items() if name in a and a.get(name) != b.get(name)]


def _show(value) -> str:
    if isinstance(value, list):  # conv specs: as --conv_layers writes them
        return ",".join(f"{c['filters']}:{'x'.join(map(str, c['kernel']))}:"
                        f"{'x'.join(map(str, c['stride']))}" for c in value)
    return str(value)


def check_output_layer(source: dict | None, labels: list[str], dropped: list[str],
                       output_layer: str = OUTPUT_LAYER) -> str | None:
    """Why the source's output layer cannot be kept for ``labels`` (None: it can, or it is dropped)."""
    if output_layer in dropped or not source or not source.get("alphabet"):
        return None
    theirs = source["alphabet"]
    if len(theirs) != len(labels):
        return (f"the checkpoint's output layer is for an alphabet of {len(theirs)} labels, this model's "
                f"(--alphabet_config_path) has {len(labels)}: to move the checkpoint to a new alphabet, "
                f"re-initialize the output layer with --drop_source_layers 1")
    if theirs != labels:
        changed = [f"{i}: {a!r} -> {b!r}" for i, (a, b) in enumerate(zip(theirs, labels)) if a != b]
        return (f"the checkpoint was trained with another alphabet of the same size (labels "
                f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}); its output layer would "
                f"emit the wrong characters: re-initialize it with --drop_source_layers 1")
    return None


def log_plan(source: str, dropped: list[str], frozen: list[str], learning_rate: float) -> None:
    log.info("Transfer learning from %s: kept %s", source,
             "all weight layers" if not dropped else f"all but {', '.join(dropped)}")
    if dropped:
        log.info("Re-initialized (--drop_source_layers %d): %s", len(dropped), ", ".join(dropped))
    if frozen:
        log.info("Frozen (not trained, BatchNorm statistics fixed): %s", ", ".join(frozen))
    log.info("A fresh optimizer at learning rate %g, step 0", learning_rate)
