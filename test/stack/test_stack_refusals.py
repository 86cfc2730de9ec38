"""What the stack refuses, and how: the README's error table, as problem documents.

Each refusal is checked by its status and stable `code` (README.md, "Errors"),
and by what its message tells the client (what is served, what to send).
X-Request-ID is checked here too: a client's id comes back on answers and
refusals alike.
"""

from typing import Any

import httpx
import pytest

from routing_helpers import ServedModel, predict

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem document of a refusal, checked for its status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"], body["success"]) == (status, code, False)
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        pytest.param({"image": ("cat.jpg", b"\xff\xd8\xff")}, 422, "missing_file", id="no-file"),
        pytest.param({"file": ("empty.jpg", b"")}, 400, "empty_file", id="empty"),
        pytest.param(
            {"file": ("cat.jpg", b"not an image at all\n" * 20)}, 415, "not_an_image", id="text"
        ),
    ],
)
def test_bad_uploads(
    stack: httpx.Client, files: dict[str, tuple[str, bytes]], status: int, code: str
) -> None:
    problem(stack.post("/predict", files=files), status, code)


def test_a_truncated_jpeg_is_corrupt(stack: httpx.Client, cat_jpeg: bytes) -> None:
    problem(predict(stack, cat_jpeg[: len(cat_jpeg) // 2]), 422, "corrupt_image")


def test_an_upload_past_the_limit_is_refused(stack: httpx.Client) -> None:
    limit = stack.get("/").json()["limits"]["max_upload_bytes"]
    body = problem(predict(stack, bytes(limit + 1)), 413, "payload_too_large")
    assert str(limit) in body["detail"].replace(",", "")


def test_an_unknown_model_names_those_served(
    stack: httpx.Client, cat_jpeg: bytes, compose_models: tuple[ServedModel, ...]
) -> None:
    body = problem(predict(stack, cat_jpeg, model="no_such_model"), 404, "unknown_model")
    for model in compose_models:
        assert model.name in body["detail"]


def test_an_unknown_version_or_label_names_those_served(
    stack: httpx.Client, cat_jpeg: bytes, compose_models: tuple[ServedModel, ...]
) -> None:
    for model in compose_models:
        unserved = max(model.versions, default=1) + 100
        body = problem(
            predict(stack, cat_jpeg, model=model.name, version=unserved), 404, "unknown_version"
        )
        assert str(unserved) in body["detail"]
        for version in model.versions:
            assert str(version) in body["detail"]
        body = problem(
            predict(stack, cat_jpeg, model=model.name, label="no-such-label"),
            404,
            "unknown_version",
        )
        for label in model.labels:
            assert label in body["detail"]


def test_a_version_and_a_label_together_are_refused(stack: httpx.Client, cat_jpeg: bytes) -> None:
    problem(predict(stack, cat_jpeg, version=1, label="stable"), 422, "invalid_request")


def test_a_request_id_comes_back_on_answers_and_refusals(
    stack: httpx.Client, cat_jpeg: bytes
) -> None:
    sent = {"X-Request-ID": "stack-suite-0001"}
    answered = stack.post("/predict", files={"file": ("cat.jpg", cat_jpeg)}, headers=sent)
    refused = stack.post("/predict", files={"file": ("e.jpg", b"")}, headers=sent)
    assert (answered.status_code, refused.status_code) == (200, 400)
    assert answered.headers["X-Request-ID"] == refused.headers["X-Request-ID"] == "stack-suite-0001"
    fresh = [predict(stack, cat_jpeg).headers["X-Request-ID"] for _ in range(2)]
    assert all(fresh)
    assert fresh[0] != fresh[1]


def test_without_the_key_only_the_probes_answer(stack: httpx.Client, cat_jpeg: bytes) -> None:
    if "X-API-Key" not in stack.headers:
        pytest.skip("the stack runs without API keys (no STACK_API_KEY)")
    with httpx.Client(base_url=stack.base_url, timeout=60) as anonymous:
        body = problem(predict(anonymous, cat_jpeg), 401, "unauthorized")
        assert "X-API-Key" in body["detail"]
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/health/ready").status_code == 200
