"""Export a trained model for the ``deepspeech`` client (native_client/python/EXPORT_FORMAT.md).

From the model restored from a checkpoint, ``export_model`` writes into ``--export_dir``:

- ``output_graph.pb``, always: the model function frozen into a GraphDef (inputs and outputs named as
  in the contract), with the metadata JSON as the string Const ``metadata`` and Mozilla's
  ``metadata_*`` Consts (``metadata_alphabet`` in Mozilla's binary encoding);
- ``output_graph.pbmm`` (``--export_pbmm``): the same graph with memory-mapped weights
  (``deepspeech.pbmm.convert``);
- ``output_graph.tflite`` (``--export_tflite``, ``--export_zip``): see ``export_tflite.py``;
- ``saved_model/`` (``--export_savedmodel``): signature ``serving_default``, ``assets/metadata.json``;
- ``<author>_<model_name>_<version>.md``: Mozilla's model card;
- ``<export_dir>.zip`` (``--export_zip``): the TFLite model, the scorer and the model card.

A Mozilla-family model (``mozilla/``) is exported in Mozilla 0.9's own interface instead
(``mozilla/export.py``): .pb, TensorFlow's .pbmm and .tflite that Mozilla's runtime loads; the model
card and the zip are the same.

Every file is written under a temporary name and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field

import tensorflow as tf
from deepspeech import pbmm
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from . import __version__
from .export_tflite import (QUANTIZE, ExportError, calibration_inputs, input_names, output_tensors,
                            tflite_model)
from .features import FeatureConfig
from .inference import model_function
from .util.log import log, mozilla_log

FORMAT = "deepspeech2-export"
FORMAT_VERSION = 1
SAVED_MODEL_DIR = "saved_model"
OUTPUTS = {"forward": ("probs",), "step": ("probs", "new_state")}

__all__ = ["ExportConfig", "ExportError", "ModelCard", "QUANTIZE", "export_model"]


@dataclass(frozen=True)
class ModelCard:
    """Mozilla's ``--export_author_id`` ... ``--export_max_ds_version`` (model card and metadata)."""

    author_id: str = "author"
    model_name: str = "model"
    model_version: str = "0.0.1"
    contact_info: str = ""
    license: str = ""
    language: str = ""
    description: str = ""
    min_ds_version: str = ""
    max_ds_version: str = ""

    def file_name(self) -> str:
        return f"{self.author_id}_{self.model_name}_{self.model_version}.md"


@dataclass(frozen=True)
class ExportConfig:
    export_dir: str
    file_name: str = "output_graph"
    tflite: bool = False
    pbmm: bool = False
    savedmodel: bool = False
    zip: bool = False
    quantize: str = "dynamic"  # of the TFLite model: none | fp16 | dynamic | int8
    calibration_files: tuple[str, ...] = ()  # CSVs for int8 calibration
    calibration_samples: int = 100
    n_steps: int = 16
    beam_width: int = 500
    scorer_path: str = ""
    remove_existing: bool = False
    card: ModelCard = field(default_factory=ModelCard)

    def validate(self) -> None:
        if not self.export_dir:
            raise ExportError("--export_dir is empty")
        if self.quantize not in QUANTIZE:
            raise ExportError(f"--export_quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.n_steps < 1:
            raise ExportError(f"--n_steps must be positive, got {self.n_steps}")
        if self.quantize == "int8" and self.wants_tflite and not self.calibration_files:
            raise ExportError("--export_quantize int8 needs --export_calibration_files (or --train_files)")
        if self.scorer_path and self.zip and not os.path.isfile(self.scorer_path):
            raise ExportError(f"{self.scorer_path}: scorer not found (--scorer_path, for --export_zip)")

    @property
    def wants_tflite(self) -> bool:
        return self.tflite or self.zip  # Mozilla: --export_zip exports TFLite

    def path(self, suffix: str) -> str:
        return os.path.join(self.export_dir, self.file_name + suffix)


# ------------------------------------------------------------------------------------------- metadata

def build_metadata(fn, features: FeatureConfig, model, alphabet_labels: list[str],
                   config: ExportConfig, utf8: bool = False) -> dict:
    """``utf8``: bytes output mode; ``alphabet_labels`` are then UTF8Alphabet's 255 (label i = byte
    i + 1), what Mozilla's export serializes in that mode."""
    card = config.card
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": __version__,
        "function": fn.name, "sample_rate": features.sample_rate, "features": features.to_dict(),
        "model": json.loads(model.model_config.to_json()), "alphabet": list(alphabet_labels),
        "utf8": bool(utf8), "beam_width": config.beam_width, "streaming": fn.streaming,
        "author_id": card.author_id, "model_name": card.model_name, "model_version": card.model_version,
        "contact_info": card.contact_info, "license": card.license, "language": card.language,
        "description": card.description, "min_ds_version": card.min_ds_version,
        "max_ds_version": card.max_ds_version,
    }


def _const(name: str, value, dtype):
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return node


def _serialized_alphabet(metadata: dict) -> bytes:
    """Mozilla's binary Alphabet::Serialize encoding, what its runtime reads from ``metadata_alphabet``."""
    from ds_ctcdecoder.alphabet import Alphabet, UTF8Alphabet

    return (UTF8Alphabet() if metadata.get("utf8") else Alphabet.from_labels(metadata["alphabet"])).Serialize()


def metadata_nodes(metadata: dict) -> list:
    """The string Const ``metadata`` (the JSON) and Mozilla's ``metadata_*`` Consts."""
    features = metadata["features"]
    ints = {"metadata_version": metadata["format_version"], "metadata_sample_rate": metadata["sample_rate"],
            "metadata_feature_win_len": features["win_len_ms"],
            "metadata_feature_win_step": features["win_step_ms"],
            "metadata_beam_width": metadata["beam_width"]}
    nodes = [_const("metadata", json.dumps(metadata), tf.string),
             _const("metadata_alphabet", [_serialized_alphabet(metadata)], tf.string)]
    nodes += [_const(name, [value], tf.int32) for name, value in ints.items()]
    if metadata.get("language"):
        nodes.append(_const("metadata_language", [metadata["language"]], tf.string))
    return nodes


# ------------------------------------------------------------------------------------------ frozen .pb

def _rename_node(graph_def, old: str, new: str) -> None:
    for node in graph_def.node:
        if node.name == old:
            node.name = new
        for i, name in enumerate(node.input):
            control, base = ("^", name[1:]) if name.startswith("^") else ("", name)
            head, colon, index = base.partition(":")
            if head == old:
                node.input[i] = f"{control}{new}{colon}{index}"


def freeze(fn, metadata: dict):
    """-> (frozen ConcreteFunction, GraphDef with contract names and metadata Consts)."""
    frozen = convert_variables_to_constants_v2(fn, lower_control_flow=False)  # functional While
    graph_def = frozen.graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    for wanted, tensor in zip(input_names(fn), frozen.inputs):
        if tensor.op.name != wanted:
            if wanted in names:
                raise ExportError(f"cannot name the input {wanted!r}: the graph has a node of that name")
            _rename_node(graph_def, tensor.op.name, wanted)
    extra = []
    for name, tensor in output_tensors(fn, frozen).items():
        if name in names:
            raise ExportError(f"cannot name the output {name!r}: the graph has a node of that name")
        node = tf.compat.v1.NodeDef(name=name, op="Identity", input=[tensor.name.removesuffix(":0")])
        node.attr["T"].type = tensor.dtype.as_datatype_enum
        extra.append(node)
    extra += metadata_nodes(metadata)
    graph_def.node.extend(extra)
    keep = [node.name for node in extra]
    return frozen, tf.compat.v1.graph_util.extract_sub_graph(graph_def, keep)


# ----------------------------------------------------------------------------------------- file output

def write_atomic(path: str, data: bytes) -> int:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def _replace_dir(tmp: str, path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def write_savedmodel(fn, model, metadata: dict, path: str) -> None:
    """SavedModel with signature ``serving_default``, ``assets/metadata.json`` and a ``metadata``
    string constant."""
    tmp = f"{path}.tmp-{os.getpid()}"
    staging = f"{tmp}-assets"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(staging, exist_ok=True)
    try:
        asset = os.path.join(staging, "metadata.json")
        write_atomic(asset, json.dumps(metadata, indent=2).encode())
        module = tf.Module()
        module.weights = [getattr(v, "value", v) for v in model.variables]  # what fn captures
        module.metadata = tf.constant(json.dumps(metadata))
        module.metadata_file = tf.saved_model.Asset(asset)
        tf.saved_model.save(module, tmp, signatures={"serving_default": fn})
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def model_card_text(card: ModelCard, runtime: str) -> str:
    """Mozilla's model card: YAML front matter, then the description."""
    fields = {"author": card.author_id, "model_name": card.model_name, "model_version": card.model_version,
              "contact_info": card.contact_info, "license": card.license, "language": card.language,
              "runtime": runtime, "min_ds_version": card.min_ds_version,
              "max_ds_version": card.max_ds_version,
              "acoustic_model_url": "<Fill in with a URL for the acoustic model>",
              "scorer_url": "<Fill in with a URL for the scorer, if any>"}
    lines = ["---"] + [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in fields.items()]
    return "\n".join(lines + ["---", "", card.description, ""])


def write_zip(config: ExportConfig, members: list[str]) -> str:
    """``<export_dir>.zip`` with ``members`` (paths inside the export dir) at its top level."""
    path = os.path.normpath(config.export_dir) + ".zip"
    tmp = f"{path}.tmp-{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(member, os.path.basename(member))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ the export

def _calibration(config: ExportConfig, fn, features: FeatureConfig):
    if not (config.wants_tflite and config.quantize == "int8"):
        return None
    return calibration_inputs(config.calibration_files, config.calibration_samples, features, fn)


def _zip(config: ExportConfig, card: str) -> str:
    """Mozilla's --export_zip: the TFLite model, the model card and a copy of the scorer."""
    members = [config.path(".tflite"), card]
    if config.scorer_path:
        scorer = os.path.join(config.export_dir, os.path.basename(config.scorer_path))
        if os.path.abspath(scorer) != os.path.abspath(config.scorer_path):
            shutil.copyfile(config.scorer_path, scorer)
        members.append(scorer)
    return write_zip(config, members)


def export_model(model, features: FeatureConfig, alphabet_labels: list[str], config: ExportConfig,
                 utf8: bool = False) -> list[str]:
    """Write the export (see the module docstring) -> the paths written; ``utf8``: bytes output mode."""
    config.validate()
    if config.remove_existing and os.path.isdir(config.export_dir):
        shutil.rmtree(config.export_dir)
    os.makedirs(config.export_dir, exist_ok=True)
    if getattr(model.model_config, "family", "deepspeech2") == "mozilla":
        from .mozilla.export import write_files

        written = write_files(model, features, alphabet_labels, config, utf8, write_atomic)
        return _finish(config, written, "tflite" if config.wants_tflite else "tensorflow")
    fn = model_function(model, config.n_steps)
    metadata = build_metadata(fn, features, model, alphabet_labels, config, utf8)
    frozen, graph_def = freeze(fn.function, metadata)
    written = []
    pb = config.path(".pb")
    write_atomic(pb, graph_def.SerializeToString())
    written.append(pb)
    if config.pbmm:
        pbmm.convert(pb, config.path(".pbmm"))
        written.append(config.path(".pbmm"))
    if config.wants_tflite:
        calibration = _calibration(config, fn, features)
        data = tflite_model(frozen, fn.function, {**metadata, "quantize": config.quantize},
                            config.quantize, calibration)
        write_atomic(config.path(".tflite"), data)
        written.append(config.path(".tflite"))
    if config.savedmodel:
        path = os.path.join(config.export_dir, SAVED_MODEL_DIR)
        write_savedmodel(fn.function, model, metadata, path)
        written.append(path)
    return _finish(config, written, "tflite" if config.wants_tflite else "tensorflow")


def _finish(config: ExportConfig, written: list[str], runtime: str) -> list[str]:
    """The model card and the zip after the model files; log what was written."""
    card = os.path.join(config.export_dir, config.card.file_name())
    write_atomic(card, model_card_text(config.card, runtime).encode())
    written.append(card)
    if config.zip:
        written.append(_zip(config, card))
    for path in written:
        log.info("Exported %s (%s)", path, _size_text(path))
    mozilla_log.info("Models exported at %s", config.export_dir)  # Mozilla's words
    if config.zip:
        mozilla_log.info("Exported packaged model %s", written[-1])
    return written


def _size_text(path: str) -> str:
    if os.path.isdir(path):
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    else:
        size = os.path.getsize(path)
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
