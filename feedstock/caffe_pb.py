"""Caffe's Datum and BlobProto on the protobuf runtime, with BVLC caffe.proto's field numbers.

Built from a descriptor at import time (no protoc, no downloaded caffe.proto).
proto2 semantics: ``Datum.float_data`` is unpacked (tag 0x35 per float) while
``BlobProto.data``/``diff`` and ``BlobShape.dim`` are packed, exactly as Caffe
writes them; the parser accepts either wire form for every repeated field.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, TypeAlias

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, packed=None, type_name=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if packed is not None:
        f.options.packed = packed
    if type_name:
        f.type_name = type_name
    return f


def _build_pool() -> descriptor_pool.DescriptorPool:
    fd = descriptor_pb2.FileDescriptorProto(name="feedstock_caffe.proto", package="caffe", syntax="proto2")
    rep = _F.LABEL_REPEATED
    shape = fd.message_type.add(name="BlobShape")
    _field(shape, "dim", 1, _F.TYPE_INT64, rep, packed=True)
    blob = fd.message_type.add(name="BlobProto")
    _field(blob, "shape", 7, _F.TYPE_MESSAGE, type_name=".caffe.BlobShape")
    _field(blob, "data", 5, _F.TYPE_FLOAT, rep, packed=True)
    _field(blob, "diff", 6, _F.TYPE_FLOAT, rep, packed=True)
    _field(blob, "double_data", 8, _F.TYPE_DOUBLE, rep, packed=True)
    _field(blob, "double_diff", 9, _F.TYPE_DOUBLE, rep, packed=True)
    for name, num in (("num", 1), ("channels", 2), ("height", 3), ("width", 4)):
        _field(blob, name, num, _F.TYPE_INT32)
    vec = fd.message_type.add(name="BlobProtoVector")
    _field(vec, "blobs", 1, _F.TYPE_MESSAGE, rep, type_name=".caffe.BlobProto")
    datum = fd.message_type.add(name="Datum")
    for name, num in (("channels", 1), ("height", 2), ("width", 3)):
        _field(datum, name, num, _F.TYPE_INT32)
    _field(datum, "data", 4, _F.TYPE_BYTES)
    _field(datum, "label", 5, _F.TYPE_INT32)
    _field(datum, "float_data", 6, _F.TYPE_FLOAT, rep)  # proto2 default: NOT packed
    _field(datum, "encoded", 7, _F.TYPE_BOOL)
    pool = descriptor_pool.DescriptorPool()
    # AddSerializedFile exists in every runtime from 3.12 on (pure Python, C++, upb); Add does not.
    pool.AddSerializedFile(fd.SerializeToString())
    return pool


def _message_class(pool: descriptor_pool.DescriptorPool, name: str) -> Any:
    """The message class of ``name``: GetMessageClass from protobuf 4.22 on, GetPrototype before it.

    Debian 12 / Ubuntu 24.04 ship the 3.21.12 runtime (pip 4.21.12), which pycaffe built there
    uses; Ubuntu 22.04 ships 3.12.4. Both lack GetMessageClass; protobuf 5.x and later lack GetPrototype.
    """
    descriptor = pool.FindMessageTypeByName(name)
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


_POOL = _build_pool()
if TYPE_CHECKING:  # classes made at run time: to a type checker they are untyped messages
    Datum: TypeAlias = Any
    BlobShape: TypeAlias = Any
    BlobProto: TypeAlias = Any
    BlobProtoVector: TypeAlias = Any
else:
    Datum = _message_class(_POOL, "caffe.Datum")
    BlobShape = _message_class(_POOL, "caffe.BlobShape")
    BlobProto = _message_class(_POOL, "caffe.BlobProto")
    BlobProtoVector = _message_class(_POOL, "caffe.BlobProtoVector")


def array_to_datum(arr: np.ndarray, label: Optional[int] = None, *, encoded_false: bool = False) -> "Datum":
    """CHW array to Datum: uint8 -> ``data`` bytes, any other dtype -> ``float_data``.

    ``encoded_false`` writes the explicit ``encoded=false`` that convert_imageset's
    CVMatToDatum emits (bytes ``38 00``); pycaffe's array_to_datum omits it.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"array_to_datum needs a 3-D (C, H, W) array, got shape {arr.shape}")
    d = Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        d.data = np.ascontiguousarray(arr).tobytes()
    else:
        d.float_data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    if label is not None:
        d.label = int(label)
    if encoded_false:
        d.encoded = False
    return d


def encoded_datum(payload: bytes, label: int, shape: Optional[Tuple[int, int, int]] = None) -> "Datum":
    """An encoded Datum as convert_imageset writes it (no C/H/W) or, with ``shape``, as DIGITS does."""
    d = Datum()
    if shape is not None:
        d.channels, d.height, d.width = (int(s) for s in shape)
    d.data = bytes(payload)
    d.label = int(label)
    d.encoded = True
    return d


def datum_to_array(d: "Datum") -> np.ndarray:
    """Raw Datum to CHW array: uint8 from ``data`` (wins when present), else float32 from ``float_data``.

    pycaffe returns float64 for float_data; feedstock keeps float32, the precision
    stored on the wire. Encoded Datums must be decoded instead (see loaders.decode).
    """
    if d.encoded:
        raise ValueError("datum is encoded; decode it (feedstock.loaders.decode.decode_datum)")
    shape = (d.channels, d.height, d.width)
    if len(d.data):
        arr = np.frombuffer(d.data, dtype=np.uint8)
    else:
        arr = np.asarray(d.float_data, dtype=np.float32)
    expected = int(np.prod(shape))
    if arr.size != expected:
        raise ValueError(
            f"datum holds {arr.size} values but channels*height*width = {shape} = {expected}"
        )
    return arr.reshape(shape)


def parse_datum(value: bytes) -> "Datum":
    d = Datum()
    d.ParseFromString(value)
    return d


def blobproto_to_array(blob: "BlobProto") -> np.ndarray:
    """BlobProto to float32 array; legacy num/channels/height/width win over ``shape`` (Blob::FromProto)."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape: Sequence[int] = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    values = blob.double_data if len(blob.double_data) else blob.data
    arr = np.asarray(values, dtype=np.float32)
    expected = int(np.prod(shape)) if len(shape) else 0
    if arr.size != expected:
        raise ValueError(f"blob holds {arr.size} values but its shape {tuple(shape)} needs {expected}")
    return arr.reshape(shape)


def array_to_blobproto(arr: np.ndarray, *, legacy: bool = True) -> "BlobProto":
    """Array to BlobProto; ``legacy`` writes num/channels/height/width as compute_image_mean does."""
    arr = np.asarray(arr, dtype=np.float32)
    blob = BlobProto()
    if legacy:
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValueError(f"legacy BlobProto needs a 3-D or 4-D array, got shape {arr.shape}")
        blob.num, blob.channels, blob.height, blob.width = arr.shape
    else:
        blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.ravel().tolist())
    return blob


def read_mean_file(path: str | os.PathLike) -> np.ndarray:
    """A mean.binaryproto as a float32 (C, H, W) array (the leading num=1 dropped)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        from .loaders.strings import cut  # here only: caffe_pb loads before the loaders

        raise ValueError(f"cannot read mean file {cut(repr(path))}: {e.strerror or cut(e)}: check the path") from None
    blob = BlobProto()
    try:
        blob.ParseFromString(raw)
        arr = blobproto_to_array(blob)
    except Exception as e:  # protobuf DecodeError or our shape check
        raise ValueError(f"mean file {path!r} is not a valid BlobProto: {e}") from None
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"mean file {path!r} has num={arr.shape[0]}, expected 1")
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"mean file {path!r} has shape {arr.shape}, expected (1, C, H, W)")
    return arr


def write_mean_file(path: str | os.PathLike, mean: np.ndarray) -> None:
    """Write a (C, H, W) mean with legacy shape fields, packed float data, as compute_image_mean."""
    data = array_to_blobproto(mean, legacy=True).SerializeToString()
    with open(os.fspath(path), "wb") as f:
        f.write(data)
