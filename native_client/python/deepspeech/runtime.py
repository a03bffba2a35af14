"""Open an exported model in any of its formats: ``load_runtime(path) -> Runtime``.

Formats (native_client/python/EXPORT_FORMAT.md): a frozen GraphDef (``.pb``), a memory-mapped graph
(``.pbmm``, ``pbmm.py``), a TFLite flatbuffer (``.tflite``) or a SavedModel directory. Files are
recognized by their content (the TFLite identifier, the .pbmm magic), not only by their name.

A Runtime has ``metadata`` (the export's JSON object), ``function_name`` (``forward`` or ``step``)
and the model function with numpy in and out: ``forward(features, lengths) -> probs`` or
``step(features, position, valid_frames, state) -> {"probs", "new_state"}``.

TensorFlow is imported only for the TensorFlow formats; a ``.tflite`` file needs only
``ai-edge-litert`` (or TensorFlow's ``tf.lite`` where that is not installed). Its metadata is read
from the flatbuffer's metadata table with a minimal reader (below), without either.

Whatever cannot be loaded (missing, empty, truncated, not an export of this trainer, an export format
newer than this reader) raises ``ModelLoadError`` with a one-line message naming the file.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Callable

import numpy as np

from .errors import ERR_FAIL_INIT_MMAP, ERR_FAIL_INTERPRETER, ERR_FAIL_READ_PROTOBUF, ERR_MODEL_INCOMPATIBLE

FORMAT = "deepspeech2-export"
FORMAT_VERSION = 1
TFLITE_METADATA = "deepspeech_metadata"
SIGNATURE_KEY = "serving_default"
INPUTS = {"forward": ("features", "lengths"), "step": ("features", "position", "valid_frames", "state")}
OUTPUTS = {"forward": ("probs",), "step": ("probs", "new_state")}


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message names the file. ``code`` is Mozilla's error code."""

    def __init__(self, message: str, code: int = ERR_MODEL_INCOMPATIBLE):
        super().__init__(message)
        self.code = code


class Runtime:
    """An exported model function and its metadata."""

    def __init__(self, path: str, kind: str, metadata: dict, call: Callable[..., dict]):
        self.path, self.format, self.metadata = path, kind, metadata
        self.function_name = metadata["function"]
        self._call = call

    def __repr__(self) -> str:
        return f"Runtime({self.path!r}, format={self.format!r}, function={self.function_name!r})"

    def forward(self, features, lengths=None) -> np.ndarray:
        """features [1, T, F] (or [T, F]), lengths [1] -> probabilities [1, T', C]."""
        self._expect("forward")
        features = np.asarray(features, np.float32)
        if features.ndim == 2:
            features = features[None]
        if lengths is None:
            lengths = [features.shape[1]]
        return self._call(features=features, lengths=np.asarray(lengths, np.int32).reshape(1))["probs"]

    def step(self, features, position, valid_frames, state) -> dict:
        """One streaming step (see ``streaming.py``) of B streams: features [B, W, F], position [B],
        valid_frames [B], state [B, N] -> {"probs": [B, n_steps, C], "new_state": [B, N]}.
        B > 1 needs an export with a dynamic batch (``batched``)."""
        self._expect("step")
        features = np.asarray(features, np.float32)
        if len(features) != 1 and not self.batched:
            raise ValueError(f"{self.path}: an export with a fixed batch of 1 (re-export it for batches)")
        return self._call(features=features,
                          position=np.asarray(position, np.int32).reshape(-1),
                          valid_frames=np.asarray(valid_frames, np.int32).reshape(-1),
                          state=np.asarray(state, np.float32))

    @property
    def batched(self) -> bool:
        """Whether ``step`` takes several streams at once (metadata ``streaming.batch`` "dynamic";
        older exports have a fixed batch of 1)."""
        return (self.metadata.get("streaming") or {}).get("batch") == "dynamic"

    def _expect(self, name: str) -> None:
        if self.function_name != name:
            raise TypeError(f"{self.path} exports '{self.function_name}', not '{name}'")


def load_runtime(path: str, num_threads: int = 1) -> Runtime:
    """Open an export (.pb, .pbmm, .tflite or a SavedModel directory). ``num_threads``: TFLite's
    interpreter threads (TensorFlow formats use TensorFlow's own thread pools)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _load_savedmodel(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file or directory", ERR_FAIL_INIT_MMAP)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise ModelLoadError(f"{path}: empty file, not a model", ERR_FAIL_INIT_MMAP)
    if head[4:8] == b"TFL3":
        return _load_tflite(path, num_threads)
    if path.endswith(".tflite"):
        raise ModelLoadError(f"{path}: not a TFLite model (no TFL3 file identifier)", ERR_FAIL_INTERPRETER)
    from . import pbmm

    if head.startswith(pbmm.MAGIC):
        return _load_graph(path, "pbmm")
    return _load_graph(path, "pb")


# ------------------------------------------------------------------------------------------- metadata

def parse_metadata(path: str, text) -> dict:
    """The metadata JSON, checked to be an export of this trainer that this reader understands."""
    try:
        metadata = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"{path}: the model's metadata is not valid JSON") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a {FORMAT} model (its metadata has another format)")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelLoadError(f"{path}: export format version {version} is newer than this client reads "
                             f"({FORMAT_VERSION}); update the deepspeech package")
    if metadata.get("function") not in INPUTS:
        raise ModelLoadError(f"{path}: unknown model function {metadata.get('function')!r}")
    return metadata


class _FlatBuffer:
    """Just enough of a flatbuffer reader for the TFLite schema's Model.metadata and Model.buffers."""

    def __init__(self, data: bytes):
        self.data = data

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Position of field ``index`` of the table at ``table``, or None when it is absent."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        if 4 + 2 * index >= vtable_size:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        return table + offset if offset else None

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(start of the elements, length) of a vector field; (0, 0) when absent."""
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        vec = pos + self.u32(pos)
        return vec + 4, self.u32(vec)

    def tables(self, table: int, index: int) -> list[int]:
        start, length = self.vector(table, index)
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(length)]

    def bytes(self, table: int, index: int) -> bytes:
        start, length = self.vector(table, index)
        if start + length > len(self.data):
            raise struct.error("vector beyond the end of the data")
        return self.data[start:start + length]


# TFLite schema field numbers: Model.buffers 4, Model.metadata 6; Metadata.name 0, .buffer 1;
# Buffer.data 0, .offset 1, .size 2 (offset and size: data stored after the flatbuffer, models > 2 GB)
def tflite_metadata(path: str, data: bytes) -> str:
    """The ``deepspeech_metadata`` entry of a TFLite flatbuffer, as text."""
    fb = _FlatBuffer(data)
    try:
        model = fb.u32(0)
        buffers = fb.tables(model, 4)
        for entry in fb.tables(model, 6):
            if fb.bytes(entry, 0) != TFLITE_METADATA.encode():
                continue
            buffer = buffers[fb.u32(fb.field(entry, 1))]
            offset_pos, size_pos = fb.field(buffer, 1), fb.field(buffer, 2)
            if offset_pos is not None and size_pos is not None:
                offset, size = (struct.unpack_from("<Q", data, p)[0] for p in (offset_pos, size_pos))
                if offset + size > len(data):
                    raise struct.error("buffer beyond the end of the file")
                return data[offset:offset + size].decode("utf-8")
            return fb.bytes(buffer, 0).decode("utf-8")
    except (struct.error, IndexError, TypeError, UnicodeDecodeError):
        raise ModelLoadError(f"{path}: truncated or corrupt TFLite model", ERR_FAIL_INTERPRETER) from None
    raise ModelLoadError(f"{path}: a TFLite model without '{TFLITE_METADATA}' metadata: not an export of "
                         f"this trainer")


# --------------------------------------------------------------------------------------------- formats

def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError:
            raise ModelLoadError("a .tflite model needs ai-edge-litert (pip install ai-edge-litert)",
                                 ERR_FAIL_INTERPRETER) from None
        Interpreter = tf.lite.Interpreter
    return Interpreter


def _load_tflite(path: str, num_threads: int) -> Runtime:
    with open(path, "rb") as f:
        data = f.read()
    metadata = parse_metadata(path, tflite_metadata(path, data))
    del data
    name = metadata["function"]
    try:  # from the path: the interpreter memory-maps the file
        # Delegate clustering off: with it, XNNPACK (ai-edge-litert 2.3) runs a dynamic-range quantized
        # 'forward' model (its While loop) slower at every call, 20x after a few hundred; same outputs.
        interpreter = _interpreter_class()(model_path=path, num_threads=num_threads,
                                           experimental_disable_delegate_clustering=True)
        runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    except (ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{path}: the TFLite runtime cannot load it ({_first_line(err)})",
                             ERR_FAIL_INTERPRETER) from None
    details = runner.get_input_details(), runner.get_output_details()
    _check_names(path, name, *(set(d) for d in details))

    def call(**inputs):
        outputs = runner(**inputs)
        return {key: outputs[key] for key in OUTPUTS[name]}

    call.interpreter = interpreter  # the runner needs its interpreter alive
    return Runtime(path, "tflite", metadata, call)


def _load_graph(path: str, kind: str) -> Runtime:
    from . import pbmm

    try:
        metadata = parse_metadata(path, pbmm.read_metadata(path))
        name = metadata["function"]
        load = pbmm.load_function if kind == "pbmm" else pbmm.load_graph_function
        function = load(path, list(INPUTS[name]), list(OUTPUTS[name]))
    except ModelLoadError:
        raise
    except ImportError:
        raise _needs_tensorflow(path, f".{kind}") from None
    except pbmm.ModelFileError as err:
        raise ModelLoadError(_first_line(err), _graph_error_code(kind)) from None
    except Exception as err:  # TensorFlow's import of a damaged graph
        raise ModelLoadError(f"{path}: TensorFlow cannot load the graph ({_first_line(err)})",
                             _graph_error_code(kind)) from None
    return Runtime(path, kind, metadata, function)


def _needs_tensorflow(path: str, kind: str) -> ModelLoadError:
    return ModelLoadError(f"{path}: a {kind} model needs TensorFlow (pip install tensorflow), or export "
                          f"a .tflite model (--export_tflite), which needs only ai-edge-litert",
                          ERR_FAIL_INIT_MMAP)


def _graph_error_code(kind: str) -> int:
    return ERR_FAIL_INIT_MMAP if kind == "pbmm" else ERR_FAIL_READ_PROTOBUF


def _load_savedmodel(path: str) -> Runtime:
    asset = os.path.join(path, "assets", "metadata.json")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ModelLoadError(f"{path}: a directory without saved_model.pb: not a SavedModel",
                             ERR_FAIL_READ_PROTOBUF)
    if not os.path.isfile(asset):
        raise ModelLoadError(f"{path}: a SavedModel without assets/metadata.json: not an export of this "
                             f"trainer")
    with open(asset, encoding="utf-8") as f:
        metadata = parse_metadata(path, f.read())
    name = metadata["function"]
    try:
        import tensorflow as tf
    except ImportError:
        raise _needs_tensorflow(path, "SavedModel") from None
    try:
        signature = tf.saved_model.load(path).signatures[SIGNATURE_KEY]
    except Exception as err:  # TF raises many types for broken SavedModels
        raise ModelLoadError(f"{path}: TensorFlow cannot load the SavedModel ({_first_line(err)})",
                             ERR_FAIL_READ_PROTOBUF) from None
    _check_names(path, name, set(signature.structured_input_signature[1]), set(signature.structured_outputs))

    def call(**inputs):
        outputs = signature(**{key: tf.constant(value) for key, value in inputs.items()})
        return {key: outputs[key].numpy() for key in OUTPUTS[name]}

    return Runtime(path, "savedmodel", metadata, call)


def _check_names(path: str, function: str, inputs: set, outputs: set) -> None:
    if not set(INPUTS[function]) <= inputs or not set(OUTPUTS[function]) <= outputs:
        raise ModelLoadError(f"{path}: its '{function}' signature has inputs {sorted(inputs)} and outputs "
                             f"{sorted(outputs)}, expected {list(INPUTS[function])} -> "
                             f"{list(OUTPUTS[function])}")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
