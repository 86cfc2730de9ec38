"""One loaded model version: its signature defs and the functions that run them.

TF Serving loads a version with the C++ SavedModel loader into a
SavedModelBundle and runs signatures through a Session
(TFS/servables/tensorflow/saved_model_bundle_factory.cc, predict_util.cc). The
double loads with `tf.saved_model.load` and calls the restored signature
function. Signature metadata (dtypes, shapes, tensor names, method names,
`__saved_model_init_op`) is read from the MetaGraphDef in saved_model.pb, as
TFS/servables/tensorflow/get_model_metadata_impl.cc returns it, and the same
TensorInfo dtypes drive request parsing (http_rest_api_handler.cc `GetInfoMap`).
Reference: docs/tf-serving-protocol.md §2.2, §3 and §10.

Difference: TF Serving feeds tensors to graph nodes without checking them
against the signature, so a wrong shape fails inside an op with that op's
message (`input must be 4-dimensional...`). The restored function checks its
input signature first, so the double reports TF's binding error
(`Binding inputs to tf.function failed due to ...`), also as INVALID_ARGUMENT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format, message, text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from .errors import ServingError, code_name, invalid_argument

DEFAULT_SIGNATURE = "serving_default"
_EAGER_PREAMBLE = re.compile(
    r"^Graph execution error:\n\n(?:Detected at node .*? defined at \(most recent call last\):\n"
    r"(?:<stack traces unavailable>\n)?)?"
)
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


class Servable:
    """A loaded SavedModel version that answers predict calls."""

    def __init__(
        self,
        version: int,
        signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
        functions: Mapping[str, Callable[..., Any]],
        keep_alive: object,
    ) -> None:
        self.version = version
        self._signature_defs = dict(signature_defs)
        self._functions = functions
        self._keep_alive = keep_alive
        self._input_dtypes = {
            name: {key: types_pb2.DataType.Name(info.dtype) for key, info in sig.inputs.items()}
            for name, sig in self._signature_defs.items()
        }
        self.signature_def_json = {
            name: json_format.MessageToDict(
                sig, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for name, sig in self._signature_defs.items()
        }

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """Input name -> DataType name for a signature (http_rest_api_handler.cc `GetInfoMap`)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._input_dtypes:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return self._input_dtypes[name]

    def run(self, signature_name: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one signature on numpy inputs and return numpy outputs."""
        name = signature_name or DEFAULT_SIGNATURE
        function = self._functions.get(name)
        if function is None:
            if name in self._signature_defs:
                raise ServingError("INTERNAL", f"Signature {name} has no function to run")
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        try:
            outputs = function(**tensors)
        except tf.errors.OpError as exc:
            raise ServingError(code_name(exc.error_code), _runtime_message(exc.message)) from exc
        except (TypeError, ValueError) as exc:
            raise invalid_argument(_binding_message(str(exc))) from exc
        return {key: value.numpy() for key, value in outputs.items()}


def _runtime_message(text: str) -> str:
    # Eager execution wraps the op's status ("Incompatible shapes: [2] vs. [3]\n\t [[{{node
    # sub}}]]", what a Session returns to TF Serving) in a preamble and an [Op:...] suffix.
    return _OP_SUFFIX.sub("", _EAGER_PREAMBLE.sub("", text))


def _binding_message(text: str) -> str:
    # TF appends the whole received array to the message; keep the part that explains it.
    head, separator, _rest = text.partition(". Received args:")
    return head if separator else text.splitlines()[0]


def load_servable(version: int, path: str, tags: list[str]) -> Servable:
    """Load one version directory; a failure is raised as the ServingError TF reports."""
    meta_graph = _read_meta_graph(path, tags)
    try:
        loaded = tf.saved_model.load(path, tags=tags)
    except tf.errors.OpError as exc:
        raise ServingError(code_name(exc.error_code), exc.message) from exc
    except OSError as exc:
        raise ServingError("NOT_FOUND", str(exc)) from exc
    functions = dict(getattr(loaded, "signatures", {}))
    return Servable(version, meta_graph.signature_def, functions, loaded)


def _read_meta_graph(path: str, tags: list[str]) -> meta_graph_pb2.MetaGraphDef:
    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(path, "saved_model.pb")
    text = os.path.join(path, "saved_model.pbtxt")
    if os.path.exists(binary):
        with open(binary, "rb") as handle:
            data = handle.read()
        try:
            saved_model.ParseFromString(data)
        except message.DecodeError as exc:
            raise ServingError("DATA_LOSS", f"Can't parse {binary} as binary proto") from exc
    elif os.path.exists(text):
        with open(text, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    else:
        raise ServingError(
            "NOT_FOUND",
            "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{path}. Check that the directory exists and that you have the right "
            "permissions for accessing it.",
        )
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    raise ServingError(
        "NOT_FOUND",
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli`",
    )
