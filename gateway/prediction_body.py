"""The body of one image's answer, shared by POST /predict and each result of /predict/batch.

The original contract's fields come first with their names and types
(`filename`, `original_size` as "WxH", `predictions`, `inference_time_ms`,
`model.name`, `model.version` as a string, `note`); everything new sits beside
them (README, POST /predict).
"""

import time
from typing import Any

from gateway.lanes import Lane
from gateway.pipeline import Classification
from gateway.traffic import Routed

# The sentence the original API sent; its clients match on it.
PREDICT_NOTE = "Class IDs correspond to ImageNet labels. Top prediction is first."


def prediction_body(
    filename: str,
    result: Classification,
    lane: Lane,
    routed: Routed,
    low_confidence: bool,
    started: float,
    upload_ms: float,
) -> dict[str, Any]:
    """One image's answer; `started` is the request's `time.perf_counter()` at arrival."""
    target = routed.target
    width, height = result.original_size
    body: dict[str, Any] = {
        "success": True,
        "filename": filename,
        "original_size": f"{width}x{height}",
        "original_width": width,
        "original_height": height,
        "format": result.image_format,
        "predictions": result.predictions,
        "inference_time_ms": round(result.inference_ms, 2),
        "preprocess_time_ms": round(result.preprocess_ms, 2),
        "total_time_ms": round((time.perf_counter() - started) * 1000.0, 2),
        "stages_ms": stages_ms(result, upload_ms),
        "model": {
            "name": target.model,
            "version": str(result.version),
            "backend": lane.backend.name,
            # TF Serving runs the float32 SavedModel export_model.py writes.
            "precision": lane.backend.describe().get("precision", "float32"),
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
    return body


def stages_ms(result: Classification, upload_ms: float) -> dict[str, float]:
    """Where the image's time went, in milliseconds, as the access log records it."""
    return {
        "upload": round(upload_ms, 3),
        "decode": round(result.preprocess_ms, 3),
        "queue": round(result.queue_ms, 3),
        "model": round(result.model_ms, 3),
        "ranking": round(result.ranking_ms, 3),
    }
