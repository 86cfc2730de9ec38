"""The full pipeline over real HTTP: gateways under load, one backend at a time.

Each gateway runs alone with what it needs (the TF Serving double for the
tfserving rows and the naive baseline); the load generator warms up, then
measures for a fixed time while the gateway's and the double's CPU and the
gateway's resident memory are watched.
"""

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen
from bench.images import Upload
from bench.servers import Process, grpc_listens, start_double, start_gateway, start_naive
from bench.stages import read_stage_totals, stage_means_ms
from bench.watch import DISTURBED_CORES, Usage, Watch

CONCURRENCIES = (1, 16)
NAIVE_CONCURRENCY = 16
NAIVE_IMAGE = "480x360"
# Beside the multipart rows, on the 480x360 upload: the same image as a raw body
# (what skipping the form saves), and POST /predict/batch with 8 files at c=2
# (16 images in flight, as the c=16 rows) against 8 single requests.
ENCODING_IMAGE = "480x360"
BATCH_FILES = 8
ENCODINGS = (("raw", 1), ("raw", 16), ("batch", 2))
_MAX_REQUESTS_PER_S = 5_000


@dataclass(frozen=True)
class Plan:
    """How long each run lasts and what every gateway gets in its environment."""

    model_dir: Path  # …/models/<name>
    duration_s: float
    warmup_s: float
    logs: Path
    gateway_env: dict[str, str]
    retries: int  # extra attempts when other processes disturbed a measurement


def run_pipeline(plan: Plan, uploads: dict[str, Upload], naive: bool, full: bool) -> dict[str, Any]:
    """Rows for the embedded and TF Serving gateways (`full`) and the naive baseline (`naive`)."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    base = {
        "MODEL_BASE_PATH": str(plan.model_dir.parent.resolve()),
        "MODEL_NAME": plan.model_dir.name,
        **plan.gateway_env,
    }
    if full:
        env = {**base, "INFERENCE_BACKEND": "embedded"}
        with running(start_gateway("embedded", plan.logs, env)) as embedded:
            runtime = _describe(embedded).get("runtime", "?")
            name = f"embedded ({runtime})"
            rows += _measure_all(plan, name, runtime, embedded, {}, uploads)
            rows += _measure_encodings(plan, name, runtime, embedded, {}, uploads[ENCODING_IMAGE])
    with running(start_double(plan.model_dir, plan.logs)) as double:
        served = {"double": pid_of(double)}
        transports = ["grpc", "rest"] if full else []
        if full and not grpc_listens(double):
            transports.remove("grpc")
            notes.append("The double did not accept connections on its gRPC port: no gRPC rows.")
        for transport in transports:
            env = {
                **base,
                "INFERENCE_BACKEND": "tfserving",
                "TF_SERVING_URL": f"{double.url}/v1/models/{plan.model_dir.name}:predict",
                "TF_SERVING_GRPC_TARGET": double.grpc_target,
                "TF_SERVING_TRANSPORT": transport,
            }
            with running(start_gateway(f"tfserving-{transport}", plan.logs, env)) as gateway:
                name = f"tfserving {transport}"
                rows += _measure_all(plan, name, "tensorflow", gateway, served, uploads)
                if transport == "grpc":
                    upload = uploads[ENCODING_IMAGE]
                    rows += _measure_encodings(plan, name, "tensorflow", gateway, served, upload)
        if naive:
            with running(start_naive(double, plan.model_dir, plan.logs)) as baseline:
                rows.append(
                    measure_row(
                        plan,
                        "naive",
                        None,
                        baseline,
                        served,
                        uploads[NAIVE_IMAGE],
                        NAIVE_CONCURRENCY,
                    )
                )
    return {"rows": rows, "notes": notes}


def _measure_all(
    plan: Plan,
    name: str,
    runtime: str,
    gateway: Process,
    served: dict[str, int],
    uploads: dict[str, Upload],
) -> list[dict[str, Any]]:
    return [
        measure_row(plan, name, runtime, gateway, served, upload, concurrency)
        for upload in uploads.values()
        for concurrency in CONCURRENCIES
    ]


def _measure_encodings(
    plan: Plan,
    name: str,
    runtime: str,
    gateway: Process,
    served: dict[str, int],
    upload: Upload,
) -> list[dict[str, Any]]:
    return [
        measure_row(plan, name, runtime, gateway, served, upload, concurrency, encoding)
        for encoding, concurrency in ENCODINGS
    ]


def measure_row(
    plan: Plan,
    name: str,
    runtime: str | None,
    gateway: Process,
    served: dict[str, int],
    upload: Upload,
    concurrency: int,
    encoding: str = "multipart",
) -> dict[str, Any]:
    """One row: warm up, then measure `concurrency` connections sending `upload`.

    `encoding`: multipart (POST /predict's form), raw (the image as the body) or
    batch (POST /predict/batch with BATCH_FILES copies; throughput in images).
    The gateway's stage metrics are read between warm-up and measurement, so
    the stage means cover the measured requests only.
    """
    host, port = "127.0.0.1", int(gateway.url.rsplit(":", 1)[1])
    request, images, image_label = _request(host, port, upload, encoding)
    budget = max(100, int(_MAX_REQUESTS_PER_S * plan.duration_s))
    asyncio.run(loadgen.drive(host, port, request, concurrency, plan.warmup_s, budget, images))
    attempts: list[tuple[loadgen.LoadResult, Usage, dict[str, float]]] = []
    while len(attempts) <= plan.retries:
        before = read_stage_totals(gateway.url)
        with Watch({"gateway": pid_of(gateway), **served}, os.getpid()) as watch:
            result = asyncio.run(
                loadgen.drive(host, port, request, concurrency, plan.duration_s, budget, images)
            )
        attempts.append(
            (result, watch.usage, stage_means_ms(before, read_stage_totals(gateway.url)))
        )
        if watch.usage.others_cores <= DISTURBED_CORES:
            break
    result, usage, stages = min(attempts, key=lambda attempt: attempt[1].others_cores)
    return {
        "backend": name,
        "runtime": runtime,  # whose ceiling this row is compared with
        "image": image_label,
        "image_bytes": len(upload.data),
        "encoding": encoding,
        "images_per_request": images,
        "concurrency": concurrency,
        **result.measurement.to_json(),
        "statuses": {str(code): count for code, count in result.statuses.items()},
        "answer_checked": _looks_like_an_answer(result.sample),
        "stages_ms": {stage: round(ms, 2) for stage, ms in stages.items()},
        "cores": {name: round(cores, 2) for name, cores in usage.cores_by_name.items()},
        "main_thread_cores": {
            name: round(cores, 2) for name, cores in usage.main_thread_cores_by_name.items()
        },
        "load_generator_cores": round(result.client_cpu_s / result.measurement.elapsed_s, 3),
        "other_load_cores": round(usage.others_cores, 2),
        "peak_rss_mb": {name: round(rss / 2**20, 1) for name, rss in usage.peak_rss_bytes.items()},
        "attempts": len(attempts),
    }


def _request(host: str, port: int, upload: Upload, encoding: str) -> tuple[bytes, int, str]:
    """The prebuilt request, the images each carries, and the row's image label."""
    if encoding == "raw":
        raw = loadgen.raw_request(host, port, "/predict", upload.data)
        return raw, 1, f"{upload.name} raw body"
    if encoding == "batch":
        path, copies = "/predict/batch", BATCH_FILES
        batch = loadgen.multipart_request(host, port, path, upload.data, copies=copies)
        return batch, copies, f"{upload.name} batch of {copies}"
    return loadgen.multipart_request(host, port, "/predict", upload.data), 1, upload.name


def _looks_like_an_answer(body: bytes) -> bool:
    """A 200 body carries five predictions (every gateway answers top-5 by default); a
    batch's, five for each of its files, none of them a failure (the naive gateway's
    answer has no `success` field)."""
    try:
        answer = orjson.loads(body)
        answers = answer.get("results", [answer])
        return bool(answers) and all(
            item.get("success", True) is True and len(item.get("predictions", [])) == 5
            for item in answers
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return False


def _describe(gateway: Process) -> dict[str, Any]:
    """The gateway's `GET /` document (it names the embedded runtime in use)."""
    try:
        answer: dict[str, Any] = httpx.get(f"{gateway.url}/", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return answer


def pid_of(process: Process) -> int:
    assert process.popen is not None, "started processes have a Popen"
    pid: int = process.popen.pid
    return pid


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    try:
        yield process
    finally:
        process.stop()
