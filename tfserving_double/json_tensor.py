"""One JSON value to one numpy tensor, checked like TF Serving's FillTensorProto.

Follows TFS/util/json_tensor.cc (`GetDenseTensorShape`, `FillTensorProto`,
`AddValueToTensor`, `JsonDecodeBase64Object`, `IsValBase64Object`). The shape is
read along first elements, every list must match it, every scalar must suit
the signature's dtype. Reference: docs/tf-serving-protocol.md §3 (values,
numbers) and §5.2 (the predict failures).

Speed: a list that would pass every check is turned into an array by one
`np.asarray` call (`fast_tensor`). Anything it cannot vouch for (strings, base64
objects, mixed or out-of-range values, ragged lists) is walked value by value,
which yields TF Serving's exact error message.

Numbers follow §3: DT_FLOAT/DT_DOUBLE take any JSON number (float32
overflow becomes inf); the integer types need JSON integers (`1.0` is
rejected) within IsInt/IsInt64/IsUint/IsUint64 range; 8- and 16-bit types are
then narrowed like TensorProto.int_val (300 for DT_UINT8 becomes 44, as TF's
Tensor::FromProto does); half, bfloat16 and complex types are UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from .errors import ServingError, invalid_argument
from .json_values import json_type_name, value_to_string

_FLOAT_DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64}
# DataType name -> (numpy type, lowest and highest JSON integer accepted by AddValueToTensor).
_INT_DTYPES: dict[str, tuple[Any, int, int]] = {
    "DT_INT32": (np.int32, -(2**31), 2**31 - 1),
    "DT_INT16": (np.int16, -(2**31), 2**31 - 1),
    "DT_INT8": (np.int8, -(2**31), 2**31 - 1),
    "DT_UINT8": (np.uint8, -(2**31), 2**31 - 1),
    "DT_INT64": (np.int64, -(2**63), 2**63 - 1),
    "DT_UINT32": (np.uint32, 0, 2**32 - 1),
    "DT_UINT64": (np.uint64, 0, 2**64 - 1),
}
_SUPPORTED = {*_FLOAT_DTYPES, *_INT_DTYPES, "DT_BOOL", "DT_STRING"}
_NUMBER_KINDS = (np.dtype(np.int64), np.dtype(np.uint64), np.dtype(np.float64))


def dtype_string(dtype: str) -> str:
    """TF's DataTypeString: DT_UINT8 -> uint8, DT_HALF -> half."""
    return dtype.removeprefix("DT_").lower()


def is_b64_object(value: Any) -> bool:
    """True for {"b64": "<string>"}, the only way JSON carries binary (IsValBase64Object)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def tensor_from_json(value: Any, dtype: str, allow_fast: bool) -> np.ndarray:
    """Build the tensor for one input from its JSON value (a scalar or nested lists)."""
    if allow_fast:
        tensor = fast_tensor(value, dtype)
        if tensor is not None:
            return tensor
    shape = dense_shape(value)
    values: list[Any] = []
    fill_values(value, 0, shape, dtype, values)
    return values_to_array(values, shape, dtype)


def fast_tensor(value: Any, dtype: str) -> np.ndarray | None:
    """Convert a homogeneous numeric/bool list in one numpy call, or give up (None)."""
    if not isinstance(value, list) or dtype not in _SUPPORTED or dtype == "DT_STRING":
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if dtype == "DT_BOOL":
        return array if array.dtype == np.bool_ else None
    if dtype in _FLOAT_DTYPES:
        if array.dtype not in _NUMBER_KINDS:
            return None
        with np.errstate(over="ignore"):
            return array.astype(_FLOAT_DTYPES[dtype], copy=False)
    target, low, high = _INT_DTYPES[dtype]
    if array.dtype not in _NUMBER_KINDS[:2]:
        return None
    if array.size and (array.min() < low or array.max() > high):
        return None
    return array.astype(target, copy=False)


def dense_shape(value: Any) -> list[int]:
    """Shape read along first elements, like json_tensor.cc `GetDenseTensorShape`."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def fill_values(value: Any, level: int, shape: list[int], dtype: str, out: list[Any]) -> None:
    """Check one JSON value against the expected shape and append its leaves (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {value_to_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for element in value:
        fill_values(element, level + 1, shape, dtype, out)


def _type_error(value: Any, dtype: str) -> ServingError:
    return invalid_argument(
        f"JSON Value: {value_to_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dtype_string(dtype)}"
    )


def _leaf(value: Any, dtype: str) -> Any:
    """Validate one scalar like `AddValueToTensor` (objects: `JsonDecodeBase64Object`)."""
    if isinstance(value, dict):
        if dtype != "DT_STRING":
            raise _type_error(value, dtype)
        if not is_b64_object(value):
            raise invalid_argument(
                f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data"
            )
        return _decode_b64(value["b64"])
    kind = type(value)
    if dtype in _FLOAT_DTYPES:
        if kind is int or kind is float:
            return value
    elif dtype in _INT_DTYPES:
        _target, low, high = _INT_DTYPES[dtype]
        if kind is int and low <= value <= high:
            return value
    elif dtype == "DT_BOOL":
        if kind is bool:
            return value
    elif dtype == "DT_STRING":
        if kind is str:
            return value.encode("utf-8", "surrogateescape")
    else:
        raise ServingError(
            "UNIMPLEMENTED",
            f"Conversion of JSON Value: {value_to_string(value)} to type: {dtype_string(dtype)}",
        )
    raise _type_error(value, dtype)


def _decode_b64(text: str) -> bytes:
    # absl::Base64Unescape accepts missing padding; reject anything else that is not base64.
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_argument("Unable to base64 decode") from exc


def values_to_array(values: list[Any], shape: list[int], dtype: str) -> np.ndarray:
    """Turn checked leaf values (from fill_values) into an array of the signature's dtype."""
    if dtype == "DT_STRING":
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    if dtype in _FLOAT_DTYPES:
        with np.errstate(over="ignore"):
            return np.array(values, dtype=np.float64).astype(_FLOAT_DTYPES[dtype]).reshape(shape)
    if dtype == "DT_BOOL":
        return np.array(values, dtype=np.bool_).reshape(shape)
    target, _low, _high = _INT_DTYPES[dtype]
    wide = np.uint64 if dtype == "DT_UINT64" else np.int64
    return np.array(values, dtype=wide).astype(target).reshape(shape)
