"""POST /predict: one upload in, the labelled top-k of the model version that answered out.

The handler reads the upload, asks gateway/traffic.py where it goes, lets the
fleet's lane for that target classify it within the request's deadline
(gateway/deadlines.py), and builds the original contract's body, with what is
new beside it (README, POST /predict): the label routed by, low_confidence, and
how the target was chosen.
"""

import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.responses import Response

from gateway import metrics, paths, tracing
from gateway.deadlines import current_deadline, request_timeout, run_bounded
from gateway.dependencies import FleetDep, SettingsDep, TrafficDep
from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.fleet import Fleet
from gateway.lanes import Lane
from gateway.pipeline import Classification
from gateway.problems import documented
from gateway.responses import json_response
from gateway.target import Target
from gateway.traffic import Routed, Traffic

MAX_TOP_K = 1001
INT64_MAX = 2**63 - 1
# Model names and version labels a request may give: what a folder name or a
# TF Serving label can safely be, and nothing that needs escaping in a URL.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# The sentence the original API sent; its clients match on it.
PREDICT_NOTE = "Class IDs correspond to ImageNet labels. Top prediction is first."

router = APIRouter()


@router.post(
    paths.PREDICT,
    summary="Classify one image",
    responses=documented(400, 401, 404, 408, 413, 415, 422, 502, 503, 504),
)
async def predict(
    request: Request,
    file: Annotated[
        UploadFile,
        # Documentation only: the gateway checks the bytes itself (400 empty_file).
        File(
            description="The image: JPEG, PNG, GIF, BMP, WebP or TIFF",
            json_schema_extra={"minLength": 1},
        ),
    ],
    settings: SettingsDep,
    fleet: FleetDep,
    traffic: TrafficDep,
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K)] = None,
    model: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="default: MODEL_NAME")
    ] = None,
    version: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    label: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="a version label: stable, canary")
    ] = None,
) -> Response:
    started = time.perf_counter()
    if version is not None and label is not None:
        raise InvalidRequest("Give ?version= or ?label=, not both.")
    requested = Target(model or settings.model_name, version, label)
    routed = traffic.route(requested, request.headers, fleet.models, fleet.pinned_model)
    with tracing.stage("upload"):
        data = await file.read(settings.max_upload_bytes + 1)
    uploaded = time.perf_counter()
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge.over(settings.max_upload_bytes)
    timeout = request_timeout(request.headers, settings.request_timeout_seconds)
    top = top_k or settings.default_top_k
    lane, routed, result = await run_bounded(
        _classify(fleet, traffic, routed, data, top), request.receive, timeout
    )
    target = routed.target
    low_confidence = traffic.record(fleet, routed, result, data)
    width, height = result.original_size
    body: dict[str, Any] = {
        "success": True,
        "filename": file.filename,
        "original_size": f"{width}x{height}",
        "original_width": width,
        "original_height": height,
        "format": result.image_format,
        "predictions": result.predictions,
        "inference_time_ms": round(result.inference_ms, 2),
        "preprocess_time_ms": round(result.preprocess_ms, 2),
        "total_time_ms": round((time.perf_counter() - started) * 1000.0, 2),
        "model": {
            "name": target.model,
            "version": str(result.version),
            "backend": lane.backend.name,
            "weights": result.assets.weights,
            "weights_source": result.assets.export_info.source,
        },
        "note": PREDICT_NOTE,
        "low_confidence": low_confidence,
        "routing": routed.report(),
    }
    if target.label is not None:
        body["model"]["label"] = target.label
    if result.assets.warning:
        body["warning"] = result.assets.warning
    if result.assets.labels_warning:
        body["labels_warning"] = result.assets.labels_warning
    if result.assets.problems:
        body["model_files"] = result.assets.report()
    total = time.perf_counter() - started
    _record_stages(request, target, result, uploaded - started, total)
    return json_response(body, headers={"X-Model-Version": str(result.version)})


def _record_stages(
    request: Request, target: Target, result: Classification, upload_s: float, total_s: float
) -> None:
    """Time per stage into the metrics and, for the access line, the request's state."""
    version = str(result.version)
    metrics.STAGE_SECONDS.labels(target.model, "upload").observe(upload_s)
    metrics.STAGE_SECONDS.labels(target.model, "total").observe(total_s)
    metrics.OVERHEAD_SECONDS.labels(target.model, version).observe(
        max(0.0, total_s - result.model_ms / 1000.0)
    )
    request.state.access_log = {
        "model": target.model,
        "version": version,
        "label": target.label or "",
        "stages_ms": {
            "upload": round(upload_s * 1000.0, 3),
            "decode": round(result.preprocess_ms, 3),
            "queue": round(result.queue_ms, 3),
            "model": round(result.model_ms, 3),
            "ranking": round(result.ranking_ms, 3),
        },
    }


async def _classify(
    fleet: Fleet, traffic: Traffic, routed: Routed, data: bytes, top_k: int
) -> tuple[Lane, Routed, Classification]:
    """Find (or open) the lane, then classify there, all within the request's deadline."""
    lane, routed = await traffic.lane_for(fleet, routed, current_deadline())
    return lane, routed, await lane.classifier.classify(data, top_k)
