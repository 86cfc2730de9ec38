"""TensorProto to numpy and back, the way TensorFlow's Tensor class does it.

Decoding follows tensorflow/core/framework/tensor.cc `Tensor::FromProto`:
- `tensor_content`, when not empty, wins: its size must be exactly
  elements x item size (strings: the varint-length list of
  tensorflow/core/platform/tensor_coding.cc `EncodeStringList`). It is wrapped
  with `np.frombuffer` without copying.
- Otherwise the typed field of the dtype is read (`FromProtoField`): `int_val`
  for DT_INT32/INT16/INT8/UINT8/UINT16 (narrowed like a C++ cast, so 300 becomes
  44 for uint8), `half_val` holding the bits of DT_HALF/DT_BFLOAT16, and so on.
  Fewer values than elements repeat the last one, none gives zeros, extra
  values are ignored.
- A negative dimension, more than 254 dimensions, an unknown dtype or a size
  mismatch makes FromProto fail; TF Serving then reports
  INVALID_ARGUMENT "tensor parsing error: ALIAS" (tensorflow/cc/saved_model/util.cc
  `GetInputValues`, called from TFS/servables/tensorflow/predict_util.cc).

Encoding follows `Tensor::AsProtoField` (the typed fields, TF Serving's default
for predict responses) and `Tensor::AsProtoTensorContent` (with
`--enable_serialization_as_tensor_content`; TFS/servables/tensorflow/predict_util.cc
`PostProcessPredictionResult`). Reference: docs/tf-serving-protocol.md §7
(a client must decode both forms).

Not covered: quantized, float8, int4, resource and variant dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from .errors import invalid_argument

_MAX_DIMS = 254

# DataType -> (numpy dtype, typed field, numpy dtype the field's values are read as).
_TYPES: dict[int, tuple[np.dtype[Any], str, np.dtype[Any]]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val", np.dtype(np.float32)),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val", np.dtype(np.float64)),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val", np.dtype(np.int32)),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val", np.dtype(np.int32)),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val", np.dtype(np.int64)),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val", np.dtype(np.uint32)),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val", np.dtype(np.uint64)),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val", np.dtype(np.bool_)),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val", np.dtype(np.int32)),
    types_pb2.DT_BFLOAT16: (np.dtype(tf.bfloat16.as_numpy_dtype), "half_val", np.dtype(np.int32)),
    types_pb2.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val", np.dtype(np.float32)),
    types_pb2.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val", np.dtype(np.float64)),
    types_pb2.DT_STRING: (np.dtype(object), "string_val", np.dtype(object)),
}
_DATA_TYPES = {numpy_type: data_type for data_type, (numpy_type, _f, _r) in _TYPES.items()}


class TensorParseError(Exception):
    """Tensor::FromProto returned false."""


def data_type_of(array: np.ndarray) -> int:
    """The DataType enum of a numpy array (object arrays hold DT_STRING bytes)."""
    data_type = _DATA_TYPES.get(array.dtype)
    if data_type is None:
        raise invalid_argument(f"Cannot serialise a tensor of numpy type {array.dtype}")
    return data_type


def proto_to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto like Tensor::FromProto (raises TensorParseError)."""
    entry = _TYPES.get(proto.dtype)
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if entry is None or len(shape) > _MAX_DIMS or any(size < 0 for size in shape):
        raise TensorParseError
    numpy_type, field, read_as = entry
    count = int(np.prod(shape, dtype=np.int64))
    content = proto.tensor_content
    if count == 0:
        return np.empty(shape, numpy_type)
    if content:
        if proto.dtype == types_pb2.DT_STRING:
            return _decode_strings(content, count).reshape(shape)
        if len(content) != count * numpy_type.itemsize:
            raise TensorParseError
        return np.frombuffer(content, numpy_type).reshape(shape)
    return _from_field(getattr(proto, field), proto.dtype, count, read_as, numpy_type).reshape(
        shape
    )


def _from_field(
    values: Sequence[Any], data_type: int, count: int, read_as: np.dtype[Any], numpy_type: Any
) -> np.ndarray:
    if data_type == types_pb2.DT_STRING:
        raw = np.empty(len(values), object)
        raw[:] = list(values)
    else:
        raw = np.fromiter(values, read_as, len(values))
    if data_type in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        raw = raw[: len(raw) // 2 * 2].view(numpy_type)
    elif data_type in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        raw = raw.astype(np.uint16).view(numpy_type)
    else:
        raw = raw.astype(numpy_type, copy=False)
    if len(raw) == 0:
        return (
            np.full(count, b"", object)
            if data_type == types_pb2.DT_STRING
            else np.zeros(count, numpy_type)
        )
    if len(raw) >= count:
        return raw[:count]
    return np.concatenate([raw, np.repeat(raw[-1:], count - len(raw))])


def fill_proto(proto: tensor_pb2.TensorProto, array: np.ndarray, as_content: bool) -> None:
    """Fill an empty proto like Tensor::AsProtoField, or AsProtoTensorContent if `as_content`."""
    data_type = data_type_of(array)
    proto.dtype = data_type
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.size == 0:
        return
    flat = np.ascontiguousarray(array).reshape(-1)
    if as_content:
        if data_type == types_pb2.DT_STRING:
            proto.tensor_content = _encode_strings(flat)
        else:
            proto.tensor_content = flat.tobytes()
        return
    field = getattr(proto, _TYPES[data_type][1])
    if data_type == types_pb2.DT_STRING:
        field.extend(flat.tolist())
    elif data_type in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        field.extend(flat.view(np.uint16).tolist())
    elif data_type in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        field.extend(flat.view(_TYPES[data_type][2]).tolist())
    else:
        field.extend(flat.tolist())


def _encode_strings(strings: np.ndarray) -> bytes:
    items = [bytes(item) for item in strings.tolist()]
    return b"".join(_varint(len(item)) for item in items) + b"".join(items)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_strings(content: bytes, count: int) -> np.ndarray:
    lengths = []
    position = 0
    for _ in range(count):
        value = shift = 0
        while True:
            if position >= len(content) or shift > 28:
                raise TensorParseError
            byte = content[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        lengths.append(value)
    if position + sum(lengths) != len(content):
        raise TensorParseError
    strings = np.empty(count, object)
    for index, length in enumerate(lengths):
        strings[index] = content[position : position + length]
        position += length
    return strings
