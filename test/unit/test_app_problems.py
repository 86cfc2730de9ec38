"""Every failure leaves as a problem document: bad input, backend errors, deadlines, overload.

The real app in-process, a fake backend raising what TF Serving or the embedded
model would; test/e2e/test_faults.py makes a real model server fail instead.
"""

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.backend import ModelStatus
from gateway.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    ServableGone,
)

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.anyio


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is the problem document for `code`, and says so in every field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:ml-inference-pipeline:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["success"] is False
    return body


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, I am a text file", 415, "not_an_image"),
        (b"\x00\x00\x01\x00" + bytes(60), 415, "not_an_image"),  # a Windows icon's header
    ],
    ids=["empty", "text", "icon"],
)
async def test_bad_uploads_get_problem_documents(
    client: httpx.AsyncClient, backend: FakeBackend, data: bytes, status: int, code: str
) -> None:
    assert_problem(await post_image_in_process(client, data), status, code)
    assert backend.batches == []  # refused before the model is asked


async def test_a_truncated_image_is_corrupt(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    body = assert_problem(
        await post_image_in_process(client, cat_jpeg[:5000]), 422, "corrupt_image"
    )
    assert "JPEG" in str(body["detail"])


async def test_missing_file_field_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", data={"image": "x"})
    body = assert_problem(response, 422, "missing_file")
    assert "'file'" in str(body["detail"])


@pytest.mark.parametrize("top_k", ["0", "1002", "-1", "three"])
async def test_out_of_range_top_k_is_refused(
    client: httpx.AsyncClient, cat_jpeg: bytes, top_k: str
) -> None:
    response = await post_image_in_process(client, cat_jpeg, top_k=top_k)
    assert str(assert_problem(response, 422, "invalid_top_k")["detail"]).startswith("top_k: ")


async def test_a_body_that_is_not_multipart_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict", content=b"abc", headers={"Content-Type": "multipart/form-data"}
    )
    assert "boundary" in str(assert_problem(response, 400, "bad_request")["detail"])


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nothing-here"), 404, "not_found")


async def test_a_wrong_method_is_a_405_naming_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.delete("/predict")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("upload_bytes", "closes"),
    [(2_001, False), (200_000, True)],
    ids=["over-the-limit", "over-the-form-allowance"],
)
async def test_an_upload_over_the_limit_is_a_413(
    tmp_path: Path, upload_bytes: int, closes: bool
) -> None:
    settings = fake_settings(write_model_files(tmp_path), max_upload_bytes=2_000)
    async with in_process(settings, FakeBackend()) as client:
        response = await post_image_in_process(client, bytes(upload_bytes))
    body = assert_problem(response, 413, "payload_too_large")
    assert body["detail"] == "The upload is larger than the 2,000-byte limit (MAX_UPLOAD_BYTES)."
    # Refused while streaming: the rest of the body is not read, so the connection goes.
    assert (response.headers.get("connection") == "close") is closes


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (BackendUnavailable("TF Serving is not reachable"), 503, "model_unavailable", "5"),
        (ServableGone("version 1 is no longer served"), 503, "model_unavailable", "5"),
        (BackendTimeout("TF Serving did not answer in 1.5 s"), 504, "model_timeout", None),
        (BackendError("TF Serving answered 500"), 502, "model_error", None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
async def test_backend_failures_map_to_their_status_and_code(
    client: httpx.AsyncClient,
    backend: FakeBackend,
    cat_jpeg: bytes,
    error: GatewayError,
    status: int,
    code: str,
    retry_after: str | None,
) -> None:
    backend.error = error
    response = await post_image_in_process(client, cat_jpeg)
    body = assert_problem(response, status, code)
    assert body["detail"] == error.detail
    assert response.headers.get("retry-after") == retry_after


async def test_an_unexpected_backend_failure_is_a_502_that_names_nothing_internal(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.error = RuntimeError("/srv/models/mobilenet/1 failed at 10.0.0.7:8500")
    body = assert_problem(await post_image_in_process(client, cat_jpeg), 502, "model_error")
    assert body["detail"] == "The model backend failed to run this batch."


async def test_non_finite_scores_are_a_model_error(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.scores = np.full(1001, np.nan, dtype=np.float32)
    body = assert_problem(await post_image_in_process(client, cat_jpeg), 502, "model_error")
    assert "non-finite" in str(body["detail"])


async def test_predict_is_a_503_while_no_version_is_available(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.ready = False
    response = await post_image_in_process(client, cat_jpeg)
    assert_problem(response, 503, "model_unavailable")
    assert response.headers["retry-after"] == "5"
    assert backend.batches == []


async def test_a_slow_model_is_cut_off_at_the_requested_deadline(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.delay_s = 5.0
    started = asyncio.get_running_loop().time()
    response = await client.post(
        "/predict", files={"file": cat_jpeg}, headers={"X-Request-Timeout": "0.3"}
    )
    elapsed = asyncio.get_running_loop().time() - started
    body = assert_problem(response, 504, "deadline_exceeded")
    assert body["detail"] == "No answer within the request's 0.3 s deadline."
    assert elapsed < 2.0
    assert len(backend.batches) == 1  # the model was asked; the answer came too late


@pytest.mark.parametrize("seconds", ["soon", "0", "-1", "inf", "nan"])
async def test_an_unreadable_deadline_is_an_invalid_request(
    client: httpx.AsyncClient, cat_jpeg: bytes, seconds: str
) -> None:
    response = await client.post(
        "/predict", files={"file": cat_jpeg}, headers={"X-Request-Timeout": seconds}
    )
    body = assert_problem(response, 422, "invalid_request")
    assert "X-Request-Timeout" in str(body["detail"])


async def test_requests_over_the_in_flight_cap_get_503_at_once(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    backend = FakeBackend(delay_s=0.5)
    settings = fake_settings(write_model_files(tmp_path), max_in_flight=1)
    async with in_process(settings, backend) as client:
        first = asyncio.create_task(post_image_in_process(client, cat_jpeg))
        await backend.predicting.wait()  # the first request holds the only slot
        refused = await post_image_in_process(client, cat_jpeg)
        assert (await first).status_code == 200
    body = assert_problem(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "1"
    assert "MAX_IN_FLIGHT=1" in str(body["detail"])


class BrokenStatus(FakeBackend):
    """A backend whose status check fails in a way no code path expects."""

    async def status(self) -> ModelStatus:
        raise RuntimeError("status failed: /srv/models/mobilenet at 10.0.0.7:8501")


async def test_an_unexpected_error_is_a_500_problem_without_internals(tmp_path: Path) -> None:
    async with in_process(fake_settings(write_model_files(tmp_path)), BrokenStatus()) as client:
        response = await client.get("/health")
    body = assert_problem(response, 500, "internal_error")
    assert body["detail"] == "An unexpected error occurred; it has been logged."
    assert "10.0.0.7" not in response.text
    assert "Traceback" not in response.text
