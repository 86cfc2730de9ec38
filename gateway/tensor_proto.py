"""Just enough of the protobuf wire format to speak TF Serving's Predict over gRPC.

The official Python stubs (tensorflow-serving-api) depend on all of TensorFlow,
which the gateway image must not carry (docs/tf-serving-protocol.md §6). The
messages needed are small, so they are encoded here by field number, as
declared in TF Serving's apis/predict.proto and apis/model.proto and
TensorFlow's framework/tensor.proto, tensor_shape.proto and types.proto. The
tests check this codec against the official generated classes.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# tensorflow/core/framework/types.proto
DT_FLOAT = 1
DT_UINT8 = 4

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 values are sent as ten-byte varints
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, _BYTES) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _varint(value)


def encode_tensor(array: np.ndarray) -> bytes:
    """TensorProto{dtype=1, tensor_shape=2, tensor_content=4} for a uint8 or float32 array."""
    dtype = {np.dtype(np.uint8): DT_UINT8, np.dtype(np.float32): DT_FLOAT}[array.dtype]
    dims = b"".join(_bytes_field(2, _varint_field(1, size)) for size in array.shape)
    return (
        _varint_field(1, dtype)
        + _bytes_field(2, dims)
        + _bytes_field(4, np.ascontiguousarray(array).tobytes())
    )


def encode_model_spec(
    name: str, signature_name: str, version: int | None = None, version_label: str | None = None
) -> bytes:
    """ModelSpec{name=1, oneof{version=2 Int64Value{value=1}, version_label=4}, signature_name=3}.

    Neither version nor label asks for the latest version; both at once cannot be sent.
    """
    if version is not None and version_label is not None:
        raise ValueError("a ModelSpec names a version or a version label, not both")
    spec = _bytes_field(1, name.encode())
    if version is not None:
        # A wrapper message: present even for version 0, whose value field is then omitted.
        spec += _bytes_field(2, _varint_field(1, version) if version else b"")
    spec += _bytes_field(3, signature_name.encode())
    if version_label is not None:
        spec += _bytes_field(4, version_label.encode())
    return spec


def encode_predict_request(
    model_name: str,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    version: int | None = None,
    version_label: str | None = None,
) -> bytes:
    """PredictRequest{model_spec=1 ModelSpec, inputs=2 map<string,TensorProto>}."""
    spec = encode_model_spec(model_name, signature_name, version, version_label)
    entries = b"".join(
        _bytes_field(2, _bytes_field(1, name.encode()) + _bytes_field(2, encode_tensor(array)))
        for name, array in inputs.items()
    )
    return _bytes_field(1, spec) + entries


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of one message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == _BYTES:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        elif wire_type in (_FIXED32, _FIXED64):
            width = 4 if wire_type == _FIXED32 else 8
            yield number, wire_type, data[pos : pos + width]
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


@dataclass
class _TensorParts:
    dtype: int = 0
    shape: list[int] = field(default_factory=list)
    content: bytes = b""
    float_values: list[bytes] = field(default_factory=list)


def decode_tensor(data: bytes) -> np.ndarray:
    """A float32 TensorProto as numpy, from tensor_content or the float_val field.

    TF Serving fills float_val unless it runs with
    --enable_serialization_as_tensor_content, so both forms must be read.
    """
    parts = _TensorParts()
    for number, _, value in iter_fields(data):
        if number == 1 and isinstance(value, int):
            parts.dtype = value
        elif number == 2 and isinstance(value, bytes):
            parts.shape = _decode_shape(value)
        elif number == 4 and isinstance(value, bytes):
            parts.content = value
        elif number == 5 and isinstance(value, bytes):
            # packed (wire type 2) or one float per field (wire type 5)
            parts.float_values.append(value)
    if parts.dtype != DT_FLOAT:
        raise ValueError(f"expected a DT_FLOAT tensor, got dtype {parts.dtype}")
    raw = parts.content or b"".join(parts.float_values)
    values = np.frombuffer(raw, dtype="<f4")
    if values.size != int(np.prod(parts.shape)):
        raise ValueError(f"tensor of shape {parts.shape} carries {values.size} values")
    return values.reshape(parts.shape)


def _decode_shape(data: bytes) -> list[int]:
    sizes = []
    for number, _, dim in iter_fields(data):
        if number == 2 and isinstance(dim, bytes):
            size = next((v for n, _, v in iter_fields(dim) if n == 1 and isinstance(v, int)), 0)
            sizes.append(size)
    return sizes


@dataclass(frozen=True)
class PredictResponse:
    """The parts of PredictResponse the gateway reads."""

    outputs: dict[str, bytes]  # output name -> encoded TensorProto
    version: int | None


def decode_predict_response(data: bytes) -> PredictResponse:
    """PredictResponse{outputs=1 map<string,TensorProto>, model_spec=2{version=2{value=1}}}."""
    outputs: dict[str, bytes] = {}
    version = None
    for number, _, value in iter_fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            entry = {n: v for n, _, v in iter_fields(value)}
            key, tensor = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(tensor, bytes):
                outputs[key.decode()] = tensor
        elif number == 2:
            for n, _, v in iter_fields(value):
                if n == 2 and isinstance(v, bytes):
                    version = next((x for k, _, x in iter_fields(v) if k == 1), 0)
    return PredictResponse(outputs, version if isinstance(version, int) else None)
