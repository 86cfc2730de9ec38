"""Predict request JSON to numpy tensors.

Follows TFS/util/json_tensor.cc (`FillPredictRequestFromJson`, `FillSignature`,
`FillTensorMapFromInstancesList`, `FillTensorMapFromInputsMap`,
`FillTensorProto`, `AddValueToTensor`, `JsonDecodeBase64Object`) and
g3doc/api_rest.md. Reference: docs/tf-serving-protocol.md §3 (the request,
numbers) and §5.2 (the predict failures).

Each value becomes a tensor in json_tensor.py; this module handles the
document: "signature_name", "instances" (row form: one element per example,
objects when the signature has several inputs) versus "inputs" (columnar form),
and the checks across the elements of "instances".

Differences from TF Serving: protobuf maps have no defined order, so where TF
Serving walks the signature's inputs the double walks them sorted by name (it
only shows in which of several errors is reported first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ServingError, invalid_argument
from .json_tensor import (
    dense_shape,
    fast_tensor,
    fill_values,
    is_b64_object,
    tensor_from_json,
    values_to_array,
)
from .json_values import format_error, value_to_string

ROW = "row"
COLUMNAR = "columnar"


def read_signature_name(doc: Mapping[str, Any]) -> str:
    """Read the optional "signature_name" like json_tensor.cc `FillSignature`."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def read_predict_inputs(
    doc: Mapping[str, Any], inputs: Mapping[str, str], allow_fast: bool
) -> tuple[dict[str, np.ndarray], str]:
    """Build the input tensors from "instances" (row) or "inputs" (columnar).

    `inputs` maps each input name of the signature to its DataType name.
    `allow_fast` must be False when the body holds `true`/`false` tokens, because
    numpy would silently turn booleans inside numeric lists into numbers.
    """
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances:
        if has_inputs:
            raise format_error(
                doc,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                "keys to exist ",
            )
        instances = doc["instances"]
        # Word for word from tensorflow_serving/util/json_tensor.cc, "an list" included.
        if not isinstance(instances, list):
            raise format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(doc, "No values in 'instances' array")
        return _tensors_from_instances(instances, inputs, allow_fast), ROW
    if has_inputs:
        return _tensors_from_inputs(doc["inputs"], inputs, allow_fast), COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _tensors_from_inputs(
    value: Any, inputs: Mapping[str, str], allow_fast: bool
) -> dict[str, np.ndarray]:
    names = sorted(inputs)
    if not isinstance(value, dict) or is_b64_object(value):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        return {names[0]: tensor_from_json(value, inputs[names[0]], allow_fast)}
    tensors = {}
    for name in names:
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = tensor_from_json(value[name], inputs[name], allow_fast)
    return tensors


def _tensors_from_instances(
    instances: list[Any], inputs: Mapping[str, str], allow_fast: bool
) -> dict[str, np.ndarray]:
    if not isinstance(instances[0], dict) and len(inputs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    objects = _is_element_object(instances[0])
    if allow_fast:
        tensors = _fast_instances(instances, inputs, objects)
        if tensors is not None:
            return tensors
    return _exact_instances(instances, inputs, objects)


def _fast_instances(
    instances: list[Any], inputs: Mapping[str, str], objects: bool
) -> dict[str, np.ndarray] | None:
    if not objects:
        name = sorted(inputs)[0]
        tensor = fast_tensor(instances, inputs[name])
        return None if tensor is None else {name: tensor}
    names = set(inputs)
    if not all(isinstance(item, dict) and item.keys() == names for item in instances):
        return None
    tensors = {}
    for name in names:
        tensor = fast_tensor([item[name] for item in instances], inputs[name])
        if tensor is None:
            return None
        tensors[name] = tensor
    return tensors


class _Column:
    """Values of one input gathered from the "instances" list, plus its item shape."""

    def __init__(self, shape: list[int], size: int) -> None:
        self.shape = shape
        self.size = size
        self.values: list[Any] = []


def _exact_instances(
    instances: list[Any], inputs: Mapping[str, str], objects: bool
) -> dict[str, np.ndarray]:
    columns: dict[str, _Column] = {}
    first_name = sorted(inputs)[0]
    for index, item in enumerate(instances):
        if objects:
            if not _is_element_object(item):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list"
                )
            for key, value in item.items():
                try:
                    _add_instance_item(value, key, inputs, columns)
                except ServingError as exc:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {exc.status_string()}"
                    ) from exc
            if item.keys() != inputs.keys():
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_to_string(item)} keys must be equal to: {','.join(sorted(inputs))}"
                )
        else:
            if _is_element_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            try:
                _add_instance_item(item, first_name, inputs, columns)
            except ServingError as exc:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {exc.status_string()}"
                ) from exc
    return {
        name: values_to_array(column.values, [len(instances), *column.shape], inputs[name])
        for name, column in columns.items()
    }


def _add_instance_item(
    item: Any, name: str, inputs: Mapping[str, str], columns: dict[str, _Column]
) -> None:
    if name not in inputs:
        raise invalid_argument(f"JSON object: does not have named input: {name}")
    shape = dense_shape(item)
    values: list[Any] = []
    fill_values(item, 0, shape, inputs[name], values)
    column = columns.get(name)
    if column is None:
        column = columns[name] = _Column(shape, len(values))
    elif column.size != len(values):
        raise invalid_argument(f"Expecting tensor size: {column.size} but got: {len(values)}")
    elif column.shape != shape:
        raise invalid_argument(
            f"Expecting shape {_shape_text(column.shape)} but got: {_shape_text(shape)}"
        )
    column.values.extend(values)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(dim) for dim in shape) + "]"


def batch_size(tensors: Mapping[str, np.ndarray]) -> int:
    """Examples in a request: dim 0 of the first input (the instances count for rows)."""
    first = tensors[sorted(tensors)[0]]
    return int(first.shape[0]) if first.ndim else 1
