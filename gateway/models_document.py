"""The body of GET /models: every model, every version, its state, labels and provenance."""

import contextlib
from typing import Any

from gateway.backend import ModelSignature
from gateway.errors import BackendUnavailable
from gateway.fleet import Fleet
from gateway.model_assets import load_assets
from gateway.model_config import ModelEntry
from gateway.target import Target
from gateway.tfserving.catalog import VersionState


def signature_summary(signature: ModelSignature) -> dict[str, Any]:
    """A signature as the gateway uses it: input pixels in, class probabilities out."""
    width, height = signature.image_size
    return {
        "name": signature.signature_name,
        "inputs": {signature.input_name: {"dtype": "uint8", "shape": [-1, height, width, 3]}},
        "outputs": {
            signature.output_name: {"dtype": "float32", "shape": [-1, signature.num_classes]}
        },
    }


async def models_document(fleet: Fleet, default_model: str) -> dict[str, Any]:
    """What /models answers: read from the model set, the lanes and, for TF Serving, its status."""
    models = [
        await _model(fleet, entry, entry.name == default_model)
        for entry in fleet.models.models.values()
    ]
    body: dict[str, Any] = {
        "default_model": default_model,
        "models_from": fleet.models.source,
        "models": models,
    }
    if fleet.config_error:
        body["config_error"] = fleet.config_error
    return body


async def _model(fleet: Fleet, entry: ModelEntry, default: bool) -> dict[str, Any]:
    problem = ""
    try:
        labels = await fleet.served.labels(entry)
        states = await fleet.served.states(entry)
    except BackendUnavailable as exc:
        # What the lanes hold is still known; say why the rest is not.
        problem, labels, states = exc.detail, {}, await _lane_versions(fleet, entry)
    versions = []
    for state in states:
        assets = load_assets(entry.path, state.version)
        signature = await _signature(fleet, entry, state.version)
        item: dict[str, Any] = {
            "version": state.version,
            "state": state.state,
            "labels": sorted(label for label, named in labels.items() if named == state.version),
            "weights": assets.weights,
            "trained": assets.trained,
            "weights_source": assets.export_info.source,
            "exported_at": assets.export_info.exported_at,
            "signature": signature_summary(signature) if signature else None,
        }
        if state.error:
            item["error"] = state.error
        versions.append(item)
    body = {
        "name": entry.name,
        "default": default,
        "version_policy": entry.policy.describe(),
        "labels": labels,
        "versions": versions,
    }
    if problem:
        body["error"] = problem
    return body


async def _lane_versions(fleet: Fleet, entry: ModelEntry) -> list[VersionState]:
    """The versions the model's lanes serve now, when the model server cannot be asked."""
    held = {
        version
        for lane in fleet.lanes()
        if lane.target.model == entry.name and (version := lane.backend.served_version())
    }
    return [VersionState(version, "AVAILABLE") for version in sorted(held, reverse=True)]


async def _signature(fleet: Fleet, entry: ModelEntry, version: int) -> ModelSignature | None:
    """The version's signature from a lane that holds it, or else from TF Serving's metadata."""
    for lane in fleet.lanes():
        if lane.target.model != entry.name or lane.backend.served_version() != version:
            continue
        with contextlib.suppress(BackendUnavailable):
            signature = await lane.backend.signature()
            if signature.version == version:
                return signature
    with contextlib.suppress(BackendUnavailable):
        return await fleet.served.signature(Target(entry.name, version=version))
    return None
