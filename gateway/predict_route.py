"""POST /predict: one upload in, the labelled top-k of the model version that answered out.

The handler reads the upload, asks gateway/traffic.py where it goes, lets the
fleet's lane for that target classify it within the request's deadline
(gateway/deadlines.py), and builds the original contract's body, with what is
new beside it (README, POST /predict): the label routed by, low_confidence, and
how the target was chosen.
"""

import time
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from starlette.responses import Response

from gateway import metrics, paths, tracing
from gateway.deadlines import current_deadline, run_bounded
from gateway.dependencies import FleetDep, SettingsDep, TrafficDep
from gateway.errors import MissingFile, PayloadTooLarge
from gateway.fleet import Fleet
from gateway.lanes import Lane
from gateway.pipeline import Classification
from gateway.prediction_body import prediction_body
from gateway.prediction_query import PredictionQueryDep
from gateway.problems import documented
from gateway.raw_upload import is_raw_upload, raw_filename, read_raw_body
from gateway.request_bodies import PREDICT_BODY
from gateway.responses import json_response
from gateway.target import Target
from gateway.traffic import Routed, Traffic

MISSING_IMAGE = (
    "Send the image as multipart/form-data in a field named 'file' "
    f"(curl -F file=@cat.jpg http://localhost:8000{paths.PREDICT}), or as the whole body "
    "with its Content-Type (curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' ...)."
)

router = APIRouter()


@router.post(
    paths.PREDICT,
    summary="Classify one image",
    description=(
        "The image comes as a multipart form field `file` (the original API), or as the "
        "whole body with an image Content-Type or application/octet-stream (no form to "
        "parse; the name may come in a Content-Disposition header)."
    ),
    responses=documented(400, 401, 404, 408, 413, 415, 422, 502, 503, 504),
    openapi_extra=PREDICT_BODY,
)
async def predict(
    request: Request,
    settings: SettingsDep,
    fleet: FleetDep,
    traffic: TrafficDep,
    query: PredictionQueryDep,
    # Optional here so a raw body reaches the handler; a request with neither is
    # answered 422 missing_file below, as FastAPI answered before.
    file: Annotated[UploadFile | None, File(include_in_schema=False)] = None,
) -> Response:
    started = time.perf_counter()
    planned = query.plan(request, settings, fleet, traffic)
    with tracing.stage("upload"):
        filename, data = await _read_image(request, file, settings.max_upload_bytes)
    uploaded = time.perf_counter()
    lane, routed, result = await run_bounded(
        _classify(fleet, traffic, planned.routed, data, planned.top_k),
        request.receive,
        planned.timeout,
    )
    low_confidence = traffic.record(fleet, routed, result, data)
    upload_ms = (uploaded - started) * 1000.0
    body = prediction_body(filename, result, lane, routed, low_confidence, started, upload_ms)
    total = time.perf_counter() - started
    _record_stages(request, routed.target, result, uploaded - started, total)
    return json_response(body, headers={"X-Model-Version": str(result.version)})


async def _read_image(
    request: Request, file: UploadFile | None, max_bytes: int
) -> tuple[str, bytes]:
    """The upload's name and bytes, from the form's `file` or from a raw body."""
    if file is not None:
        metrics.UPLOAD_ENCODINGS.labels("multipart").inc()
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLarge.over(max_bytes)
        return file.filename or "", data
    if not is_raw_upload(request):
        raise MissingFile(MISSING_IMAGE)
    metrics.UPLOAD_ENCODINGS.labels("raw").inc()
    return raw_filename(request), await read_raw_body(request, max_bytes)


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
