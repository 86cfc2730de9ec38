"""POST /predict with the image as the whole body (gateway/raw_upload.py), in-process."""

from pathlib import Path

import httpx
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from test_app_problems import assert_problem

pytestmark = pytest.mark.anyio


async def post_raw(
    client: httpx.AsyncClient, data: bytes, content_type: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/predict", content=data, headers={"Content-Type": content_type, **headers}
    )


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "application/octet-stream"])
async def test_a_raw_body_answers_what_the_same_file_in_a_form_answers(
    client: httpx.AsyncClient, cat_jpeg: bytes, content_type: str
) -> None:
    raw = await post_raw(client, cat_jpeg, content_type)
    form = await post_image_in_process(client, cat_jpeg, filename="cat.jpg")
    assert raw.status_code == form.status_code == 200, raw.text
    raw_body, form_body = raw.json(), form.json()
    # The bytes decide the answer, whatever Content-Type names (the format is sniffed).
    for field in ("original_size", "format", "predictions", "model", "note", "success"):
        assert raw_body[field] == form_body[field]
    assert raw_body["filename"] == ""
    assert form_body["filename"] == "cat.jpg"
    assert set(raw_body["stages_ms"]) == {"upload", "decode", "queue", "model", "ranking"}


async def test_content_disposition_names_a_raw_upload(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    response = await post_raw(
        client,
        cat_jpeg,
        "image/jpeg",
        **{"Content-Disposition": 'attachment; filename="../holiday/cat 1.jpg"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "cat 1.jpg"  # never the client's folders


async def test_a_raw_body_that_is_not_an_image_is_refused_as_a_form_upload_is(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    assert_problem(await post_raw(client, b"hello", "image/jpeg"), 415, "not_an_image")
    assert_problem(await post_raw(client, b"", "image/jpeg"), 400, "empty_file")
    assert backend.batches == []


async def test_a_body_with_another_type_is_a_missing_file_that_names_both_ways(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    for content_type in ("text/plain", "application/json"):
        body = assert_problem(await post_raw(client, cat_jpeg, content_type), 422, "missing_file")
        assert "multipart/form-data" in str(body["detail"])
        assert "Content-Type: image/jpeg" in str(body["detail"])
    assert_problem(await client.post("/predict"), 422, "missing_file")


async def test_a_raw_body_over_the_limit_is_413_like_a_form(
    tmp_path: Path, cat_jpeg: bytes
) -> None:
    settings = fake_settings(write_model_files(tmp_path), max_upload_bytes=len(cat_jpeg) - 1)
    async with in_process(settings, FakeBackend()) as client:
        raw = await post_raw(client, cat_jpeg, "image/jpeg")
        form = await post_image_in_process(client, cat_jpeg)
    assert assert_problem(raw, 413, "payload_too_large")["detail"] == form.json()["detail"]


async def test_uploads_are_counted_by_how_they_came(
    client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    def counted(encoding: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'gateway_upload_encodings_total{{encoding="{encoding}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    text = (await client.get("/metrics/prometheus")).text
    before = counted("raw"), counted("multipart")
    await post_raw(client, cat_jpeg, "image/jpeg")
    await post_raw(client, cat_jpeg, "image/jpeg")
    await post_image_in_process(client, cat_jpeg)
    text = (await client.get("/metrics/prometheus")).text
    assert (counted("raw") - before[0], counted("multipart") - before[1]) == (2.0, 1.0)
