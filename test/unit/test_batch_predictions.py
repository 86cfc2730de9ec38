"""POST /predict/batch (gateway/batch_route.py), in-process with a fake backend."""

from pathlib import Path

import httpx
import numpy as np
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.errors import BackendUnavailable
from test_app_problems import PROBLEM, assert_problem

pytestmark = pytest.mark.anyio


async def post_batch(
    client: httpx.AsyncClient, files: list[tuple[str, bytes]], **params: int | str
) -> httpx.Response:
    fields = [("file", (name, data)) for name, data in files]
    return await client.post("/predict/batch", files=fields, params=params)


async def test_each_file_gets_what_a_single_upload_gets_in_order(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    files = [("a.jpg", cat_jpeg), ("notes.txt", b"not an image"), ("c.jpg", cat_jpeg)]
    response = await post_batch(client, files, top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["count"], body["succeeded"], body["failed"]) == (
        False,
        3,
        2,
        1,
    )
    first, bad, third = body["results"]
    single = (await post_image_in_process(client, cat_jpeg, filename="a.jpg", top_k=3)).json()
    for result, name in ((first, "a.jpg"), (third, "c.jpg")):
        assert result["success"] is True
        assert result["filename"] == name
        for field in ("original_size", "predictions", "model", "note", "format"):
            assert result[field] == single[field]
    assert bad == {
        "type": "urn:ml-inference-pipeline:problem:not_an_image",
        "title": "Not an image",
        "status": 415,
        "detail": bad["detail"],
        "code": "not_an_image",
        "success": False,
        "filename": "notes.txt",
    }
    assert response.headers["X-Model-Version"] == "1"


async def batch_of_copies(
    tmp_path: Path, image: bytes, copies: int, **settings: int
) -> tuple[httpx.Response, FakeBackend]:
    """One batch of `copies` files sent to a gateway with these settings; its backend."""
    backend = FakeBackend()
    gateway_settings = fake_settings(write_model_files(tmp_path), **settings)
    async with in_process(gateway_settings, backend) as client:
        response = await post_batch(client, [(f"{n}.jpg", image) for n in range(copies)])
    return response, backend


async def test_the_images_of_one_request_reach_the_model_in_one_call(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    # BATCH_MAX_SIZE bounds calls that gather separate requests, not one request's images.
    response, backend = await batch_of_copies(tmp_path, cat_jpeg, 8, batch_max_size=2)
    assert response.json()["succeeded"] == 8
    assert [len(batch) for batch in backend.batches] == [8]


async def test_all_good_is_success(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    body = (await post_batch(client, [("a.jpg", cat_jpeg), ("b.jpg", cat_jpeg)])).json()
    assert (body["success"], body["succeeded"], body["failed"]) == (True, 2, 0)


async def test_too_many_files_are_refused_whole_before_the_model_is_asked(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    backend = FakeBackend()
    settings = fake_settings(write_model_files(tmp_path), max_batch_files=3)
    async with in_process(settings, backend) as client:
        response = await post_batch(client, [(f"{n}.jpg", cat_jpeg) for n in range(4)])
        assert (await post_batch(client, [("a.jpg", cat_jpeg)] * 3)).status_code == 200
    body = assert_problem(response, 413, "too_many_files")
    assert "MAX_BATCH_FILES" in str(body["detail"])
    assert [len(batch) for batch in backend.batches] == [3]


async def test_files_over_the_total_bytes_are_refused_whole(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    limit = 2 * len(cat_jpeg) + 10
    response, backend = await batch_of_copies(tmp_path, cat_jpeg, 3, max_batch_bytes=limit)
    body = assert_problem(response, 413, "payload_too_large")
    assert "MAX_BATCH_BYTES" in str(body["detail"])
    assert backend.batches == []


async def test_a_batch_body_past_its_limit_is_cut_off_as_it_streams(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    settings = fake_settings(write_model_files(tmp_path), max_batch_bytes=len(cat_jpeg))
    async with in_process(settings, FakeBackend()) as client:
        # Far past the limit plus the form's allowance: UploadGuard refuses it from the header.
        response = await post_batch(client, [("big.jpg", bytes(len(cat_jpeg) + 200_000))])
    assert_problem(response, 413, "payload_too_large")


async def test_many_other_fields_are_refused_naming_the_setting(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    fields = {f"note{n}": "x" for n in range(40)}
    response = await client.post(
        "/predict/batch", files=[("file", ("a.jpg", cat_jpeg))], data=fields
    )
    body = assert_problem(response, 400, "bad_request")
    assert "MAX_BATCH_FILES" in str(body["detail"])


async def test_no_files_or_a_text_field_is_a_missing_file(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/predict/batch"), 422, "missing_file")
    assert "-F file=@a.jpg -F file=@b.jpg" in str(body["detail"])
    response = await client.post("/predict/batch", data={"file": "cat.jpg"})
    assert_problem(response, 422, "missing_file")


async def test_when_the_model_server_fails_every_file_the_request_gets_its_5xx(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.error = BackendUnavailable("TF Serving is down.")
    response = await post_batch(client, [("a.jpg", cat_jpeg), ("b.jpg", cat_jpeg)])
    assert_problem(response, 503, "model_unavailable")
    assert response.headers["Retry-After"] == "5"


async def test_a_bad_file_beside_a_down_model_server_still_gets_its_own_answer(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.error = BackendUnavailable("TF Serving is down.")
    response = await post_batch(client, [("a.jpg", cat_jpeg), ("b.txt", b"text")])
    assert response.status_code == 200
    codes = [result["code"] for result in response.json()["results"]]
    assert codes == ["model_unavailable", "not_an_image"]


async def test_a_request_and_each_image_are_counted(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    def counts() -> tuple[float, ...]:
        requests = 'gateway_predict_requests_total{outcome="%s"}'
        return (
            sample(text, 'gateway_batch_images_total{outcome="success"}'),
            sample(text, 'gateway_batch_images_total{outcome="not_an_image"}'),
            sample(text, requests % "success"),
            sample(text, requests % "batch_partial_failure"),
            sample(text, requests % "batch_failed"),
        )

    text = (await client.get("/metrics/prometheus")).text
    before = counts()
    await post_batch(client, [("a.jpg", cat_jpeg), ("b.txt", b"text"), ("c.jpg", cat_jpeg)])
    await post_batch(client, [("a.jpg", cat_jpeg)])
    # Answered 200, but nothing in it succeeded: not a success either.
    await post_batch(client, [("b.txt", b"text")])
    text = (await client.get("/metrics/prometheus")).text
    changes = tuple(a - b for a, b in zip(counts(), before, strict=True))
    assert changes == (3.0, 2.0, 1.0, 1.0, 1.0)


def sample(text: str, series: str) -> float:
    """The value of one series in a Prometheus text page (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_unknown_models_and_bad_parameters_are_refused_for_the_whole_request(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    files = [("a.jpg", cat_jpeg)]
    assert_problem(await post_batch(client, files, model="nope"), 404, "unknown_model")
    response = await post_batch(client, files, top_k=0)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    response = await post_batch(client, files, version=1, label="stable")
    assert_problem(response, 422, "invalid_request")


async def test_non_finite_scores_fail_that_image_only(
    client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    scores = backend.scores.copy()
    scores[0] = np.nan
    backend.scores = scores
    response = await post_batch(client, [("a.jpg", cat_jpeg)])
    # One image, failed by the model server's answer (502): the whole request says so.
    assert_problem(response, 502, "model_error")
