"""POST /predict/batch: several `file` fields in one request, one result per file, in order.

Every file is decoded at once on the preprocessing threads and all of them go
to the model together (Classifier.classify_many, Batcher.predict_together), so
eight photos cost one request's overhead and one model call instead of eight.

Each file gets its own answer: the body a single POST /predict gives for it, or
its problem document with `success: false` and its `filename`; one bad image
costs the others nothing. What concerns the whole request is answered for the
whole request, with the codes a single upload gets: too many files or bytes
(413, before anything is decoded), no files (422), an unknown model (404), the
deadline (504). When the model server failed every file (each a 5xx), the
request gets that 5xx too, so clients and load balancers retry it as they
would a single prediction.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gateway import metrics, paths, tracing
from gateway.deadlines import current_deadline, run_bounded
from gateway.dependencies import FleetDep, SettingsDep, TrafficDep
from gateway.errors import BadRequest, GatewayError, MissingFile, PayloadTooLarge, TooManyFiles
from gateway.fleet import Fleet
from gateway.lanes import Lane
from gateway.pipeline import Classification
from gateway.prediction_body import prediction_body
from gateway.prediction_query import PredictionQueryDep
from gateway.problems import documented, problem_document, record_partial_outcome
from gateway.request_bodies import BATCH_BODY
from gateway.responses import json_response
from gateway.settings import Settings
from gateway.traffic import Routed, Traffic

logger = logging.getLogger(__name__)

NO_FILES = (
    "Send the images as multipart/form-data, one field named 'file' each: curl "
    f"-F file=@a.jpg -F file=@b.jpg http://localhost:8000{paths.PREDICT_BATCH}"
)

# The outcomes a batch answered 200 is counted under when files failed
# (gateway_predict_requests_total, /metrics, the access log).
BATCH_PARTIAL = "batch_partial_failure"
BATCH_FAILED = "batch_failed"

router = APIRouter()


@dataclass(frozen=True)
class _Upload:
    filename: str
    data: bytes


@router.post(
    paths.PREDICT_BATCH,
    summary="Classify several images in one request",
    responses=documented(400, 401, 404, 408, 413, 422, 502, 503, 504),
    openapi_extra=BATCH_BODY,
)
async def predict_batch(
    request: Request,
    settings: SettingsDep,
    fleet: FleetDep,
    traffic: TrafficDep,
    query: PredictionQueryDep,
) -> Response:
    started = time.perf_counter()
    planned = query.plan(request, settings, fleet, traffic)
    with tracing.stage("upload"):
        uploads = await _read_files(request, settings)
    upload_ms = (time.perf_counter() - started) * 1000.0
    images = [upload.data for upload in uploads]
    lane, routed, results = await run_bounded(
        _classify_all(fleet, traffic, planned.routed, images, planned.top_k),
        request.receive,
        planned.timeout,
    )
    errors = [_as_gateway_error(result) for result in results]
    entries: list[dict[str, Any]] = []
    for upload, result, error in zip(uploads, results, errors, strict=True):
        if isinstance(result, Classification):
            low = traffic.record(fleet, routed, result, upload.data)
            entries.append(
                prediction_body(upload.filename, result, lane, routed, low, started, upload_ms)
            )
        elif error is not None:
            entries.append(problem_document(error) | {"filename": upload.filename})
        metrics.BATCH_IMAGES.labels("success" if error is None else error.code).inc()
    failed = [error for error in errors if error is not None]
    _note_for_access_log(request, routed, results, len(failed))
    if failed and len(failed) == len(errors) and all(e.status >= 500 for e in failed):
        raise failed[0]
    if failed:
        # Answered 200, yet not a success: counted (and logged) as what it was.
        outcome = BATCH_FAILED if len(failed) == len(errors) else BATCH_PARTIAL
        record_partial_outcome(request.scope, outcome)
    versions = {entry["model"]["version"] for entry in entries if entry["success"]}
    headers = {"X-Model-Version": versions.pop()} if len(versions) == 1 else None
    body = {
        "success": not failed,
        "count": len(entries),
        "succeeded": len(entries) - len(failed),
        "failed": len(failed),
        "results": entries,
        "total_time_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }
    return json_response(body, headers=headers)


async def _read_files(request: Request, settings: Settings) -> list[_Upload]:
    """Every `file` field's name and bytes, refused whole if over MAX_BATCH_FILES or bytes."""
    limit_files, limit_bytes = settings.max_batch_files, settings.batch_bytes_limit()
    try:
        form = await request.form(max_files=limit_files, max_fields=limit_files)
    except HTTPException as exc:
        # Starlette stops parsing at the first file over the cap and says so in words.
        if str(exc.detail).startswith("Too many files"):
            raise TooManyFiles(
                f"At most {limit_files} files per request (MAX_BATCH_FILES); "
                "send the rest in another request."
            ) from None
        if str(exc.detail).startswith("Too many fields"):
            raise BadRequest(
                f"A batch carries 'file' fields only, at most {limit_files} (MAX_BATCH_FILES); "
                "this one has too many other fields."
            ) from None
        raise
    try:
        fields = form.getlist("file")
        if not fields:
            raise MissingFile(NO_FILES)
        uploads: list[_Upload] = []
        total = 0
        for field in fields:
            if not isinstance(field, UploadFile):
                raise MissingFile(f"Every 'file' field must be a file. {NO_FILES}")
            data = await field.read(limit_bytes - total + 1)
            total += len(data)
            if total > limit_bytes:
                raise PayloadTooLarge.over_batch(limit_bytes)
            uploads.append(_Upload(field.filename or "", data))
        return uploads
    finally:
        await form.close()


async def _classify_all(
    fleet: Fleet, traffic: Traffic, routed: Routed, uploads: list[bytes], top_k: int
) -> tuple[Lane, Routed, list[Classification | BaseException]]:
    """Find (or open) the lane, then classify every upload there, within the deadline."""
    lane, routed = await traffic.lane_for(fleet, routed, current_deadline())
    return lane, routed, await lane.classifier.classify_many(uploads, top_k)


def _as_gateway_error(result: Classification | BaseException) -> GatewayError | None:
    """None for an answer; the error to report for a failure (a bug is logged, not shown)."""
    if isinstance(result, Classification):
        return None
    if isinstance(result, GatewayError):
        return result
    if not isinstance(result, Exception):
        raise result  # cancellation and the like belong to the whole request
    logger.error("unhandled %s in a batch", type(result).__name__, exc_info=result)
    return GatewayError("An unexpected error occurred; it has been logged.")


def _note_for_access_log(
    request: Request,
    routed: Routed,
    results: list[Classification | BaseException],
    failed: int,
) -> None:
    answered = [result for result in results if isinstance(result, Classification)]
    request.state.access_log = {
        "model": routed.target.model,
        "version": str(answered[0].version) if answered else "",
        "label": routed.target.label or "",
        "images": len(results),
        "failed_images": failed,
    }
