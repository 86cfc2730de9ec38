"""A client of the original API works unchanged, whatever backend and transport answer.

The fields come from test/contract/original.json, the original documentation's
bodies transcribed; these tests read them from there, so a change that renames
a field or changes its JSON type fails here.
"""

import json
from pathlib import Path
from typing import Any

import httpx

from api_client import post_image
from processes import ROOT, Process, free_port, gateway

CONTRACT = json.loads((ROOT / "test" / "contract" / "original.json").read_text())["endpoints"]


def json_type(value: Any) -> str:
    """The JSON type a client sees (bool is not a number, 3 is not 3.0)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def contract_breaks(example: Any, actual: Any, path: str = "$") -> list[str]:
    """Every place where `actual` lacks a field of `example` or holds another JSON type."""
    if json_type(example) != json_type(actual):
        return [f"{path}: {json_type(actual)} where the contract has {json_type(example)}"]
    if isinstance(example, dict):
        breaks = []
        for key, value in example.items():
            if key not in actual:
                breaks.append(f"{path}.{key}: missing")
            elif value != {}:  # {} in the example: an object whose keys are free
                breaks.extend(contract_breaks(value, actual[key], f"{path}.{key}"))
        return breaks
    if isinstance(example, list) and example:
        return [
            problem
            for index, item in enumerate(actual)
            for problem in contract_breaks(example[0], item, f"{path}[{index}]")
        ]
    return []


def assert_contract(endpoint: str, response: httpx.Response) -> dict[str, Any]:
    contract = CONTRACT[endpoint]
    assert response.status_code == contract["status"], response.text
    body: dict[str, Any] = response.json()
    assert contract_breaks(contract["example"], body) == []
    for key, value in contract["fixed_values"].items():
        assert body[key] == value, key
    return body


def test_the_checker_catches_a_renamed_or_retyped_field() -> None:
    example = CONTRACT["POST /predict"]["example"]
    broken = {**example, "original_size": [480, 360], "model": {"name": "m", "version": 1}}
    del broken["note"]
    assert sorted(contract_breaks(example, broken)) == [
        "$.model.version: integer where the contract has string",
        "$.note: missing",
        "$.original_size: array where the contract has string",
    ]


def test_index(any_gateway: Process) -> None:
    body = assert_contract("GET /", httpx.get(f"{any_gateway.url}/"))
    assert body["model"] == "mobilenet"
    assert "/predict" in body["usage"]
    assert "POST /predict" in body["endpoints"]


def test_health(any_gateway: Process) -> None:
    body = assert_contract("GET /health", httpx.get(f"{any_gateway.url}/health"))
    (entry,) = body["model"]["model_version_status"]
    assert entry == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


def test_predict(any_gateway: Process, cat_jpeg: bytes) -> None:
    body = assert_contract("POST /predict", post_image(any_gateway.url, cat_jpeg, "cat.jpg"))
    assert body["filename"] == "cat.jpg"
    assert body["original_size"] == "451x300"
    assert body["original_size"].split("x") == ["451", "300"]
    assert (body["original_width"], body["original_height"]) == (451, 300)
    assert body["model"]["name"] == "mobilenet"
    assert body["model"]["version"] == "1"
    predictions = body["predictions"]
    assert len(predictions) == 5
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    for prediction in predictions:
        assert 0 <= prediction["class_id"] < 1001
        assert prediction["confidence_percent"] == round(prediction["probability"] * 100, 2)
    assert body["inference_time_ms"] > 0


def test_metrics(any_gateway: Process, cat_jpeg: bytes) -> None:
    assert post_image(any_gateway.url, cat_jpeg).status_code == 200
    body = assert_contract("GET /metrics", httpx.get(f"{any_gateway.url}/metrics"))
    assert body["model"] == "mobilenet"
    assert body["model_version"] == "1"
    successes = body["requests_total"] - body["errors_total"]
    assert body["success_rate"] == round(successes / body["requests_total"] * 100, 2)


def test_model_metadata(any_gateway: Process) -> None:
    body = assert_contract("GET /model", httpx.get(f"{any_gateway.url}/model"))
    assert body["model_spec"]["name"] == "mobilenet"
    assert body["model_spec"]["version"] == "1"
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (images,) = signature["inputs"].values()
    assert [dim["size"] for dim in images["tensor_shape"]["dim"]] == ["-1", "224", "224", "3"]
    (probabilities,) = signature["outputs"].values()
    assert [dim["size"] for dim in probabilities["tensor_shape"]["dim"]] == ["-1", "1001"]


def test_embedded_metadata_is_what_tf_serving_sends(
    tfserving_gateway: Process, embedded_gateway: Process
) -> None:
    served = httpx.get(f"{tfserving_gateway.url}/model").json()
    embedded = httpx.get(f"{embedded_gateway.url}/model").json()
    assert embedded["model_spec"] == served["model_spec"]
    signatures = "metadata", "signature_def", "signature_def", "serving_default"
    assert dig(embedded, signatures) == dig(served, signatures)


def dig(document: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        document = document[key]
    return document


def test_unhealthy_when_tf_serving_is_unreachable(model_root: Path, logs: Path) -> None:
    closed = free_port()
    front = gateway(
        logs / "contract-no-tfserving.log",
        TF_SERVING_URL=f"http://127.0.0.1:{closed}/v1/models/mobilenet:predict",
        TF_SERVING_GRPC_TARGET=f"127.0.0.1:{free_port()}",
        MODEL_BASE_PATH=str(model_root),
    ).start()
    try:
        body = assert_contract("GET /health unhealthy", httpx.get(f"{front.url}/health"))
    finally:
        front.stop()
    assert body["tf_serving"] == "disconnected"
    assert "not reachable" in body["error"]


def test_unhealthy_embedded_says_why(logs: Path, tmp_path: Path) -> None:
    (tmp_path / "mobilenet").mkdir()
    front = gateway(
        logs / "contract-embedded-empty.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(tmp_path),
    ).start()
    try:
        body = assert_contract("GET /health unhealthy", httpx.get(f"{front.url}/health"))
    finally:
        front.stop()
    assert "export_model.py" in body["error"]
