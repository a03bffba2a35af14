"""Mozilla DeepSpeech 0.9 / Coqui STT 1.x exported models behind the client's ``AcousticModel``.

    model = open_mozilla_model("deepspeech-0.9.3-models.pbmm")   # None: not a Mozilla-interface file

Recognized by content, not by name:

- a frozen GraphDef (``.pb``) or TensorFlow memmapped package (``.pbmm``, ``memmapped.py``) with
  the nodes ``metadata_version`` and ``input_node``; a ``.pbmm``'s weights are mapped from the file,
  not copied (``pbmm.mapped_graph_function``);
- a ``.tflite`` whose tensors include ``input_node`` and that lacks this trainer's
  ``deepspeech_metadata``. Its tensors are looked up by name among the interpreter's inputs and
  outputs (it has no SignatureDefs; Coqui's extra outputs are ignored). It needs only ai-edge-litert.

The interface (Mozilla's train.py export, version 6): ``input_node`` [1, n_steps, 2 n_context + 1,
n_features] windows of MFCC frames, ``input_lengths`` [1] (not in a .tflite), ``previous_state_c``
and ``previous_state_h`` [1, state], -> ``logits`` (softmax probabilities, [n_steps, 1, C] or
[n_steps, C]), ``new_state_c``, ``new_state_h``; constants ``metadata_version``, ``_sample_rate``,
``_feature_win_len`` (ms), ``_feature_win_step`` (ms), ``_beam_width`` and ``metadata_alphabet``
(Mozilla's binary ``Alphabet::Serialize``).

Features and streaming are those of Mozilla's native client (``mfcc.py``, ``ContextBatches``): MFCC
frames in numpy, each frame the centre of a window of 2 n_context + 1 frames (n_context zero frames
before the first and after the last), windows run n_steps at a time with the LSTM state carried.
"""
from __future__ import annotations

import mmap
import os
import struct

import numpy as np
from ds_ctcdecoder import Alphabet, UTF8Alphabet
from ds_ctcdecoder.alphabet import AlphabetError

from .acoustic import AcousticModel, GrowingFrames, ProbabilityStream, _run
from .errors import (ERR_FAIL_INIT_MMAP, ERR_FAIL_INTERPRETER, ERR_FAIL_READ_PROTOBUF, ERR_INVALID_ALPHABET,
                     ERR_INVALID_SHAPE, ERR_MODEL_INCOMPATIBLE, DeepSpeechError)
from .mfcc import MfccFeatures
from .runtime import TFLITE_METADATA, ModelLoadError, _FlatBuffer, _first_line, _interpreter_class

GRAPH_VERSION = 6  # the oldest (and newest) export interface Mozilla's 0.9 client reads
INPUTS = ("input_node", "input_lengths", "previous_state_c", "previous_state_h")
OUTPUTS = ("logits", "new_state_c", "new_state_h")
METADATA = ("metadata_version", "metadata_sample_rate", "metadata_feature_win_len",
            "metadata_feature_win_step", "metadata_beam_width", "metadata_alphabet")
NEITHER = "neither an export of this trainer nor a Mozilla DeepSpeech model"


def open_mozilla_model(path: str) -> "MozillaAcousticModel | None":
    """The Mozilla-interface model at ``path``, or None when the file is not one (an export of this
    trainer, or nothing recognizable: the caller's loader reports that). A Mozilla model that cannot be
    used raises ``DeepSpeechError`` (one line, naming the file)."""
    try:
        return _open(path)
    except ModelLoadError as err:
        raise DeepSpeechError("CreateModel", err.code, str(err)) from None


def _open(path: str):
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(16)
    if head[4:8] == b"TFL3":
        return _open_tflite(path) if _is_mozilla_tflite(path) else None
    from . import memmapped, pbmm

    if head.startswith(pbmm.MAGIC):
        return None
    if memmapped.is_memmapped(path):
        return _open_graph(path, "pbmm")
    if path.endswith(".pbmm"):
        raise ModelLoadError(f"{path}: not a memory-mapped model: no {pbmm.MAGIC[:6].decode()} header and no "
                             f"valid TensorFlow memmapped directory at its end (truncated?)", ERR_FAIL_INIT_MMAP)
    return _open_graph(path, "pb")


# ------------------------------------------------------------------------------------------ .tflite

def _is_mozilla_tflite(path: str) -> bool:
    """True for a TFLite file without our metadata and with an ``input_node`` tensor; False for an
    export of this trainer or a file the flatbuffer reader cannot walk (the caller's loader reports it)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        fb = _FlatBuffer(data)
        try:
            model = fb.u32(0)
            if any(fb.bytes(entry, 0) == TFLITE_METADATA.encode() for entry in fb.tables(model, 6)):
                return False
            names = {fb.bytes(tensor, 3) for subgraph in fb.tables(model, 2)  # Tensor.name: field 3
                     for tensor in fb.tables(subgraph, 0)}
        except (struct.error, IndexError, TypeError, ValueError):
            return False
    if b"input_node" not in names:
        raise ModelLoadError(f"{path}: {NEITHER}: a TFLite model without '{TFLITE_METADATA}' metadata or "
                             f"an 'input_node' tensor", ERR_MODEL_INCOMPATIBLE)
    return True


def _open_tflite(path: str) -> "MozillaAcousticModel":
    """Mozilla's models run on TFLite's builtin kernels, without XNNPACK (a default delegate of current
    TFLite): on a quantized model (int8 weights: dynamic-range FULLY_CONNECTED) XNNPACK quantizes the
    inputs its own way, where the TFLite of Mozilla's and Coqui's clients ran these builtin kernels (same
    probabilities, to the bit); on a float model it copies the LSTM weights once per unrolled step
    (n_hidden 2048: 2.1 GiB for a 189 MB file; 1024: 596 MB against 56 MB, 10x the load time, the same
    speed: BENCHMARKS.md)."""
    try:
        interpreter = _interpreter_class()(model_path=path, num_threads=1,
                                           experimental_disable_delegate_clustering=True,
                                           experimental_op_resolver_type=_op_resolver_without_delegates())
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{path}: the TFLite runtime cannot load it ({_first_line(err)})",
                             ERR_FAIL_INTERPRETER) from None
    tensors = {d["name"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}
    needed = [n for n in INPUTS + OUTPUTS + METADATA if n != "input_lengths"]
    missing = [n for n in needed if n not in tensors]
    if missing:
        raise ModelLoadError(f"{path}: a Mozilla-interface TFLite model without the tensor(s) "
                             f"{', '.join(missing)}", ERR_INVALID_SHAPE)
    runner = TfliteRunner(interpreter, tensors)
    try:
        runner.invoke_zeros()  # the metadata outputs are computed by the graph
    except (ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{path}: the TFLite runtime cannot run it ({_first_line(err)})",
                             ERR_FAIL_INTERPRETER) from None
    values = {name: interpreter.get_tensor(tensors[name]["index"]) for name in METADATA}
    shapes = {name: tuple(int(d) for d in tensors[name]["shape"]) for name in ("input_node", "previous_state_c",
                                                                                "logits")}
    return MozillaAcousticModel(path, "tflite", _interface(path, values, shapes), runner)


def _op_resolver_without_delegates():
    try:
        from ai_edge_litert import interpreter as litert
        return litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except ImportError:
        import tensorflow as tf
        return tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


class TfliteRunner:
    """One TFLite interpreter run per batch: a plain invoke runs the whole graph, so the audio input
    (``input_samples``, MFCC computed in numpy instead) is fed zeros once and left so."""

    def __init__(self, interpreter, tensors: dict):
        self.interpreter = interpreter
        self.index = {name: d["index"] for name, d in tensors.items()}
        self.shapes = {name: tuple(int(s) for s in d["shape"]) for name, d in tensors.items()}
        self.n_steps = self.shapes["input_node"][1]

    def invoke_zeros(self) -> None:
        for name in ("input_node", "previous_state_c", "previous_state_h", "input_samples"):
            if name in self.index:
                self.interpreter.set_tensor(self.index[name], np.zeros(self.shapes[name], np.float32))
        self.interpreter.invoke()

    def __call__(self, windows: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        """windows [k <= n_steps, W, F] -> (probabilities [k, C], new state); always runs n_steps."""
        count = len(windows)
        batch = np.zeros(self.shapes["input_node"], np.float32)
        batch[0, :count] = windows
        set_tensor = self.interpreter.set_tensor
        set_tensor(self.index["input_node"], batch)
        set_tensor(self.index["previous_state_c"], state[0])
        set_tensor(self.index["previous_state_h"], state[1])
        self.interpreter.invoke()
        get = self.interpreter.get_tensor
        probs = get(self.index["logits"])
        return (probs.reshape(-1, probs.shape[-1])[:count].copy(),
                (get(self.index["new_state_c"]).copy(), get(self.index["new_state_h"]).copy()))


# --------------------------------------------------------------------------------------- .pb, .pbmm

def _read_graph(path: str, kind: str):
    """(GraphDef, its mapped weights [(node, (offset, dtype, shape))]); None: a .pb that does not parse
    (the caller's loader reports it)."""
    from . import memmapped

    try:
        from google.protobuf.message import DecodeError
        from tensorflow.core.framework import graph_pb2
    except ImportError:
        if kind == "pb":
            return None  # the caller's loader reports the missing TensorFlow
        raise ModelLoadError(f"{path}: a .pbmm model needs TensorFlow (pip install tensorflow)",
                             ERR_FAIL_INIT_MMAP) from None
    if kind == "pbmm":
        try:
            graph_def, regions = memmapped.read_memmapped(path)
            return graph_def, [(name, (offset, dtype, shape)) for name, offset, dtype, shape
                               in memmapped.mapped_nodes(path, graph_def, regions)]
        except memmapped.MemmappedError as err:
            raise ModelLoadError(str(err), ERR_FAIL_INIT_MMAP) from None
    graph_def = graph_pb2.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except DecodeError:
        return None
    return graph_def, []


def _open_graph(path: str, kind: str):
    read = _read_graph(path, kind)
    if read is None:
        return None
    graph_def, weights = read
    nodes = {node.name: node for node in graph_def.node}
    if not is_mozilla_graph(nodes):
        if kind == "pb" and ("metadata" in nodes or not nodes):
            return None  # an export of this trainer (or an empty file): the caller's loader reads it
        if "metadata" in nodes:
            raise ModelLoadError(f"{path}: an export of this trainer in TensorFlow's memmapped format, which only "
                                 f"Mozilla-interface models use: convert its .pb with "
                                 f"bin/convert_graphdef_memmapped_format.py", ERR_MODEL_INCOMPATIBLE)
        raise ModelLoadError(f"{path}: {NEITHER}: a TensorFlow graph with neither a 'metadata' "
                             f"node nor 'metadata_version' and 'input_node' nodes", ERR_MODEL_INCOMPATIBLE)
    values = {name: _const_value(nodes, name) for name in METADATA}
    missing = [n for n in ("input_node", "previous_state_c", *OUTPUTS) if n not in nodes]
    if missing and values["metadata_version"] is not None and int(values["metadata_version"][0]) >= GRAPH_VERSION:
        raise ModelLoadError(f"{path}: a Mozilla-interface graph without the node(s) {', '.join(missing)}",
                             ERR_INVALID_SHAPE)
    shapes = {name: tuple(d.size for d in nodes[name].attr["shape"].shape.dim)
              for name in ("input_node", "previous_state_c") if name in nodes}
    interface = _interface(path, values, shapes)
    try:
        function = _graph_function(path, graph_def, weights)
    except Exception as err:  # TensorFlow's import of a damaged graph
        raise ModelLoadError(f"{path}: TensorFlow cannot load the graph ({_first_line(err)})",
                             ERR_FAIL_INIT_MMAP if kind == "pbmm" else ERR_FAIL_READ_PROTOBUF) from None
    runner = GraphRunner(function, interface["n_steps"], interface["input_shape"])
    state = np.zeros([1, interface["state_size"]], np.float32)
    try:  # one batch of zeros: the graph runs, and outputs as many classes as the alphabet needs
        classes = runner(np.zeros((1, *interface["input_shape"][2:]), np.float32), (state, state))[0].shape[-1]
    except Exception as err:  # whatever TensorFlow raised
        raise ModelLoadError(f"{path}: TensorFlow cannot run the graph ({_first_line(err)})",
                             ERR_FAIL_INIT_MMAP if kind == "pbmm" else ERR_FAIL_READ_PROTOBUF) from None
    if classes != interface["num_classes"]:
        raise ModelLoadError(f"{path}: the alphabet has {interface['num_classes'] - 1} labels but the model "
                             f"outputs {classes} classes (labels + blank)", ERR_INVALID_ALPHABET)
    return MozillaAcousticModel(path, kind, interface, runner)


def _graph_function(path: str, graph_def, mapped: list):
    """The model function: a .pbmm's weights mapped from the file; a .pb's large Consts turned into
    tensors first (TensorFlow would otherwise copy them through a FunctionDef)."""
    from . import pbmm

    if mapped:
        return pbmm.mapped_graph_function(path, graph_def, list(INPUTS), mapped, list(OUTPUTS))
    import tensorflow as tf

    weights = []
    for node in graph_def.node:
        array = pbmm.mappable(node, 1024)
        if array is not None:
            weights.append((node.name, tf.constant(array)))
    return pbmm.argument_graph_function(path, graph_def, list(INPUTS), weights, list(OUTPUTS))


def is_mozilla_graph(names) -> bool:
    """Whether a graph with these node names has Mozilla's export interface (this trainer's own exports
    also carry ``metadata_version``, next to their JSON ``metadata`` node, and no ``input_node``)."""
    return "metadata_version" in names and "input_node" in names and "metadata" not in names


def _const_value(nodes: dict, name: str):
    node = nodes.get(name)
    if node is None or node.op != "Const":
        return None
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(node.attr["value"].tensor).reshape(-1)


class GraphRunner:
    """The .pb / .pbmm model function, one batch per call; ``input_lengths`` = the windows given."""

    def __init__(self, function, n_steps: int, input_shape: tuple):
        self.function, self.n_steps, self.input_shape = function, n_steps, input_shape

    def __call__(self, windows: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        count = len(windows)
        batch = np.zeros(self.input_shape, np.float32)
        batch[0, :count] = windows
        out = self.function(input_node=batch, input_lengths=np.array([count], np.int32),
                            previous_state_c=state[0], previous_state_h=state[1])
        probs = out["logits"]
        return probs.reshape(-1, probs.shape[-1])[:count], (out["new_state_c"], out["new_state_h"])


# ------------------------------------------------------------------------------------ the interface

def _interface(path: str, values: dict, shapes: dict) -> dict:
    """The metadata and geometry of a Mozilla-interface model, checked."""
    version = values.get("metadata_version")
    if version is None or len(version) != 1:
        raise ModelLoadError(f"{path}: no readable metadata_version", ERR_MODEL_INCOMPATIBLE)
    if int(version[0]) < GRAPH_VERSION:
        raise ModelLoadError(f"{path}: model version {int(version[0])} is older than the oldest this client "
                             f"reads ({GRAPH_VERSION}); export it again with a newer DeepSpeech",
                             ERR_MODEL_INCOMPATIBLE)
    try:
        rate, win_len, win_step, beam = (int(values[f"metadata_{n}"][0]) for n in
                                         ("sample_rate", "feature_win_len", "feature_win_step", "beam_width"))
        alphabet = Alphabet.Deserialize(bytes(values["metadata_alphabet"][0]))
    except (TypeError, IndexError, struct.error, AlphabetError) as err:
        raise ModelLoadError(f"{path}: unreadable model metadata ({_first_line(err)})", ERR_INVALID_ALPHABET) \
            from None
    input_shape, state_shape = shapes.get("input_node", ()), shapes.get("previous_state_c", ())
    if len(input_shape) != 4 or input_shape[0] != 1 or input_shape[2] % 2 != 1 or len(state_shape) != 2:
        raise ModelLoadError(f"{path}: input_node has shape {list(input_shape)} and previous_state_c "
                             f"{list(state_shape)}, expected [1, steps, 2 x context + 1, features] and "
                             f"[1, state]", ERR_INVALID_SHAPE)
    logits = shapes.get("logits")
    if logits and logits[-1] != len(alphabet) + 1:
        raise ModelLoadError(f"{path}: the alphabet has {len(alphabet)} labels but the model outputs "
                             f"{logits[-1]} classes (labels + blank)", ERR_INVALID_ALPHABET)
    return {"format": "mozilla", "version": int(version[0]), "sample_rate": rate, "win_len_ms": win_len,
            "win_step_ms": win_step, "beam_width": beam, "alphabet": alphabet, "input_shape": input_shape,
            "n_steps": input_shape[1], "n_context": (input_shape[2] - 1) // 2, "n_features": input_shape[3],
            "state_size": state_shape[1], "num_classes": len(alphabet) + 1}


class MozillaAcousticModel(AcousticModel):
    """A Mozilla-interface export: numpy MFCC features, and ``runner(windows [k, W, F], (c, h)) ->
    (probabilities [k, C], (c, h))`` running one batch of context windows. The same interface as
    ``AcousticModel`` (whose ``__init__``, which reads this trainer's metadata, is not called)."""

    streaming = True

    def __init__(self, path: str, kind: str, interface: dict, runner):
        self.path, self.format, self.runner = path, kind, runner
        self.metadata = {k: v for k, v in interface.items() if k not in ("alphabet", "input_shape")}
        self.metadata["model_format"] = kind
        self.sample_rate = interface["sample_rate"]
        self.alphabet = interface["alphabet"]
        self.utf8 = isinstance(self.alphabet, UTF8Alphabet)
        self.frame_seconds = interface["win_step_ms"] / 1000.0
        self.mfcc = MfccFeatures(self.sample_rate, self.sample_rate * interface["win_len_ms"] // 1000,
                                 self.sample_rate * interface["win_step_ms"] // 1000, interface["n_features"],
                                 upper_hz=self.sample_rate / 2)
        self.framing = None

    def __repr__(self) -> str:
        return f"MozillaAcousticModel({self.path!r}, format={self.format!r})"

    @property
    def time_stride(self) -> int:
        return 1

    def features(self, audio: np.ndarray) -> np.ndarray:
        return self.mfcc.frames(audio)

    def frame_stream(self):
        return self.mfcc.stream()

    def probs(self, features: np.ndarray) -> np.ndarray:
        stream = self.stream()
        stream.feed(features)
        return stream.finish()

    def stream(self) -> "ContextBatches":
        m = self.metadata
        state = np.zeros([1, m["state_size"]], np.float32)
        return ContextBatches(self.runner, m["n_steps"], m["n_context"], m["n_features"], m["num_classes"],
                              (state, state.copy()))


class ContextBatches(ProbabilityStream):
    """Mozilla's streaming state: MFCC frames in; each becomes the centre of a window of 2 n_context + 1
    frames (n_context zero frames first); full batches of n_steps windows run as they fill, the state
    carried; ``finish`` adds n_context zero frames and runs the last, partial batch."""

    def __init__(self, runner, n_steps: int, n_context: int, n_features: int, num_classes: int, state):
        self.runner, self.n_steps, self.n_context = runner, n_steps, n_context
        self.num_classes, self.state = num_classes, state
        self._buffer = np.zeros((n_context, n_features), np.float32)  # frames still to centre a window
        self._windows = np.zeros((0, 2 * n_context + 1, n_features), np.float32)
        self._probs = GrowingFrames()

    def feed(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.float32).reshape(-1, self._buffer.shape[1])
        if not len(frames):
            return
        buffer = np.concatenate([self._buffer, frames])
        width = 2 * self.n_context + 1
        count = len(buffer) - width + 1
        if count > 0:
            windows = np.lib.stride_tricks.sliding_window_view(buffer, width, axis=0)[:count]
            self._windows = np.concatenate([self._windows, windows.transpose(0, 2, 1)])
            buffer = buffer[count:]
        self._buffer = np.ascontiguousarray(buffer)
        while len(self._windows) >= self.n_steps:
            self._run(self._windows[:self.n_steps])
            self._windows = self._windows[self.n_steps:]

    def _run(self, windows: np.ndarray) -> None:
        probs, self.state = _run(lambda: self.runner(np.ascontiguousarray(windows), self.state))
        self._probs.append(np.asarray(probs, np.float32).reshape(-1, self.num_classes))

    def current(self) -> np.ndarray | None:
        return self._probs.view()

    def finish(self) -> np.ndarray | None:
        self.feed(np.zeros((self.n_context, self._buffer.shape[1]), np.float32))
        if len(self._windows):
            self._run(self._windows)
            self._windows = self._windows[:0]
        return self.current()
