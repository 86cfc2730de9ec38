"""The API contract over real HTTP, for both backends, against real processes."""

import httpx
import pytest

from api_client import post_image
from processes import Process

CONTRACT_PREDICTION_FIELDS = {"class_id", "label", "probability", "confidence_percent"}


def test_index_lists_endpoints_formats_and_limits(any_gateway: Process) -> None:
    body = httpx.get(f"{any_gateway.url}/").json()
    assert {"POST /predict", "GET /health", "GET /metrics", "GET /model"} <= set(body["endpoints"])
    assert {"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"} <= set(body["accepted_formats"])
    assert body["limits"]["default_top_k"] == 5


def test_health_reports_available_untrained_version(any_gateway: Process) -> None:
    response = httpx.get(f"{any_gateway.url}/health")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "healthy"
    assert body["served_model"]["version"] == 1
    assert body["served_model"]["state"] == "AVAILABLE"
    assert body["served_model"]["weights"] == "untrained"
    assert "UNTRAINED" in body["warning"]


def test_liveness_answers_without_the_model(any_gateway: Process) -> None:
    response = httpx.get(f"{any_gateway.url}/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


def test_predict_returns_the_contract_fields(any_gateway: Process, cat_jpeg: bytes) -> None:
    response = post_image(any_gateway.url, cat_jpeg, filename="cat.jpg")
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    assert body["filename"] == "cat.jpg"
    assert body["original_size"] == "451x300"
    assert (body["original_width"], body["original_height"]) == (451, 300)
    assert len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert set(prediction) >= CONTRACT_PREDICTION_FIELDS
        assert 0 <= prediction["class_id"] < 1001
        assert prediction["confidence_percent"] == round(prediction["probability"] * 100, 2)
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["inference_time_ms"] > 0
    assert body["total_time_ms"] >= body["inference_time_ms"]
    assert body["model"] == {
        "name": "mobilenet",
        "version": "1",
        "backend": body["model"]["backend"],
        "weights": "untrained",
        "weights_source": "random",
    }
    assert "UNTRAINED" in body["warning"]


def test_predictions_carry_imagenet_labels(any_gateway: Process, cat_jpeg: bytes) -> None:
    predictions = post_image(any_gateway.url, cat_jpeg, top_k=1001).json()["predictions"]
    labels = {p["class_id"]: p["label"] for p in predictions}
    assert len(labels) == 1001
    assert labels[0] == "background"
    assert "tabby" in labels[282].lower()  # ImageNet class 281 "tabby cat", shifted by background


def test_top_k_parameter_is_honoured(any_gateway: Process, cat_jpeg: bytes) -> None:
    assert len(post_image(any_gateway.url, cat_jpeg, top_k=3).json()["predictions"]) == 3


def test_both_backends_give_the_same_predictions(
    tfserving_gateway: Process, embedded_gateway: Process, cat_jpeg: bytes
) -> None:
    served = post_image(tfserving_gateway.url, cat_jpeg, top_k=10).json()["predictions"]
    embedded = post_image(embedded_gateway.url, cat_jpeg, top_k=10).json()["predictions"]
    assert [p["class_id"] for p in served] == [p["class_id"] for p in embedded]
    for a, b in zip(served, embedded, strict=True):
        assert a["probability"] == pytest.approx(b["probability"], rel=1e-4, abs=1e-5)


def test_model_endpoint_describes_signature_and_provenance(any_gateway: Process) -> None:
    body = httpx.get(f"{any_gateway.url}/model").json()
    assert body["name"] == "mobilenet"
    assert body["version"] == 1
    assert body["signature"]["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}}
    assert body["signature"]["outputs"] == {
        "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
    }
    assert body["num_classes"] == 1001
    assert body["labels_available"] is True
    assert body["source"] == "random"
    assert body["trained"] is False
    assert "UNTRAINED" in body["warning"]


def test_metrics_count_successes_and_errors(any_gateway: Process, cat_jpeg: bytes) -> None:
    before = httpx.get(f"{any_gateway.url}/metrics").json()
    assert post_image(any_gateway.url, cat_jpeg).status_code == 200
    assert post_image(any_gateway.url, b"definitely not an image").status_code == 415
    after = httpx.get(f"{any_gateway.url}/metrics").json()
    assert after["requests_total"] == before["requests_total"] + 2
    assert after["errors_total"] == before["errors_total"] + 1
    by_outcome = after["requests_by_outcome"]
    assert by_outcome["not_an_image"] == before["requests_by_outcome"].get("not_an_image", 0) + 1
    expected_rate = round(
        (after["requests_total"] - after["errors_total"]) / after["requests_total"] * 100, 2
    )
    assert after["success_rate"] == expected_rate
    assert after["uptime_seconds"] > 0
    assert after["uptime_hours"] == pytest.approx(after["uptime_seconds"] / 3600, abs=1e-3)


def test_prometheus_exposition_has_the_stage_histograms(any_gateway: Process) -> None:
    text = httpx.get(f"{any_gateway.url}/metrics/prometheus").text
    for name in ("gateway_decode_seconds", "gateway_inference_seconds", "gateway_request_seconds"):
        assert f"{name}_bucket" in text
    assert "gateway_predict_requests_total" in text


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, I am a text file", 415, "not_an_image"),
    ],
)
def test_bad_uploads_get_problem_documents(
    any_gateway: Process, data: bytes, status: int, code: str
) -> None:
    response = post_image(any_gateway.url, data)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["success"] is False
    assert body["detail"]


def test_missing_file_field_is_named(any_gateway: Process) -> None:
    response = httpx.post(f"{any_gateway.url}/predict", data={"image": "x"})
    assert response.status_code == 422
    assert response.json()["code"] == "missing_file"


def test_out_of_range_top_k_is_refused(any_gateway: Process, cat_jpeg: bytes) -> None:
    response = post_image(any_gateway.url, cat_jpeg, top_k=0)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_top_k"


def test_unknown_path_is_a_json_404(any_gateway: Process) -> None:
    response = httpx.get(f"{any_gateway.url}/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
