"""What each endpoint answers: the real app in-process, a fake backend behind it.

The same checks against real backends, once per backend, stay in test/e2e/test_api.py.
"""

from pathlib import Path

import httpx
import numpy as np
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import (
    NUM_CLASSES,
    FakeBackend,
    fake_settings,
    label_for,
    ramp_scores,
    write_model_files,
)
from gateway import __version__

ORIGINAL_ENDPOINTS = {"POST /predict", "GET /health", "GET /metrics", "GET /model"}
CONTRACT_PREDICTION_FIELDS = {"class_id", "label", "probability", "confidence_percent"}

pytestmark = pytest.mark.anyio


async def test_the_lifespan_starts_and_closes_the_backend(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with in_process(fake_settings(write_model_files(tmp_path)), backend):
        assert (backend.started, backend.closed) == (True, False)
    assert backend.closed


async def test_index_lists_endpoints_formats_and_limits(client: httpx.AsyncClient) -> None:
    body = (await client.get("/")).json()
    assert set(body["endpoints"]) >= ORIGINAL_ENDPOINTS
    assert {"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"} <= set(body["accepted_formats"])
    assert body["limits"] == {
        "max_upload_bytes": 10 * 1024 * 1024,
        "max_image_pixels": 40_000_000,
        "default_top_k": 5,
        "max_top_k": 1001,
        "max_batch_files": 16,
        "max_batch_bytes": 10 * 1024 * 1024,  # MAX_UPLOAD_BYTES when not set
    }
    assert body["service"] == "ml-inference-gateway"
    assert body["version"] == __version__
    assert body["model"] == "mobilenet"
    assert (body["backend"], body["transport"]) == ("fake", "in-process")


async def test_index_reports_the_configured_limits(tmp_path: Path) -> None:
    settings = fake_settings(
        write_model_files(tmp_path),
        max_upload_bytes=1234,
        max_image_pixels=5678,
        default_top_k=3,
        max_batch_files=4,
        max_batch_bytes=99_999,
    )
    async with in_process(settings, FakeBackend()) as client:
        limits = (await client.get("/")).json()["limits"]
    assert limits == {
        "max_upload_bytes": 1234,
        "max_image_pixels": 5678,
        "default_top_k": 3,
        "max_top_k": 1001,
        "max_batch_files": 4,
        "max_batch_bytes": 99_999,
    }


@pytest.mark.parametrize("state", ["LOADING", "UNREACHABLE"])
async def test_liveness_answers_without_the_model(
    client: httpx.AsyncClient, backend: FakeBackend, state: str
) -> None:
    backend.ready, backend.unready_state = False, state
    assert (await client.get("/health")).status_code == 503
    response = await client.get("/health/live")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "alive"
    assert body["uptime_seconds"] > 0


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
async def test_health_reports_the_available_untrained_version(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    body = response.json()
    assert response.status_code == 200
    assert "retry-after" not in response.headers
    assert body["status"] == "healthy"
    assert (body["gateway"], body["tf_serving"]) == ("operational", "connected")
    assert (body["ready"], body["backend"]) == (True, "fake")
    assert body["served_model"] == {
        "name": "mobilenet",
        "version": 1,
        "state": "AVAILABLE",
        "weights": "untrained",
        "trained": False,
        "source": "random",
    }
    assert body["model"]["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_files"] == {"status": "ok", "problems": []}
    assert "UNTRAINED" in body["warning"]
    assert "error" not in body


async def test_health_has_no_warning_for_trained_weights(tmp_path: Path) -> None:
    model_root = write_model_files(tmp_path, export_info={"trained": True, "source": "hub"})
    async with in_process(fake_settings(model_root), FakeBackend()) as client:
        body = (await client.get("/health")).json()
    assert body["served_model"]["weights"] == "trained"
    assert "warning" not in body


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
async def test_health_is_503_with_retry_after_while_no_version_is_available(
    client: httpx.AsyncClient, backend: FakeBackend, path: str
) -> None:
    backend.ready, backend.detail = False, "version 1 is LOADING"
    response = await client.get(path)
    body = response.json()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert (body["status"], body["ready"], body["tf_serving"]) == ("unhealthy", False, "connected")
    assert body["error"] == body["detail"] == "version 1 is LOADING"
    assert body["served_model"]["state"] == "LOADING"
    assert body["model"]["model_version_status"][0]["state"] == "LOADING"


async def test_health_says_disconnected_when_the_model_server_is_unreachable(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.ready, backend.unready_state = False, "UNREACHABLE"
    backend.detail = "TF Serving is not reachable"
    body = (await client.get("/health")).json()
    assert (body["status"], body["tf_serving"]) == ("unhealthy", "disconnected")
    assert body["error"] == "TF Serving is not reachable"
    assert "model" not in body
    assert "model_files" not in body


async def test_health_stays_ready_but_reports_labels_that_do_not_fit(tmp_path: Path) -> None:
    model_root = write_model_files(tmp_path, labels=["one", "two"])
    async with in_process(fake_settings(model_root), FakeBackend()) as client:
        response = await client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert body["model_files"]["status"] == "degraded"
    (problem,) = body["model_files"]["problems"]
    assert problem["file"] == "assets.extra/labels.txt"
    assert "2 labels for the model's 1001 classes" in problem["problem"]


async def test_predict_returns_the_contract_fields(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    response = await post_image_in_process(client, cat_jpeg, filename="cat.jpg")
    body = response.json()
    assert response.status_code == 200, body
    assert response.headers["content-type"] == "application/json"
    assert body["success"] is True
    assert body["filename"] == "cat.jpg"
    assert body["original_size"] == "451x300"
    assert (body["original_width"], body["original_height"]) == (451, 300)
    assert body["format"] == "JPEG"
    scores = ramp_scores()
    top = [NUM_CLASSES - 1 - rank for rank in range(5)]  # the ramp's five highest classes
    assert body["predictions"] == [
        {
            "class_id": class_id,
            "label": label_for(class_id),
            "probability": pytest.approx(float(scores[class_id])),
            "confidence_percent": round(float(scores[class_id]) * 100, 2),
        }
        for class_id in top
    ]
    for prediction in body["predictions"]:
        assert set(prediction) >= CONTRACT_PREDICTION_FIELDS
    assert body["inference_time_ms"] > 0
    assert body["preprocess_time_ms"] > 0
    assert body["total_time_ms"] >= body["inference_time_ms"]
    assert body["model"] == {
        "name": "mobilenet",
        "version": "1",
        "backend": "fake",
        "precision": "float32",
        "weights": "untrained",
        "weights_source": "random",
    }
    assert body["note"] == "Class IDs correspond to ImageNet labels. Top prediction is first."
    assert "UNTRAINED" in body["warning"]
    assert "labels_warning" not in body
    assert "model_files" not in body
    (batch,) = backend.batches
    assert (batch.dtype, batch.shape) == (np.uint8, (1, 224, 224, 3))


async def test_predict_resizes_to_the_size_the_signature_names(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    backend = FakeBackend(image_size=(200, 100))  # (width, height)
    async with in_process(fake_settings(write_model_files(tmp_path)), backend) as client:
        assert (await post_image_in_process(client, cat_jpeg)).status_code == 200
    (batch,) = backend.batches
    assert batch.shape == (1, 100, 200, 3)


async def test_predict_reports_the_version_that_answered(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes, tmp_path: Path
) -> None:
    write_model_files(tmp_path, 7, export_info={"trained": True, "source": "hub"})
    backend.version = 7
    body = (await post_image_in_process(client, cat_jpeg)).json()
    assert (body["model"]["version"], body["model"]["weights"]) == ("7", "trained")
    assert "warning" not in body


@pytest.mark.parametrize("top_k", [1, 3, 1001])
async def test_top_k_parameter_is_honoured(
    client: httpx.AsyncClient, cat_jpeg: bytes, top_k: int
) -> None:
    predictions = (await post_image_in_process(client, cat_jpeg, top_k=top_k)).json()["predictions"]
    assert len(predictions) == top_k
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)


async def test_default_top_k_comes_from_the_settings(tmp_path: Path, cat_jpeg: bytes) -> None:
    settings = fake_settings(write_model_files(tmp_path), default_top_k=2)
    async with in_process(settings, FakeBackend()) as client:
        assert len((await post_image_in_process(client, cat_jpeg)).json()["predictions"]) == 2


async def test_every_class_carries_its_own_label(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    predictions = (await post_image_in_process(client, cat_jpeg, top_k=1001)).json()["predictions"]
    labels = {p["class_id"]: p["label"] for p in predictions}
    assert labels == {class_id: label_for(class_id) for class_id in range(NUM_CLASSES)}


async def test_labels_that_do_not_fit_become_placeholders_with_a_warning(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    model_root = write_model_files(tmp_path, labels=["one", "two"])
    async with in_process(fake_settings(model_root), FakeBackend()) as client:
        body = (await post_image_in_process(client, cat_jpeg, top_k=2)).json()
    assert [p["label"] for p in body["predictions"]] == ["class_1000", "class_999"]
    assert "placeholders" in body["labels_warning"]
    assert body["model_files"]["status"] == "degraded"


async def test_model_endpoint_describes_signature_and_provenance(client: httpx.AsyncClient) -> None:
    response = await client.get("/model")
    body = response.json()
    assert response.status_code == 200
    assert body["name"] == "mobilenet"
    assert body["version"] == 1
    assert body["state"] == "AVAILABLE"
    assert (body["backend"], body["transport"]) == ("fake", "in-process")
    assert body["signature"] == {
        "name": "serving_default",
        "inputs": {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 1001]}},
    }
    assert body["num_classes"] == 1001
    assert body["labels_available"] is True
    assert body["source"] == "random"
    assert body["trained"] is False
    assert body["weights"] == "untrained"
    assert "UNTRAINED" in body["warning"]
    assert body["model_files"] == {"status": "ok", "problems": []}
    # TF Serving's metadata document, passed through as the original API did.
    assert body["model_spec"] == {"name": "mobilenet", "signature_name": "", "version": "1"}
    assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]


async def test_model_endpoint_gives_height_before_width(tmp_path: Path) -> None:
    backend = FakeBackend(image_size=(200, 100), num_classes=10)
    model_root = write_model_files(tmp_path, labels=[label_for(n) for n in range(10)])
    async with in_process(fake_settings(model_root), backend) as client:
        body = (await client.get("/model")).json()
    assert body["signature"]["inputs"]["images"]["shape"] == [-1, 100, 200, 3]
    assert body["signature"]["outputs"]["probabilities"]["shape"] == [-1, 10]
    assert body["labels_available"] is True


async def test_model_endpoint_says_when_labels_do_not_fit(tmp_path: Path) -> None:
    model_root = write_model_files(tmp_path, labels=["one", "two"])
    async with in_process(fake_settings(model_root), FakeBackend()) as client:
        body = (await client.get("/model")).json()
    assert body["labels_available"] is False
    assert body["model_files"]["status"] == "degraded"


async def test_model_endpoint_is_a_503_problem_while_no_version_is_available(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.ready, backend.detail = False, "version 1 is LOADING"
    response = await client.get("/model")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["code"] == "model_unavailable"
    assert "version 1 is LOADING" in body["detail"]


async def test_metrics_count_successes_and_errors(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    before = (await client.get("/metrics")).json()
    assert (await post_image_in_process(client, cat_jpeg)).status_code == 200
    assert (await post_image_in_process(client, b"definitely not an image")).status_code == 415
    after = (await client.get("/metrics")).json()
    assert after["requests_total"] == before["requests_total"] + 2
    assert after["errors_total"] == before["errors_total"] + 1
    assert after["successful_requests_total"] == before["successful_requests_total"] + 1
    by_outcome = after["requests_by_outcome"]
    assert by_outcome["not_an_image"] == before["requests_by_outcome"].get("not_an_image", 0) + 1
    assert by_outcome["success"] == before["requests_by_outcome"].get("success", 0) + 1
    expected_rate = round(
        (after["requests_total"] - after["errors_total"]) / after["requests_total"] * 100, 2
    )
    assert after["success_rate"] == expected_rate
    assert after["uptime_seconds"] > 0
    assert after["uptime_hours"] == pytest.approx(after["uptime_seconds"] / 3600, abs=1e-3)
    assert after["average_inference_time_ms"] > 0
    assert after["average_request_time_ms"] > 0
    assert (after["service"], after["model"], after["backend"]) == (
        "ml-inference-gateway",
        "mobilenet",
        "fake",
    )


async def test_metrics_name_the_served_version_without_asking_the_backend(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    assert (await client.get("/metrics")).json()["model_version"] == "1"
    backend.ready = False
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.json()["model_version"] == "unknown"


async def test_prometheus_exposition_has_the_stage_histograms(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    assert (await post_image_in_process(client, cat_jpeg)).status_code == 200
    assert (await client.get("/health")).status_code == 200  # sets the readiness gauge
    response = await client.get("/metrics/prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    for name in ("gateway_decode_seconds", "gateway_inference_seconds", "gateway_request_seconds"):
        assert f"{name}_bucket" in text
        assert f"{name}_count" in text
    assert 'gateway_predict_requests_total{outcome="success"}' in text
    assert "gateway_model_ready 1.0" in text
