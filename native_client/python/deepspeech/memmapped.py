"""TensorFlow's MemmappedFileSystem package: Mozilla DeepSpeech's ``.pbmm`` (writer and reader).

TensorFlow 1.15's ``convert_graphdef_memmapped_format`` moves the large constants of a frozen graph
into raw regions of one file, and the graph reads them through ``ImmutableConst`` ops. Layout
(memmapped_file_system_writer.cc, memmapped_file_system.proto)::

    [zero padding to 64] tensor region   (one per converted Const, C order, little-endian)
    ...
    serialized GraphDef                  (region "memmapped_package://.", not aligned)
    serialized MemmappedFileSystemDirectory {element {offset: 1, name: 2, length: 3}, ...}
    uint64 little-endian offset of the directory (the file's last 8 bytes)

A converted node keeps its name and becomes ``ImmutableConst`` with only the attrs ``dtype``,
``shape`` and ``memory_region_name`` (``memmapped_package://`` + the node name with every character
outside [A-Za-z0-9_.] replaced by '_', then '_' appended until unique). There is no magic number:
``is_memmapped`` checks the structure (trailing offset, parseable directory, increasing offsets).

The directory proto is encoded and decoded here by hand (three fields), so that no generated
``memmapped_file_system_pb2`` module is needed. TensorFlow's reader ignores ``length`` and takes each
region up to the next one; ``read_memmapped`` does the same where ``length`` is 0.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

import numpy as np

from .pbmm import ModelFileError

PREFIX = "memmapped_package://"
GRAPH_REGION = PREFIX + "."
ALIGN = 64  # TensorFlow's Allocator::kAllocatorAlignment
DEFAULT_MIN_BYTES = 10000  # convert_graphdef_memmapped_format's --min_conversion_tensor_size
# dtypes that TensorFlow can memcpy (DataTypeCanUseMemcpy), by their numpy name
_POD = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
        "uint32", "uint64", "bool", "complex64", "complex128")


class MemmappedError(ModelFileError):
    """A file that is not a memmapped package, or a truncated or corrupt one (the message names it)."""


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    length: int


# ----------------------------------------------------------------------- the directory proto, by hand

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def encode_directory(regions) -> bytes:
    """MemmappedFileSystemDirectory of ``regions`` [Region] as protobuf wire bytes (proto3: fields at
    their default value, 0 or "", are left out, as protobuf's own serializer does)."""
    out = bytearray()
    for region in regions:
        name = region.name.encode("utf-8")
        element = ((b"\x08" + _varint(region.offset) if region.offset else b"")
                   + (b"\x12" + _varint(len(name)) + name if name else b"")
                   + (b"\x18" + _varint(region.length) if region.length else b""))
        out += b"\x0a" + _varint(len(element)) + element
    return bytes(out)


def _fields(data: bytes):
    """(field number, wire type, value) of a protobuf message; value is int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ValueError("truncated field")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def decode_directory(data: bytes) -> list[Region]:
    """The directory's elements (ValueError if the bytes are not one)."""
    regions = []
    for number, wire, element in _fields(data):
        if number != 1 or wire != 2:
            raise ValueError(f"unexpected field {number} in the directory")
        fields = {n: v for n, _, v in _fields(element)}
        name = fields.get(2, b"")
        if not isinstance(name, bytes) or not isinstance(fields.get(1, 0), int):
            raise ValueError("malformed directory element")
        regions.append(Region(name.decode("utf-8"), int(fields.get(1, 0)), int(fields.get(3, 0))))
    return regions


# ------------------------------------------------------------------------------------------ writer

def region_name(node_name: str, used: set) -> str:
    """``memmapped_package://`` + the sanitized node name, made unique among ``used`` (then added)."""
    name = PREFIX + re.sub(r"[^A-Za-z0-9_.]", "_", node_name)
    while name in used:
        name += "_"
    used.add(name)
    return name


def _convertible(node, min_bytes: int):
    """The Const's value (little-endian numpy) if it is to be mapped, else None."""
    if node.op != "Const":
        return None
    from tensorflow.python.framework import dtypes, tensor_util

    dtype = dtypes.as_dtype(node.attr["dtype"].type)
    if dtype.name not in _POD:
        return None
    shape = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
    if int(np.prod(shape, dtype=np.int64)) * dtype.size < min_bytes:
        return None
    array = tensor_util.MakeNdarray(node.attr["value"].tensor)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _to_immutable(node, array: np.ndarray, name: str) -> None:
    dtype = node.attr["dtype"].type
    for key in list(node.attr):
        del node.attr[key]
    node.op = "ImmutableConst"
    node.attr["dtype"].type = dtype
    for size in array.shape:
        node.attr["shape"].shape.dim.add().size = size
    node.attr["memory_region_name"].s = name.encode("utf-8")


def write_memmapped(graph_def, path, min_bytes: int = DEFAULT_MIN_BYTES) -> int:
    """Write ``graph_def`` (not modified) as a memmapped package at ``path`` (atomically, through a
    temporary file); Consts of a plain dtype with at least ``min_bytes`` bytes become ImmutableConst
    nodes reading their region. Returns the number of nodes converted."""
    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    path = os.fspath(path)
    tmp, used, regions, converted = f"{path}.tmp{os.getpid()}", set(), [], 0
    try:
        with open(tmp, "wb") as f:
            for node in graph_def.node:
                array = _convertible(node, max(int(min_bytes), 1))
                if array is None:
                    continue
                f.write(b"\0" * (-f.tell() % ALIGN))
                name = region_name(node.name, used)
                regions.append(Region(name, f.tell(), array.nbytes))
                f.write(array.tobytes())
                _to_immutable(node, array, name)
                converted += 1
            graph = graph_def.SerializeToString()
            regions.append(Region(GRAPH_REGION, f.tell(), len(graph)))
            f.write(graph)
            directory_offset = f.tell()
            f.write(encode_directory(regions))
            f.write(struct.pack("<Q", directory_offset))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return converted


# ------------------------------------------------------------------------------------------ reader

def read_directory(path) -> list[Region]:
    """The regions of a memmapped package, lengths filled in (MemmappedError if it is not one)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise MemmappedError(f"{path}: not a memmapped package (shorter than its directory offset)")
        f.seek(size - 8)
        (directory_offset,) = struct.unpack("<Q", f.read(8))
        if directory_offset >= size - 8:
            raise MemmappedError(f"{path}: not a memmapped package, or a truncated one (directory offset "
                                 f"{directory_offset} beyond the file's {size} bytes)")
        f.seek(directory_offset)
        data = f.read(size - 8 - directory_offset)
    try:
        regions = decode_directory(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise MemmappedError(f"{path}: not a memmapped package, or a truncated one (its directory does not "
                             f"parse: {err})") from None
    return _checked(path, regions, directory_offset)


def _checked(path: str, regions: list[Region], end: int) -> list[Region]:
    if not regions or GRAPH_REGION not in {r.name for r in regions}:
        raise MemmappedError(f"{path}: not a memmapped package (no {GRAPH_REGION} region in its directory)")
    out = []
    for i, region in enumerate(regions):
        following = regions[i + 1].offset if i + 1 < len(regions) else end
        if following <= region.offset and i + 1 < len(regions) or region.offset > end:
            raise MemmappedError(f"{path}: corrupt memmapped package (region offsets not increasing at "
                                 f"{region.name})")
        length = region.length or following - region.offset
        if region.offset + length > end:
            raise MemmappedError(f"{path}: truncated memmapped package (region {region.name} ends beyond "
                                 f"its directory)")
        out.append(Region(region.name, region.offset, length))
    return out


def is_memmapped(path) -> bool:
    """Whether the file has a memmapped package's structure (a real .pbmm has no magic)."""
    try:
        read_directory(path)
        return True
    except (MemmappedError, OSError):
        return False


def read_memmapped(path):
    """(GraphDef, {region name: (offset, length)}) of a memmapped package."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    path = os.fspath(path)
    regions = read_directory(path)
    graph = next(r for r in regions if r.name == GRAPH_REGION)
    with open(path, "rb") as f:
        f.seek(graph.offset)
        data = f.read(graph.length)
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as err:
        raise MemmappedError(f"{path}: corrupt memmapped package (its GraphDef does not parse: {err})") from None
    return graph_def, {r.name: (r.offset, r.length) for r in regions if r.name != GRAPH_REGION}


def mapped_nodes(path, graph_def, regions: dict) -> list[tuple[str, int, str, tuple]]:
    """(node name, offset, numpy dtype name, shape) of each ImmutableConst, checked against its region."""
    from tensorflow.python.framework import dtypes

    out = []
    for node in graph_def.node:
        if node.op != "ImmutableConst":
            continue
        region = node.attr["memory_region_name"].s.decode("utf-8", "replace")
        if region not in regions:
            raise MemmappedError(f"{path}: node {node.name} reads region {region}, which the package lacks")
        dtype = dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
        shape = tuple(d.size for d in node.attr["shape"].shape.dim)
        offset, length = regions[region]
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize > length:
            raise MemmappedError(f"{path}: truncated memmapped package (region {region} is shorter than "
                                 f"{node.name}'s {list(shape)} tensor)")
        out.append((node.name, offset, np.dtype(dtype).name, shape))
    return out
