"""Raw-body uploads and POST /predict/batch against live gateways, every backend and transport."""

import socket
from pathlib import Path

import httpx
import pytest

from api_client import post_image
from processes import Process, wait_until

PHOTOS = Path(__file__).resolve().parents[1] / "photos"


def test_a_raw_body_gets_the_answer_the_form_gets(any_gateway: Process, cat_jpeg: bytes) -> None:
    raw = httpx.post(
        f"{any_gateway.url}/predict",
        content=cat_jpeg,
        headers={"Content-Type": "image/jpeg", "Content-Disposition": 'inline; filename="cat.jpg"'},
        params={"top_k": 10},
        timeout=60.0,
    )
    form = post_image(any_gateway.url, cat_jpeg, filename="cat.jpg", top_k=10)
    assert raw.status_code == form.status_code == 200, raw.text
    raw_body, form_body = raw.json(), form.json()
    assert raw_body["filename"] == form_body["filename"] == "cat.jpg"
    assert raw_body["original_size"] == form_body["original_size"] == "451x300"
    assert [p["class_id"] for p in raw_body["predictions"]] == [
        p["class_id"] for p in form_body["predictions"]
    ]
    assert raw_body["model"] == form_body["model"]


def test_a_raw_text_body_is_refused_with_a_message(any_gateway: Process) -> None:
    response = httpx.post(
        f"{any_gateway.url}/predict",
        content=b"just words",
        headers={"Content-Type": "application/octet-stream"},
        timeout=60.0,
    )
    assert response.status_code == 415
    assert response.json()["code"] == "not_an_image"


def test_a_batch_answers_each_file_in_order(any_gateway: Process, cat_jpeg: bytes) -> None:
    photos = sorted(PHOTOS.iterdir())
    files = [("file", ("cat.jpg", cat_jpeg))]
    files += [("file", (photo.name, photo.read_bytes())) for photo in photos]
    files += [("file", ("notes.txt", b"not an image"))]
    response = httpx.post(f"{any_gateway.url}/predict/batch", files=files, timeout=60.0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(files)
    assert (body["succeeded"], body["failed"]) == (len(files) - 1, 1)
    names = [result["filename"] for result in body["results"]]
    assert names == ["cat.jpg", *(photo.name for photo in photos), "notes.txt"]
    assert body["results"][-1]["code"] == "not_an_image"
    for result, (_, (name, data)) in zip(body["results"][:-1], files[:-1], strict=True):
        single = post_image(any_gateway.url, data, filename=name).json()
        assert result["original_size"] == single["original_size"]
        assert [p["class_id"] for p in result["predictions"]] == [
            p["class_id"] for p in single["predictions"]
        ]
        assert result["predictions"][0]["probability"] == pytest.approx(
            single["predictions"][0]["probability"], abs=1e-4
        )
        assert result["model"]["backend"] == any_gateway.env["INFERENCE_BACKEND"]


def outcome_count(gateway: Process, outcome: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics/prometheus", timeout=10.0).text
    series = f'gateway_predict_requests_total{{outcome="{outcome}"}} '
    return next(
        (float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)), 0.0
    )


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/predict", "image/jpeg", b"\xff\xd8\xff" + bytes(997)),
        (
            "/predict/batch",
            "multipart/form-data; boundary=cut",
            b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
            + bytes(900),
        ),
    ],
    ids=["raw", "batch"],
)
def test_a_client_gone_mid_upload_is_counted_as_such_without_a_traceback(
    embedded_gateway: Process, path: str, content_type: str, start: bytes
) -> None:
    before = outcome_count(embedded_gateway, "client_closed_request")
    errors_before = outcome_count(embedded_gateway, "internal_error")
    log_before = embedded_gateway.log_path.read_text(errors="replace").count("Traceback")
    host, port = embedded_gateway.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        connection.sendall(head.encode() + start)
    wait_until(
        lambda: outcome_count(embedded_gateway, "client_closed_request") == before + 1,
        what="the cut-off upload counted as client_closed_request",
    )
    assert outcome_count(embedded_gateway, "internal_error") == errors_before
    log = embedded_gateway.log_path.read_text(errors="replace")
    assert log.count("Traceback") == log_before, log[-3000:]
