"""HTTP endpoints but /predict: the index, health, metrics and model documents."""

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from gateway import __version__, metrics, paths
from gateway.backend import Backend, ModelStatus
from gateway.dependencies import BackendDep, FleetDep, GoldenDep, SettingsDep
from gateway.drain import drain_of
from gateway.errors import BackendUnavailable, ShuttingDown
from gateway.golden_check import golden_results
from gateway.image_formats import accepted_format_names
from gateway.model_assets import ModelAssets, load_assets
from gateway.models_document import models_document, signature_summary
from gateway.prediction_query import MAX_TOP_K
from gateway.problems import documented
from gateway.responses import json_response
from gateway.settings import Settings
from gateway.ui_route import prefers_html

# The names and sentences the original API sent; its clients match on them.
SERVICE_NAME = "ml-inference-gateway"
USAGE = f'curl -X POST -F "file=@image.jpg" http://localhost:8000{paths.PREDICT}'
# What `GET /` lists: every endpoint, in words a client can act on.
ENDPOINTS = {
    f"GET {paths.INDEX}": "this document",
    f"GET {paths.HEALTH}": (
        "readiness: 200 when a model version is AVAILABLE, else 503 (also while shutting down)"
    ),
    f"GET {paths.HEALTH_READY}": f"same as {paths.HEALTH}",
    f"GET {paths.HEALTH_LIVE}": "liveness: 200 while the process serves; never asks the model",
    f"POST {paths.PREDICT}": (
        f"multipart field 'file' = an image (or the image as the body, Content-Type image/*); "
        f"optional ?top_k=1..{MAX_TOP_K}, ?model=NAME, and ?version=N or ?label=NAME"
    ),
    f"POST {paths.PREDICT_BATCH}": (
        "several multipart fields 'file', one result per file in order; the same query"
    ),
    f"GET {paths.MODELS}": "every model served, its versions, their states, labels and signatures",
    f"GET {paths.METRICS}": "request counters and latencies as JSON",
    f"GET {paths.METRICS_PROMETHEUS}": "the same series in Prometheus text format",
    f"GET {paths.MODEL}": "the served model version, its signature and provenance",
    f"GET|PUT {paths.ADMIN_ROUTING}": "the canary split and shadow routing (API keys required)",
    f"GET {paths.DOCS}": "OpenAPI UI",
    f"GET {paths.UI}": "demo page: pick photos in a browser and see their top-5 (GET / from a "
    "browser redirects there)",
}

router = APIRouter()


# GET / answers by the Accept header: caches must keep the two answers apart.
_VARY = {"Vary": "Accept"}


@router.get(
    paths.INDEX,
    summary="What this service is and how to use it",
    responses={307: {"description": f"A browser (Accept prefers text/html): see {paths.UI}"}},
)
async def index(request: Request, settings: SettingsDep, backend: BackendDep) -> Response:
    if prefers_html(request.headers.get("accept", "")):
        return RedirectResponse(paths.UI, status_code=307, headers=_VARY)
    return json_response(
        {
            "service": SERVICE_NAME,
            "version": __version__,
            **backend.describe(),
            "model": settings.model_name,
            "endpoints": ENDPOINTS,
            "usage": USAGE,
            "accepted_formats": accepted_format_names(),
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_image_pixels": settings.max_image_pixels,
                "default_top_k": settings.default_top_k,
                "max_top_k": MAX_TOP_K,
                "max_batch_files": settings.max_batch_files,
                "max_batch_bytes": settings.batch_bytes_limit(),
            },
        },
        headers=_VARY,
    )


@router.get(paths.HEALTH_LIVE, summary="Liveness: the process is up")
async def liveness() -> Response:
    return json_response(
        {"status": "alive", "uptime_seconds": round(time.time() - metrics.PROCESS_STARTED, 3)}
    )


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": (
            "No model version is AVAILABLE, or the gateway is shutting down "
            "(same body, status unhealthy)"
        )
    }
}


@router.get(paths.HEALTH, summary="Readiness: a model version is AVAILABLE", responses=_NOT_READY)
@router.get(
    paths.HEALTH_READY, summary="Readiness: a model version is AVAILABLE", responses=_NOT_READY
)
async def readiness(
    request: Request, settings: SettingsDep, backend: BackendDep, fleet: FleetDep, golden: GoldenDep
) -> Response:
    if drain_of(request.app).draining:
        # Checked first and answered without asking the model: the point is to
        # leave the load balancer's rotation at once (docs/graceful-shutdown.md).
        return _shutting_down(backend)
    status = await backend.status()
    checks = await golden_results(golden, fleet)
    failing = [check for check in checks if check.passed is False]
    if failing and status.ready:
        wrong = failing[0]
        detail = f"{wrong.model} version {wrong.version} fails its golden check: {wrong.detail}"
        status = replace(status, ready=False, detail=detail)
    metrics.record_model_ready(status.ready)
    files = await _assets_for(fleet.default_lane.settings.model_dir, backend, status)
    assets = files or ModelAssets()
    body: dict[str, Any] = {
        "status": "healthy" if status.ready else "unhealthy",
        "gateway": "operational",
        # The original's word for "the model server answers"; in-process, the model is the server.
        "tf_serving": "disconnected" if status.state == "UNREACHABLE" else "connected",
        "ready": status.ready,
        "backend": backend.name,
        "served_model": _model_summary(settings, status, assets),
    }
    if files is not None:
        # Broken labels or provenance degrade answers but the model still answers: still ready.
        body["model_files"] = files.report()
    if status.document is not None:
        body["model"] = status.document
    if checks:
        body["golden_checks"] = [check.report() for check in checks]
    if not status.ready:
        body["error"] = status.detail or f"no version is AVAILABLE (state {status.state})"
    if status.detail:
        body["detail"] = status.detail
    if assets.warning:
        body["warning"] = assets.warning
    if status.ready:
        return json_response(body)
    retry = str(BackendUnavailable.retry_after_seconds)
    return json_response(body, status_code=503, headers={"Retry-After": retry})


def _shutting_down(backend: Backend) -> Response:
    """Readiness while draining: 503, in the shape of any other not-ready answer."""
    body = {
        "status": "unhealthy",
        "gateway": "shutting_down",
        "ready": False,
        "backend": backend.name,
        "error": "The gateway is shutting down: it finishes what it accepted and takes no more.",
    }
    retry = str(ShuttingDown.retry_after_seconds)
    return json_response(body, status_code=503, headers={"Retry-After": retry})


@router.get(
    paths.MODELS,
    summary="Every model served: versions, states, labels, provenance, signatures",
    responses=documented(401),
)
async def models(settings: SettingsDep, fleet: FleetDep) -> Response:
    return json_response(await models_document(fleet, settings.model_name))


@router.get(paths.METRICS, summary="Counters and latencies as JSON", responses=documented(401))
async def metrics_json(settings: SettingsDep, backend: BackendDep) -> Response:
    counts = metrics.counts_by_outcome()
    total = sum(counts.values())
    successes = counts.get("success", 0)
    uptime = time.time() - metrics.PROCESS_STARTED
    # Known without asking TF Serving: a scrape must never wait on a model server.
    version = backend.served_version()
    return json_response(
        {
            "service": SERVICE_NAME,
            "model": settings.model_name,
            "model_version": "unknown" if version is None else str(version),
            "requests_total": total,
            "successful_requests_total": successes,
            "errors_total": total - successes,
            "success_rate": round(successes / total * 100.0, 2) if total else 0.0,
            "requests_by_outcome": counts,
            "average_inference_time_ms": metrics.histogram_mean_ms(metrics.INFERENCE_SECONDS),
            "average_decode_time_ms": metrics.histogram_mean_ms(metrics.DECODE_SECONDS),
            "average_request_time_ms": metrics.histogram_mean_ms(metrics.REQUEST_SECONDS),
            "uptime_seconds": round(uptime, 3),
            "uptime_hours": round(uptime / 3600.0, 4),
            "backend": backend.name,
            "model_name": settings.model_name,
        }
    )


@router.get(
    paths.METRICS_PROMETHEUS,
    summary="Prometheus exposition of the same series",
    response_class=PlainTextResponse,
    responses=documented(401),
)
async def metrics_prometheus() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    paths.MODEL,
    summary="The served model version, signature and provenance",
    responses=documented(401, 503),
)
async def model(settings: SettingsDep, backend: BackendDep, fleet: FleetDep) -> Response:
    status = await backend.status()
    if not status.ready:
        raise BackendUnavailable(f"No model version is AVAILABLE: {status.detail}")
    signature = await backend.signature()
    if status.version != signature.version:
        # A newer version whose signature the backend has not read yet: describe the
        # one batches are prepared for and sent to, so every field names one version.
        status = replace(status, version=signature.version)
    # The default model's folder: a config file's base_path, or MODEL_BASE_PATH/MODEL_NAME.
    model_dir = fleet.default_lane.settings.model_dir
    assets = load_assets(model_dir, signature.version, signature.num_classes)
    info = assets.export_info
    body: dict[str, Any] = {
        **signature.metadata,
        **_model_summary(settings, status, assets),
        **backend.describe(),
        "signature": signature_summary(signature),
        "num_classes": signature.num_classes,
        "labels_available": len(assets.labels) == signature.num_classes,
        "exported_at": info.exported_at,
        "tensorflow_version": info.tensorflow_version,
        "source_detail": info.source_detail,
        "labels_provenance": info.labels_provenance,
        "model_files": assets.report(),
    }
    if assets.warning:
        body["warning"] = assets.warning
    return json_response(body)


async def _assets_for(model_dir: Path, backend: Backend, status: ModelStatus) -> ModelAssets | None:
    """The reported version's assets (None when no version is known), labels checked when ready."""
    if status.version is None:
        return None
    num_classes = None
    if status.ready:
        with contextlib.suppress(BackendUnavailable):
            signature = await backend.signature()
            if signature.version == status.version:
                num_classes = signature.num_classes
    return load_assets(model_dir, status.version, num_classes)


def _model_summary(settings: Settings, status: ModelStatus, assets: ModelAssets) -> dict[str, Any]:
    return {
        "name": settings.model_name,
        "version": status.version,
        "state": status.state,
        "weights": assets.weights,
        "trained": assets.trained,
        "source": assets.export_info.source,
    }
