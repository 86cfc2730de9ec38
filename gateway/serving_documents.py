"""TF Serving's status and metadata documents, written for a model this process runs.

The original API hands clients TF Serving's own JSON: `/health` carries the
status document (`GET /v1/models/NAME`) and `/model` the metadata document
(`GET /v1/models/NAME/versions/N/metadata`). The TF Serving backend passes the
server's documents through untouched; the embedded backend has no server, so
it writes the same shapes here, field for field, from what its runtime knows.
Shapes follow docs/tf-serving-protocol.md: versions and dimension sizes are
JSON strings there because TF Serving prints int64 values as strings.
"""

from typing import Any

from gateway.backend import ModelSignature

# tensorflow/core/protobuf/error_codes.proto names, as TF Serving's JSON spells them.
_OK = "OK"
_UNKNOWN = "UNKNOWN"
_PREDICT_METHOD = "tensorflow/serving/predict"


def status_document(version: int | None, state: str, error: str = "") -> dict[str, Any]:
    """TF Serving's model status JSON for one version in `state` (no version: an empty list)."""
    if version is None:
        return {"model_version_status": []}
    failed = state == "END" and bool(error)
    return {
        "model_version_status": [
            {
                "version": str(version),
                "state": state,
                "status": {
                    "error_code": _UNKNOWN if failed else _OK,
                    "error_message": error if failed else "",
                },
            }
        ]
    }


def metadata_document(model_name: str, signature: ModelSignature) -> dict[str, Any]:
    """TF Serving's metadata JSON for a version whose only signature is `signature`."""
    width, height = signature.image_size
    name = signature.signature_name
    definition = {
        "inputs": {
            signature.input_name: _tensor_info(
                f"{name}_{signature.input_name}:0", "DT_UINT8", [-1, height, width, 3]
            )
        },
        "outputs": {
            signature.output_name: _tensor_info(
                "StatefulPartitionedCall:0", "DT_FLOAT", [-1, signature.num_classes]
            )
        },
        "method_name": _PREDICT_METHOD,
        "defaults": {},
    }
    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": str(signature.version)},
        "metadata": {"signature_def": {"signature_def": {name: definition}}},
    }


def _tensor_info(tensor_name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in dims],
            "unknown_rank": False,
        },
        "name": tensor_name,
    }
