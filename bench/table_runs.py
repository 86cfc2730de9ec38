"""Measure one copy of a model (its float32 or int8 TFLite file) for the benchmark table.

In order: the copy's ceiling (LiteRT alone, batch 1, both of bench/ceiling.py's
tflite setups, in a child process), an embedded gateway serving that copy
(EMBEDDED_PRECISION) under load on the benchmark's 480x360 upload and on each
real photograph, then the best setup's ceiling again, since this shared
machine's speed drifts over minutes. The gateway rows are bench/pipeline.py's
own, measured by its `measure_row` (warm-up, retries while other processes
disturb, CPU watch), so the table and `python -m bench` count alike.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import ceiling
from bench.images import Upload
from bench.pipeline import Plan, measure_row
from bench.ratios import ceiling_summary
from bench.servers import Process, start_gateway
from gateway.model_assets import read_assets
from gateway.runtimes import INT8_TFLITE_FILE, Precision

# (encoding, concurrency) on the benchmark's 480x360 upload, and on each photograph.
UPLOAD_RUNS = (("multipart", 1), ("raw", 1), ("multipart", 16), ("raw", 16))
PHOTO_RUNS = (("multipart", 16), ("raw", 16))
# Batch 1 only: the table compares gateways answering one image per request with
# the model answering one image per call.
_BATCHES = (1,)


@dataclass(frozen=True)
class ModelCopy:
    """One model file to measure: a version folder and the precision of its TFLite copy."""

    model_dir: Path  # …/models/<name>
    version: int
    precision: Precision

    @property
    def version_dir(self) -> Path:
        """The version folder the copy lives in."""
        return self.model_dir / str(self.version)

    @property
    def label(self) -> str:
        """How progress lines and log files name the copy."""
        return f"{self.model_dir.name}-{self.precision}"


def copies_of(model_dir: Path, version: int) -> tuple[list[ModelCopy], list[str]]:
    """The float32 copy, the int8 copy when the version has one, and a note when it has not."""
    copies = [ModelCopy(model_dir, version, "float32")]
    if (model_dir / str(version) / INT8_TFLITE_FILE).is_file():
        return [*copies, ModelCopy(model_dir, version, "int8")], []
    note = (
        f"{model_dir.name} version {version}: int8 skipped, the version has no "
        f"{INT8_TFLITE_FILE.as_posix()} (export it with export_model.py --quantize int8)"
    )
    return copies, [note]


def measure_copy(
    copy: ModelCopy, plan: Plan, upload: Upload, photos: list[Upload], scratch: Path
) -> dict[str, Any]:
    """The copy's ceilings before and after, and its gateway rows (or why there are none)."""
    result: dict[str, Any] = {
        "model": copy.model_dir.name,
        "version": copy.version,
        "weights": read_assets(copy.version_dir).weights,
        "precision": copy.precision,
        "rows": [],
        "photo_rows": [],
    }
    before = _ceiling(copy, plan, scratch / f"{copy.label}-before.json")
    result["ceiling_before"] = before
    try:
        gateway = start_gateway(copy.label, plan.logs, _gateway_env(copy, plan))
    except (RuntimeError, TimeoutError) as exc:
        result["error"] = f"the embedded gateway did not start: {str(exc).splitlines()[0]}"
        return result
    try:
        result["served_precision"] = _served_precision(gateway, upload)
        result["rows"] = [
            _row(plan, copy, gateway, upload, encoding, concurrency)
            for encoding, concurrency in UPLOAD_RUNS
        ]
        result["photo_rows"] = [
            _row(plan, copy, gateway, photo, encoding, concurrency)
            for photo in photos
            for encoding, concurrency in PHOTO_RUNS
        ]
    finally:
        gateway.stop()
    summary = ceiling_summary(before)
    if summary is not None:
        best = ceiling.Setup(**summary["best"]["setup"])
        out = scratch / f"{copy.label}-after.json"
        result["ceiling_after"] = _ceiling(copy, plan, out, best)
    return result


def _ceiling(
    copy: ModelCopy, plan: Plan, out: Path, setup: ceiling.Setup | None = None
) -> dict[str, Any]:
    return ceiling.run_child(
        copy.version_dir,
        "tflite",
        plan.duration_s,
        plan.warmup_s,
        _BATCHES,
        plan.retries,
        out,
        setup=setup,
        precision=copy.precision,
    )


def _gateway_env(copy: ModelCopy, plan: Plan) -> dict[str, str]:
    # The plan's settings first: what the table is about (which copy) cannot be overridden.
    return {
        **plan.gateway_env,
        "INFERENCE_BACKEND": "embedded",
        "MODEL_BASE_PATH": str(copy.model_dir.parent.resolve()),
        "MODEL_NAME": copy.model_dir.name,
        "EMBEDDED_PRECISION": copy.precision,
    }


def _row(
    plan: Plan, copy: ModelCopy, gateway: Process, upload: Upload, encoding: str, concurrency: int
) -> dict[str, Any]:
    row = measure_row(plan, copy.label, "tflite", gateway, {}, upload, concurrency, encoding)
    return {**row, "upload": upload.name}


def _served_precision(gateway: Process, upload: Upload) -> str | None:
    """The precision the gateway's answer names: proof the row measured the copy it claims."""
    try:
        answer = httpx.post(
            f"{gateway.url}/predict",
            files={"file": ("image.jpg", upload.data, "image/jpeg")},
            timeout=30.0,
        ).json()
    except (httpx.HTTPError, ValueError):
        return None
    precision = answer.get("model", {}).get("precision") if isinstance(answer, dict) else None
    return precision if isinstance(precision, str) else None
