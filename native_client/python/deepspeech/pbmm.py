"""Memory-mapped frozen graphs (``output_graph.pbmm``): converter and loader.

A ``.pbmm`` holds the frozen graph of ``output_graph.pb`` with its large constants (the weights)
moved out of the protobuf into raw, aligned byte ranges of the same file. The loader memory-maps the
file and hands each range to TensorFlow without copying it: loading takes milliseconds, and the
weights live in the page cache (paged in on first use, shared between processes, counted in RssFile)
instead of the heap.

Mozilla's TF 1.15 ``.pbmm`` (``convert_graphdef_memmapped_format``: a MemmappedFileSystem package
read through ImmutableConst ops) cannot be used here: that file system is not registered in
TensorFlow's Python runtime, and ImmutableConst maps a whole file per tensor. This format plays the
same role, with the same tool name and flags (``bin/convert_graphdef_memmapped_format.py``).

The graph is stored as a TensorFlow FunctionDef (built once by the converter) whose arguments are
the model inputs followed by the mapped weights: the loader registers it with the eager runtime
directly, where importing a GraphDef would build a Python object per node (about 1 s for the paper's
model) and would copy the weights.

File layout (version 1; integers little-endian, offsets in bytes from the start of the file)::

    offset  size  field
    0       8     magic b"DSPBMM\\r\\n"
    8       4     uint32 format version (1)
    12      4     uint32 H, the length of the JSON header
    16      8     uint64 L, the offset of the function library (a multiple of 64)
    24      8     uint64 the size of the function library
    32      8     uint64 D, the offset of the weights (a multiple of 64)
    40      8     uint64 the size of the whole file (a shorter file is truncated)
    48      H     JSON header (UTF-8), an object:
                    "function": the name of the model function in the library,
                    "inputs":   its first arguments, the graph's input placeholders (names),
                    "outputs":  its results, the graph's output nodes (names),
                    "tensors":  its remaining arguments, the weights, in order: objects with
                                "name" (the Const node it replaces), "dtype" (numpy name, e.g.
                                "float32"), "shape", "offset" (from D, a multiple of 64), "nbytes"
    ...           zero padding up to L
    L       ...   serialized FunctionDefLibrary: the model function and the functions it calls;
                  the model function holds every node of the frozen graph (the ``metadata`` string
                  Const among them), each mapped Const turned into an argument
    ...           zero padding up to D
    D + offset    each weight's bytes, C order, little-endian, zero padding between weights

Only Consts of a plain numeric dtype, of at least ``min_bytes`` and without control inputs are
mapped; the rest stay in the function. Weights are aligned to 64 bytes because TensorFlow copies CPU
buffers that are not aligned to EIGEN_MAX_ALIGN_BYTES.

Zero copy: TensorFlow's DLPack import is the route that keeps the mapping's pages
(``tf.convert_to_tensor`` copies a numpy array). DLPack refuses read-only arrays, so the file is
mapped copy-on-write (``np.memmap(mode="c")``): TensorFlow only reads the weights, the pages stay
shared with the page cache, and nothing is ever written to the file.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import struct
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"DSPBMM\r\n"
VERSION = 1
ALIGN = 64
DEFAULT_OUTPUTS = ("probs", "new_state")  # EXPORT_FORMAT.md: those present in the graph
_PREAMBLE = struct.Struct("<8sIIQQQQ")  # magic, version, H, L, library size, D, file size
_MAPPABLE = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
             "uint8", "uint16", "uint32", "uint64")
_loaded = itertools.count()


class ModelFileError(ValueError):
    """A model file (.pb or .pbmm) that cannot be used; the message names the file."""


class PbmmError(ModelFileError):
    """A .pbmm file that is not one, is truncated or corrupt, or has a newer format version."""


@dataclass(frozen=True)
class MappedTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # from the data offset D
    nbytes: int


@dataclass(frozen=True)
class Header:
    function: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tensors: tuple[MappedTensor, ...]
    library_offset: int
    library_size: int
    data_offset: int
    file_size: int


def _tf():
    """TensorFlow, imported on first use so that the client package imports without it."""
    import tensorflow as tf
    return tf


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _node_name(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def is_pbmm(path: str) -> bool:
    """Whether the file starts with the .pbmm magic."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_graph_def(path: str):
    """The GraphDef of a frozen .pb file (ModelFileError if it is not one)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(MAGIC):
        raise ModelFileError(f"{path}: a .pbmm file, not a frozen GraphDef (.pb)")
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as err:
        raise ModelFileError(f"{path}: not a frozen GraphDef ({err})") from None
    if not graph_def.node:
        raise ModelFileError(f"{path}: not a frozen GraphDef (no nodes)")
    return graph_def


# ---------------------------------------------------------------------------------------- converter

def mappable(node, min_bytes: int):
    """The Const's value as a little-endian numpy array if it is to be mapped, else None."""
    if node.op != "Const" or len(node.input):
        return None
    tf = _tf()
    dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
    if dtype.name not in _MAPPABLE:
        return None
    tensor = node.attr["value"].tensor
    nbytes = int(np.prod([d.size for d in tensor.tensor_shape.dim], dtype=np.int64)) * dtype.size
    if nbytes < max(min_bytes, 1):
        return None
    return np.ascontiguousarray(tf.make_ndarray(tensor), dtype=np.dtype(dtype.name).newbyteorder("<"))


def to_placeholder(node, shape) -> None:
    """Turns a Const node into a Placeholder of the same name, dtype and shape, in place."""
    name, dtype = node.name, node.attr["dtype"].type
    node.Clear()  # the same message object, so the GraphDef's node order is unchanged
    node.name, node.op = name, "Placeholder"
    node.attr["dtype"].type = dtype
    node.attr["shape"].shape.CopyFrom(_tf().TensorShape(shape).as_proto())


def _split_graph(graph_def, min_bytes: int) -> list[tuple[str, np.ndarray]]:
    """Turns the large Consts of graph_def into Placeholders (in place); returns [(name, value)]."""
    weights = []
    for node in graph_def.node:
        array = mappable(node, min_bytes)
        if array is not None:
            to_placeholder(node, array.shape)
            weights.append((node.name, array))
    return weights


def _needed(graph_def, outputs) -> set[str]:
    """The names of the nodes the outputs depend on (themselves included)."""
    nodes = {node.name: node for node in graph_def.node}
    needed, todo = set(), list(outputs)
    while todo:
        name = todo.pop()
        if name not in needed and name in nodes:
            needed.add(name)
            todo.extend(_node_name(i) for i in nodes[name].input)
    return needed


def _graph_inputs(graph_def, outputs, weights: set[str]) -> list[str]:
    """The Placeholders (other than weights) that the outputs depend on, in graph order."""
    needed = _needed(graph_def, outputs)
    return [n.name for n in graph_def.node
            if n.op == "Placeholder" and n.name in needed and n.name not in weights]


def _signature(graph_def, names):
    tf = _tf()
    nodes = {node.name: node for node in graph_def.node}
    return [tf.TensorSpec(tf.TensorShape(nodes[n].attr["shape"].shape),
                          tf.dtypes.as_dtype(nodes[n].attr["dtype"].type), name=f"arg{i}")
            for i, n in enumerate(names)]


def function_library(graph_def, args: list[str], outputs: list[str]):
    """A FunctionDefLibrary whose first function runs graph_def: args -> outputs."""
    tf = _tf()
    from tensorflow.core.framework import function_pb2

    def imported(*tensors):
        return tf.graph_util.import_graph_def(
            graph_def, input_map={f"{n}:0": t for n, t in zip(args, tensors)},
            return_elements=[f"{n}:0" for n in outputs], name="")

    wrapped = tf.compat.v1.wrap_function(imported, _signature(graph_def, args))
    library = function_pb2.FunctionDefLibrary()
    library.function.add().CopyFrom(wrapped.function_def)
    library.function.extend(wrapped.graph.as_graph_def().library.function)
    return library


def _write(path: str, header: dict, library: bytes, weights) -> int:
    tensors, offset = [], 0
    for name, array in weights:
        tensors.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape),
                        "offset": offset, "nbytes": array.nbytes})
        offset = _align(offset + array.nbytes)
    header_bytes = json.dumps({**header, "tensors": tensors}, separators=(",", ":")).encode("utf-8")
    library_offset = _align(_PREAMBLE.size + len(header_bytes))
    data_offset = _align(library_offset + len(library))
    file_size = data_offset + (tensors[-1]["offset"] + tensors[-1]["nbytes"] if tensors else 0)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:  # written aside, then renamed: processes mapping the old file keep it
            f.write(_PREAMBLE.pack(MAGIC, VERSION, len(header_bytes), library_offset, len(library),
                                   data_offset, file_size))
            f.write(header_bytes)
            f.write(b"\0" * (library_offset - f.tell()))
            f.write(library)
            for entry, (_, array) in zip(tensors, weights):
                f.write(b"\0" * (data_offset + entry["offset"] - f.tell()))
                f.write(array.data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return file_size


def convert(pb_path: str, pbmm_path: str, min_bytes: int = 1024, outputs=None) -> dict:
    """Converts a frozen GraphDef file to a .pbmm; returns sizes (also logged).

    ``outputs`` are the output node names (default: those of ``probs``, ``new_state`` present); the
    inputs are the placeholders they depend on. Consts of at least ``min_bytes`` are mapped.
    """
    graph_def = read_graph_def(pb_path)
    names = {node.name for node in graph_def.node}
    outputs = list(outputs or [n for n in DEFAULT_OUTPUTS if n in names])
    missing = [n for n in outputs if n not in names] or ([] if outputs else list(DEFAULT_OUTPUTS))
    if missing:
        raise ModelFileError(f"{pb_path}: no output node {' or '.join(missing)} in the graph")
    weights = _split_graph(graph_def, min_bytes)
    inputs = _graph_inputs(graph_def, outputs, {name for name, _ in weights})
    library = function_library(graph_def, inputs + [name for name, _ in weights], outputs)
    header = {"function": library.function[0].signature.name, "inputs": inputs, "outputs": outputs}
    library_bytes = library.SerializeToString()
    size = _write(pbmm_path, header, library_bytes, weights)
    stats = {"pb_bytes": os.path.getsize(pb_path), "pbmm_bytes": size, "graph_bytes": len(library_bytes),
             "mapped_tensors": len(weights), "mapped_bytes": sum(a.nbytes for _, a in weights),
             "inputs": inputs, "outputs": outputs}
    log.info("%s (%d bytes) -> %s (%d bytes): %d weights (%d bytes) mapped, %d bytes of graph; "
             "inputs %s, outputs %s", pb_path, stats["pb_bytes"], pbmm_path, size, len(weights),
             stats["mapped_bytes"], len(library_bytes), inputs, outputs)
    return stats


# ------------------------------------------------------------------------------------------- reader

def _parse_header(path: str, f) -> Header:
    head = f.read(_PREAMBLE.size)
    if not head.startswith(MAGIC):
        raise PbmmError(f"{path}: not a .pbmm file (bad magic)")
    if len(head) < _PREAMBLE.size:
        raise PbmmError(f"{path}: truncated .pbmm file (incomplete preamble)")
    _, version, header_size, library_offset, library_size, data_offset, file_size = _PREAMBLE.unpack(head)
    if version > VERSION:
        raise PbmmError(f"{path}: .pbmm format version {version} is newer than this reader's ({VERSION})")
    actual = os.fstat(f.fileno()).st_size
    if actual < file_size:
        raise PbmmError(f"{path}: truncated .pbmm file ({actual} of {file_size} bytes)")
    try:
        fields = json.loads(f.read(header_size).decode("utf-8"))
        tensors = tuple(MappedTensor(t["name"], t["dtype"], tuple(t["shape"]), t["offset"], t["nbytes"])
                        for t in fields["tensors"])
        header = Header(fields["function"], tuple(fields["inputs"]), tuple(fields["outputs"]), tensors,
                        library_offset, library_size, data_offset, file_size)
    except (ValueError, KeyError, TypeError) as err:
        raise PbmmError(f"{path}: corrupt .pbmm header ({err!r})") from None
    _check_header(path, header)
    return header


def _check_header(path: str, header: Header) -> None:
    if header.library_offset + header.library_size > header.file_size or header.data_offset % ALIGN:
        raise PbmmError(f"{path}: corrupt .pbmm header (library or data offset)")
    for t in header.tensors:
        if (t.dtype not in _MAPPABLE or t.offset % ALIGN
                or header.data_offset + t.offset + t.nbytes > header.file_size
                or int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize != t.nbytes):
            raise PbmmError(f"{path}: corrupt .pbmm header entry for weight {t.name!r}")


def read_pbmm(path: str):
    """(Header, FunctionDefLibrary) of a .pbmm file; reads neither the weights nor the mapping."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import function_pb2

    with open(path, "rb") as f:
        header = _parse_header(path, f)
        f.seek(header.library_offset)
        data = f.read(header.library_size)
    library = function_pb2.FunctionDefLibrary()
    try:
        library.ParseFromString(data)
    except DecodeError as err:
        raise PbmmError(f"{path}: corrupt function library in .pbmm file ({err})") from None
    if not library.function or library.function[0].signature.name != header.function:
        raise PbmmError(f"{path}: corrupt .pbmm file (model function {header.function!r} missing)")
    return header, library


def read_metadata(path: str) -> str:
    """The JSON string of the graph's string Const ``metadata``, from a .pb or a .pbmm file.

    A file is read as a .pbmm if it starts with the magic or its name ends with ``.pbmm``.
    """
    if is_pbmm(path) or path.endswith(".pbmm"):
        nodes = read_pbmm(path)[1].function[0].node_def
    else:
        nodes = read_graph_def(path).node
    for node in nodes:
        if node.name == "metadata" and node.op == "Const":
            values = node.attr["value"].tensor.string_val
            if len(values) == 1:
                return values[0].decode("utf-8")
    raise ModelFileError(f"{path}: no string Const node named 'metadata' in the graph")


def map_tensors(path: str, entries) -> list:
    """Tensors that view ranges of the file's pages (no copy): ``entries`` are (offset from the start of
    the file, numpy dtype name, shape), little-endian data. The file is mapped copy-on-write (DLPack
    refuses read-only arrays); nothing is ever written to it."""
    entries = list(entries)
    if not entries:
        return []
    from_dlpack = _tf().experimental.dlpack.from_dlpack
    mapping = np.memmap(path, dtype=np.uint8, mode="c")
    tensors = []
    for offset, dtype, shape in entries:
        dtype = np.dtype(dtype).newbyteorder("<")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        view = mapping[offset:offset + nbytes].view(dtype).reshape(shape)
        tensors.append(from_dlpack(view.__dlpack__()))
    return tensors


def _map_weights(path: str, header: Header) -> list:
    """The weights as tf.Tensors that view the file's pages (no copy)."""
    return map_tensors(path, [(header.data_offset + t.offset, t.dtype, t.shape) for t in header.tensors])


def _register(path: str, library) -> str:
    """Adds the library's functions to the eager context; returns the model function's unique name."""
    from tensorflow.python.eager import context

    ctx = context.context()
    model, *called = library.function
    for fdef in called:
        if not ctx.has_function(fdef.signature.name):
            ctx.add_function_def(fdef)
        elif ctx.get_function_def(fdef.signature.name) != fdef:
            raise PbmmError(f"{path}: function {fdef.signature.name!r} clashes with one already loaded")
    model = type(model).FromString(model.SerializeToString())
    model.signature.name = f"{model.signature.name}_pbmm{next(_loaded)}"
    ctx.add_function_def(model)
    return model.signature.name


def _check_names(path: str, header: Header, library, inputs, outputs) -> None:
    """Inputs: all the model's, and maybe placeholders of the graph it does not use; outputs: some."""
    weights = {t.name for t in header.tensors}
    placeholders = {node.name for node in library.function[0].node_def if node.op == "Placeholder"} - weights
    unused_ok = all(n in header.inputs or n in placeholders for n in inputs)
    if not (unused_ok and set(header.inputs) <= set(inputs) and set(outputs) <= set(header.outputs)):
        raise ModelFileError(f"{path}: the model maps inputs {list(header.inputs)} to outputs "
                             f"{list(header.outputs)}; asked for {list(inputs)} -> {list(outputs)}")


def load_function(path: str, inputs: list[str], outputs: list[str]) -> Callable:
    """Loads a .pbmm as ``fn(**numpy inputs) -> {output name: numpy array}``.

    ``inputs`` are the graph's input placeholders (e.g. ``["features", "lengths"]``; those that the
    outputs do not depend on may be given and are ignored), ``outputs`` some of the outputs given to
    the converter (e.g. ``["probs"]``). The weights stay in the file's mapping.
    """
    header, library = read_pbmm(path)
    _check_names(path, header, library, inputs, outputs)
    return library_function(path, library, inputs, list(header.inputs), _map_weights(path, header),
                            list(header.outputs), outputs)


def library_function(path: str, library, accepted: list[str], inputs: list[str], weights: list,
                     function_outputs: list[str], outputs: list[str]) -> Callable:
    """Registers ``library`` (its first function: ``inputs`` + ``weights`` -> ``function_outputs``) with
    the eager runtime -> ``fn(**numpy inputs) -> {name: numpy array}`` for the ``outputs`` asked for.
    ``accepted``: the names the call takes (a superset of ``inputs``; the others are ignored). The
    function is unregistered when ``fn`` is dropped; ``fn.weights`` keeps the weights alive."""
    from tensorflow.python.eager import context, execute

    name = _register(path, library)
    arg_types = [arg.type for arg in library.function[0].signature.input_arg]
    tf = _tf()
    dtypes = [tf.dtypes.as_dtype(t).as_numpy_dtype for t in arg_types[:len(inputs)]]
    picks = [function_outputs.index(n) for n in outputs]

    def call(**arrays):  # inputs the graph does not use are accepted and left out
        _check_call(accepted, arrays)
        values = [tf.constant(np.asarray(arrays[n], dtype=d)) for n, d in zip(inputs, dtypes)]
        results = execute.execute(name, len(function_outputs), values + weights, (), context.context())
        return {n: results[i].numpy() for n, i in zip(outputs, picks)}

    call.weights = weights  # the mapped tensors live as long as the function
    weakref.finalize(call, _unregister, name).atexit = False
    return call


def mapped_graph_function(path: str, graph_def, inputs: list[str], weights: list[tuple[str, tuple]],
                          outputs: list[str]) -> Callable:
    """A frozen GraphDef whose nodes ``weights`` [(name, (offset, dtype, shape))] read ranges of the
    file at ``path`` -> ``fn(**numpy inputs) -> {output: numpy array}`` with those ranges mapped (no
    copy). The weight nodes (Const or ImmutableConst) become arguments; ``graph_def`` is not changed.
    Only the nodes the outputs need are kept; ``inputs`` the outputs do not use are accepted and ignored.
    """
    needed = _needed(graph_def, outputs)
    weights = [(name, entry) for name, entry in weights if name in needed]
    tensors = map_tensors(path, [entry for _, entry in weights])
    return argument_graph_function(path, graph_def, inputs, [(name, t) for (name, _), t in zip(weights, tensors)],
                                   outputs)


def argument_graph_function(path: str, graph_def, inputs: list[str], weights: list[tuple[str, object]],
                            outputs: list[str]) -> Callable:
    """A frozen GraphDef with the nodes ``weights`` [(name, tf.Tensor)] turned into arguments that get
    those tensors -> ``fn(**numpy inputs) -> {output: numpy array}``. The function holds only the
    graph's small nodes: large constants stay tensors, not protobuf (``graph_def`` is not changed)."""
    needed = _needed(graph_def, outputs)
    subgraph = type(graph_def)()
    subgraph.versions.CopyFrom(graph_def.versions)
    subgraph.library.CopyFrom(graph_def.library)
    names = {name for name, _ in weights}
    for node in graph_def.node:
        if node.name in names:
            subgraph.node.add(name=node.name, op="Placeholder").attr["dtype"].CopyFrom(node.attr["dtype"])
        elif node.name in needed:
            subgraph.node.add().CopyFrom(node)
    nodes = {node.name: node for node in subgraph.node}
    weights = [(name, tensor) for name, tensor in weights if name in needed]
    for name, tensor in weights:
        to_placeholder(nodes[name], tuple(tensor.shape))
    used = _graph_inputs(subgraph, outputs, {name for name, _ in weights})
    unknown = [n for n in used if n not in inputs]
    if unknown:
        raise ModelFileError(f"{path}: the outputs {list(outputs)} also need the input(s) {unknown}")
    library = function_library(subgraph, used + [name for name, _ in weights], list(outputs))
    return library_function(path, library, list(inputs), used, [t for _, t in weights], list(outputs),
                            list(outputs))


def _unregister(name: str) -> None:
    from tensorflow.python.eager import context

    context.context().remove_function(name)


def _check_call(inputs, arrays) -> None:
    missing, unexpected = set(inputs) - set(arrays), set(arrays) - set(inputs)
    if missing or unexpected:
        raise TypeError(f"the model's inputs are {list(inputs)}; missing {sorted(missing)}, "
                        f"unexpected {sorted(unexpected)}")


def load_graph_function(pb_path: str, inputs: list[str], outputs: list[str]) -> Callable:
    """The same as load_function for a frozen .pb (its weights are parsed into the heap)."""
    graph_def = read_graph_def(pb_path)
    names = {node.name for node in graph_def.node}
    if not set(inputs) | set(outputs) <= names:
        raise ModelFileError(f"{pb_path}: no node {sorted(set(inputs) | set(outputs) - names)} in the graph")
    return graph_def_function(graph_def, inputs, outputs)


def graph_def_function(graph_def, inputs: list[str], outputs: list[str]) -> Callable:
    """A frozen GraphDef as ``fn(**numpy inputs) -> {output name: numpy array}`` (all ``inputs`` fed)."""
    tf = _tf()

    def imported(*tensors):
        return tf.graph_util.import_graph_def(
            graph_def, input_map={f"{n}:0": t for n, t in zip(inputs, tensors)},
            return_elements=[f"{n}:0" for n in outputs], name="")

    signature = _signature(graph_def, inputs)
    wrapped = tf.compat.v1.wrap_function(imported, signature)
    dtypes = [spec.dtype.as_numpy_dtype for spec in signature]

    def call(**arrays):
        _check_call(inputs, arrays)
        results = wrapped(*[tf.constant(np.asarray(arrays[n], dtype=d)) for n, d in zip(inputs, dtypes)])
        return {n: r.numpy() for n, r in zip(outputs, results)}
    return call
