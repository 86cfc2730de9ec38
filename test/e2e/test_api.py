"""A real prediction from every backend and transport, over real HTTP, against real processes.

What does not depend on the backend (input validation, error mapping, top_k,
metrics, the index, liveness) is tested in-process: test/unit/test_app_*.py.
Here stay the answers only a real model server and a real export give: the
served version, the signature learned from the model, scores and labels.
"""

import httpx
import pytest

from api_client import post_image
from processes import Process

CONTRACT_PREDICTION_FIELDS = {"class_id", "label", "probability", "confidence_percent"}


def test_health_reports_available_untrained_version(any_gateway: Process) -> None:
    response = httpx.get(f"{any_gateway.url}/health")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "healthy"
    assert body["served_model"]["version"] == 1
    assert body["served_model"]["state"] == "AVAILABLE"
    assert body["served_model"]["weights"] == "untrained"
    assert "UNTRAINED" in body["warning"]


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
        "backend": any_gateway.env["INFERENCE_BACKEND"],
        "precision": "float32",
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
