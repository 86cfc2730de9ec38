"""Output tensors to predict response JSON.

Follows TFS/util/json_tensor.cc (`MakeJsonFromTensors`,
`MakeRowFormatJsonFromTensors`, `MakeColumnarFormatJsonFromTensors`,
`AddTensorValues`, `WriteDecimal`). Reference:
docs/tf-serving-protocol.md §4.

A row request gets `{"predictions": [...]}` (one entry per batch item, an
object per item when there are several outputs), a columnar one
`{"outputs": ...}`. DT_STRING outputs whose name ends in `_bytes` are written
as `{"b64": ...}`.

Differences from TF Serving:
- Float outputs are written by orjson (the shortest text that reads back as the
  same float32/float64), while RapidJSON's `WriteDecimal` uses the shortest `%g`
  that round-trips, else `%.9g`: TF Serving writes `9e+06`, `3e-05` and
  `1.43577434e+09` where the double writes `9000000.0`, `0.00003` and
  `1435774300.0`. Both read back as the same float32. NaN and infinities are
  written `NaN`, `Infinity` and `-Infinity` by both.
- Outputs are written in sorted name order (protobuf map order is unspecified)
  and without RapidJSON's pretty-printing whitespace.
- DT_STRING outputs that are not valid UTF-8 (and not named `*_bytes`) get
  U+FFFD replacement characters; RapidJSON copies the raw bytes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from .errors import invalid_argument
from .json_request import COLUMNAR

_NULL = re.compile(rb"null")


def write_predict_response(outputs: Mapping[str, np.ndarray], request_format: str) -> bytes:
    """Serialise output tensors as {"predictions": ...} (row) or {"outputs": ...} (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if request_format == COLUMNAR:
        if len(names) == 1:
            return b'{"outputs":' + _tensor_json(names[0], outputs[names[0]]) + b"}"
        members = (orjson.dumps(name) + b":" + _tensor_json(name, outputs[name]) for name in names)
        return b'{"outputs":{' + b",".join(members) + b"}}"
    batch = -1
    for name in names:
        tensor = outputs[name]
        if tensor.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and tensor.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {tensor.shape[0]} "
                f"expecting: {batch}"
            )
        batch = tensor.shape[0]
    if len(names) == 1:
        return b'{"predictions":' + _tensor_json(names[0], outputs[names[0]]) + b"}"
    keys = {name: orjson.dumps(name) + b":" for name in names}
    items = (
        b"{"
        + b",".join(keys[name] + _tensor_json(name, outputs[name][i, ...]) for name in names)
        + b"}"
        for i in range(batch)
    )
    return b'{"predictions":[' + b",".join(items) + b"]}"


def _tensor_json(name: str, tensor: np.ndarray) -> bytes:
    """One tensor as nested JSON lists (a bare value for a scalar)."""
    tensor = np.ascontiguousarray(tensor) if tensor.ndim else tensor
    if tensor.dtype == object:
        return orjson.dumps(_strings(tensor.tolist(), name.endswith("_bytes")))
    if tensor.dtype.kind not in "fiub":
        raise invalid_argument(f"Failed to write JSON value for tensor type: {tensor.dtype.name}")
    text = orjson.dumps(
        tensor.reshape(1) if tensor.ndim == 0 else tensor, option=orjson.OPT_SERIALIZE_NUMPY
    )
    if tensor.ndim == 0:
        text = text[1:-1]
    if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
        text = _spell_non_finite(text, tensor)
    return text


def _spell_non_finite(text: bytes, tensor: np.ndarray) -> bytes:
    # orjson writes NaN and infinities as null; in a float tensor's JSON every null is one
    # of them, in the same (row-major) order as the non-finite values.
    flat = tensor.ravel()
    tokens = iter(
        b"NaN" if np.isnan(value) else (b"-Infinity" if value < 0 else b"Infinity")
        for value in flat[~np.isfinite(flat)]
    )
    return _NULL.sub(lambda _match: next(tokens), text)


def _strings(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings(element, as_b64) for element in value]
    if as_b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
