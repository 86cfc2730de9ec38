"""One gRPC PredictRequest checked and turned into tensors, the outputs into a PredictResponse.

The checks and their order follow TFS/servables/tensorflow/predict_util.cc
(`RunPredict`, `PreProcessPrediction`, `VerifyRequestInputsSize`,
`PostProcessPredictionResult`), tensorflow/cc/saved_model/util.cc
`GetInputValues` and TFS/model_servers/server_core.cc (the servable handle):
1. no model_spec: INVALID_ARGUMENT "Missing ModelSpec" (predict_impl.cc);
2. the servable: Latest, Specific(version) or version_label, NOT_FOUND or
   INVALID_ARGUMENT with the messages the REST path uses (server_core.py);
3. the signature (empty name = serving_default): FAILED_PRECONDITION
   `Serving signature key "foo" not found.`;
4. the number of inputs, each signature input present, each TensorProto
   decodable (tensor_proto.py): INVALID_ARGUMENT;
5. output_filter aliases known and not repeated: INVALID_ARGUMENT;
6. at run time, the dtypes, as DirectSession's call frame checks its feeds
   (tensorflow/core/framework/function.cc `FunctionCallFrame::SetArgs`):
   INVALID_ARGUMENT "Expects arg[i] to be float but uint8 is provided", where i
   counts the feeds sorted by tensor name.
Reference: docs/tf-serving-protocol.md §6 and §5.2 (the predict failures,
"signature not in the model").

Differences: protobuf maps have no defined order, so where TF Serving walks a
map the double walks it sorted by key (it only shows in which of several
errors comes first). Signature `defaults` are not fed: every input must be sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from .errors import ServingError, invalid_argument
from .json_tensor import dtype_string
from .servable import DEFAULT_SIGNATURE, Servable
from .server_core import ServerCore
from .tensor_proto import TensorParseError, data_type_of, fill_proto, proto_to_array

Signature = Mapping[str, Any]


def find_servable(core: ServerCore, spec: model_pb2.ModelSpec) -> Servable:
    """Take a handle like ServerCore::GetServableHandle for a ModelSpec."""
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    if choice == "version_label":
        version = core.version_for_label(spec.name, spec.version_label)
    return core.servable(spec.name, version)


def find_signature(servable: Servable, signature_name: str) -> tuple[str, Signature]:
    """The signature's resolved name and its SignatureDef (as JSON), or FAILED_PRECONDITION."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_def_json.get(name)
    if signature is None:
        raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
    return name, signature


def read_inputs(signature: Signature, request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    """Check the request's inputs against the signature and decode them."""
    expected = signature.get("inputs", {})
    sent = request.inputs
    if len(sent) != len(expected):
        extra = sorted(set(sent) - set(expected))
        missing = sorted(set(expected) - set(sent))
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{_join(sent)}}}) != len({{{_join(expected)}}}). "
            f"Sent extra: {{{_join(extra)}}}. Missing but required: {{{_join(missing)}}}."
        )
    tensors = {}
    for alias in sorted(expected):
        if alias not in sent:
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {expected[alias].get('name', '')}) "
                "not found in request and no default value provided. Inputs expected to be "
                f"in the request {{{_join(sent)}}}, or default input alias set: "
            )
        try:
            tensors[alias] = proto_to_array(sent[alias])
        except TensorParseError:
            raise invalid_argument(f"tensor parsing error: {alias}") from None
    return tensors


def select_outputs(signature: Signature, output_filter: Iterable[str]) -> list[str]:
    """The output aliases to return: the filter's, checked, or all of the signature's."""
    outputs = signature.get("outputs", {})
    selected: list[str] = []
    for alias in output_filter:
        if alias not in outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{_join(outputs)}}}."
            )
        if alias in selected:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        selected.append(alias)
    return selected or sorted(outputs)


def check_dtypes(signature: Signature, tensors: Mapping[str, np.ndarray]) -> None:
    """Reject feeds whose dtype differs from the signature's, like FunctionCallFrame::SetArgs."""
    inputs = signature.get("inputs", {})
    feeds = sorted((inputs[alias].get("name", alias), alias) for alias in tensors)
    for index, (_feed, alias) in enumerate(feeds):
        expected = types_pb2.DataType.Value(inputs[alias].get("dtype", "DT_INVALID"))
        provided = data_type_of(tensors[alias])
        if expected != provided:
            raise invalid_argument(
                f"Expects arg[{index}] to be {_type_name(expected)} but "
                f"{_type_name(provided)} is provided"
            )


def write_response(
    response: predict_pb2.PredictResponse,
    outputs: Mapping[str, np.ndarray],
    aliases: Iterable[str],
    as_content: bool,
) -> None:
    """Fill response.outputs with the selected outputs, typed fields or tensor_content."""
    for alias in aliases:
        fill_proto(response.outputs[alias], outputs[alias], as_content)


def _type_name(data_type: int) -> str:
    return dtype_string(types_pb2.DataType.Name(data_type))


def _join(names: Iterable[str]) -> str:
    return ",".join(sorted(names))
