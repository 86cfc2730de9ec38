"""What TF Serving's status and metadata documents say (docs/tf-serving-protocol.md §2).

Both come from another process, so any shape of them is possible: a status
that does not parse is reported as UNKNOWN, and metadata that does not fit
becomes a ValueError saying what was expected.
"""

from typing import Any

import httpx

from gateway.backend import ModelSignature, ModelStatus, probabilities_output

SIGNATURE_NAME = "serving_default"


def parse_status(response: httpx.Response, pinned: int | None = None) -> ModelStatus:
    """Readiness from a status document: the highest AVAILABLE version, or the pinned one."""
    try:
        document = response.json()
        versions = _versions(document)
    except (ValueError, KeyError, TypeError):
        return ModelStatus(False, "UNKNOWN", detail="TF Serving sent an unreadable status")
    if pinned is not None:
        versions = [(version, state) for version, state in versions if version == pinned]
    available = [version for version, state in versions if state == "AVAILABLE"]
    if available:
        return ModelStatus(True, "AVAILABLE", max(available), document=document)
    if not versions:
        return ModelStatus(
            False, "UNKNOWN", detail="TF Serving lists no version", document=document
        )
    version, state = max(versions)
    return ModelStatus(False, state, version, f"version {version} is {state}", document)


def state_of(document: dict[str, Any] | None, version: int) -> str:
    """The state a status document gives `version`; UNKNOWN when it is not listed."""
    try:
        states = dict(_versions(document))
    except (KeyError, TypeError, ValueError):
        return "UNKNOWN"
    return states.get(version, "UNKNOWN")


def parse_signature(metadata: Any, version: int) -> ModelSignature:
    """Pick input and output names and the image size out of TF Serving's metadata JSON."""
    try:
        signature = metadata["metadata"]["signature_def"]["signature_def"][SIGNATURE_NAME]
        inputs, outputs = dict(signature["inputs"]), dict(signature["outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"it has no readable {SIGNATURE_NAME!r} signature") from exc
    if len(inputs) != 1:
        raise ValueError(f"expected one input, the signature has {sorted(inputs)}")
    if not outputs:
        raise ValueError("the signature has no output")
    input_name, tensor = next(iter(inputs.items()))
    dtype = tensor.get("dtype") if isinstance(tensor, dict) else None
    if dtype != "DT_UINT8":
        raise ValueError(f"input {input_name!r} is {dtype}; the gateway sends DT_UINT8")
    dims = _dims(tensor)
    if len(dims) != 4 or dims[3] != 3 or min(dims[1:3]) <= 0:
        raise ValueError(f"input {input_name!r} has shape {dims}; expected [-1, H, W, 3]")
    output_name = probabilities_output(outputs)
    output_dims = _dims(outputs[output_name])
    if len(output_dims) != 2 or output_dims[1] <= 0:
        raise ValueError(f"output {output_name!r} has shape {output_dims}; expected [-1, classes]")
    return ModelSignature(
        version=version,
        input_name=input_name,
        output_name=output_name,
        image_size=(dims[2], dims[1]),
        num_classes=output_dims[1],
        signature_name=SIGNATURE_NAME,
    )


def _versions(document: Any) -> list[tuple[int, str]]:
    """(version, state) pairs of a status document; raises on an unreadable one."""
    return [(int(e["version"]), str(e["state"])) for e in document["model_version_status"]]


def _dims(tensor: Any) -> list[int]:
    """A TensorInfo's dimension sizes; [] when the rank is unknown or the entry is malformed."""
    try:
        return [int(dim["size"]) for dim in tensor["tensor_shape"]["dim"]]
    except (KeyError, TypeError, ValueError):
        return []
