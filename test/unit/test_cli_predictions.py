"""gateway/cli/predictions.py through `main`: order, concurrency, output streams, exit codes.

The gateway is faked at the transport (httpx.MockTransport): every request the
CLI builds goes through it as it would go over the network.
"""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli.__main__ import main

URL = "http://gateway.test"
BAD_IMAGE = {
    "type": "urn:ml-inference-pipeline:problem:invalid_image",
    "title": "Invalid image",
    "status": 400,
    "detail": "The file is not an image the gateway can decode (JPEG, PNG, ...).",
    "code": "invalid_image",
    "success": False,
}


def answer_for(filename: str, weights: str = "trained") -> dict[str, Any]:
    """A /predict body naming the file it classified, so the output shows which answer is whose."""
    return {
        "success": True,
        "filename": filename,
        "predictions": [{"class_id": 1, "label": f"label of {filename}", "probability": 0.5}],
        "total_time_ms": 3.0,
        "model": {"name": "mobilenet", "version": "1", "backend": "embedded", "weights": weights},
    }


def uploaded_name(request: httpx.Request) -> str:
    """The file name a multipart or raw upload carries."""
    body = request.content.decode("latin-1")
    marker = 'filename="'
    start = body.find(marker)
    if start < 0:
        start = request.headers["content-disposition"].find(marker)
        body = request.headers["content-disposition"]
    start += len(marker)
    return body[start : body.index('"', start)]


def predict(argv: list[str], handler: Callable[[httpx.Request], Any]) -> int:
    return main(["predict", "--url", URL, *argv], transport=httpx.MockTransport(handler))


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    files = [tmp_path / f"{name}.jpg" for name in ("a", "b", "c", "d", "e", "f")]
    for file in files:
        file.write_bytes(f"bytes of {file.name}".encode())
    return files


def test_answers_are_printed_in_the_order_of_the_inputs_whatever_order_they_arrive_in(
    images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    last_arrived = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        name = uploaded_name(request)
        if name == "f.jpg":
            last_arrived.set()
        else:
            # Every answer but the last file's waits for the last request: they arrive last.
            await asyncio.wait_for(last_arrived.wait(), timeout=10)
        return httpx.Response(200, json=answer_for(name))

    code = predict([*map(str, images), "--json", "--concurrency", "6"], handler)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [json.loads(line)["file"] for line in lines] == [str(image) for image in images]
    assert [json.loads(line)["response"]["filename"] for line in lines] == [
        image.name for image in images
    ]


def test_no_more_requests_are_in_flight_than_concurrency(
    images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    in_flight = 0
    most = 0
    pair = asyncio.Barrier(2)

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        # Passes only once two requests are in flight together: concurrency 1 would time out.
        await asyncio.wait_for(pair.wait(), timeout=10)
        in_flight -= 1
        return httpx.Response(200, json=answer_for(uploaded_name(request)))

    assert predict([*map(str, images), "--concurrency", "2"], handler) == 0
    assert most == 2
    assert capsys.readouterr().out.count("label of") == len(images)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A text file among the images: the gateway refuses it."""
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    return path


def refusing_notes(weights: str = "trained") -> Callable[[httpx.Request], httpx.Response]:
    """A gateway that answers every image and refuses notes.txt with a problem document."""

    def handler(request: httpx.Request) -> httpx.Response:
        name = uploaded_name(request)
        if name == "notes.txt":
            return httpx.Response(400, json=BAD_IMAGE)
        return httpx.Response(200, json=answer_for(name, weights))

    return handler


def test_a_failed_file_exits_1_with_its_problem_on_stderr_and_the_others_still_print(
    images: list[Path], notes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = predict([str(images[0]), str(notes), str(images[1])], refusing_notes())
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"{notes}: 400 Invalid image: {BAD_IMAGE['detail']}\n"
    blocks = captured.out.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [str(images[0]), str(images[1])]
    assert "label of a.jpg" in blocks[0]
    assert "model mobilenet version 1 (embedded), 3.0 ms" in blocks[0]


def test_json_lines_hold_every_file_and_stdout_holds_nothing_else(
    images: list[Path], notes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = predict([str(images[0]), str(notes), "--json"], refusing_notes("untrained"))
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1
    assert records == [
        {
            "file": str(images[0]),
            "ok": True,
            "status": 200,
            "response": answer_for("a.jpg", "untrained"),
        },
        {"file": str(notes), "ok": False, "status": 400, "response": BAD_IMAGE},
    ]
    assert f"{notes}: 400 Invalid image" in captured.err


def test_untrained_weights_are_warned_about_once_on_stderr(
    images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer_for(uploaded_name(request), weights="untrained"))

    assert predict(list(map(str, images[:3])), handler) == 0
    captured = capsys.readouterr()
    assert captured.err.count("UNTRAINED") == 1
    assert "UNTRAINED" not in captured.out


def test_the_key_is_sent_and_a_401_says_how_to_give_one(
    images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    unauthorized = {
        **BAD_IMAGE,
        "status": 401,
        "title": "Missing or unknown API key",
        "detail": "Send a valid API key in the X-API-Key header.",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-api-key") != "right":
            return httpx.Response(401, json=unauthorized)
        return httpx.Response(200, json=answer_for(uploaded_name(request)))

    assert predict([str(images[0]), "--api-key", "right"], handler) == 0
    assert predict([str(images[0])], handler) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{images[0]}: 401 Missing or unknown API key: "
        "Send a valid API key in the X-API-Key header.",
        "hint: give the gateway's key with --api-key, or in MLPIPE_API_KEY",
    ]


def test_multipart_by_default_and_raw_bytes_with_their_type_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "Photo One.PNG"
    photo.write_bytes(b"\x89PNG pixels")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer_for(photo.name))

    assert predict([str(photo), "--top-k", "3"], handler) == 0
    assert predict([str(photo), "--raw"], handler) == 0
    multipart, raw = seen
    assert multipart.url.params["top_k"] == "3"
    assert multipart.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="Photo One.PNG"' in multipart.content
    assert b"Content-Type: image/png" in multipart.content
    assert (raw.method, raw.url.path, "top_k" in raw.url.params) == ("POST", "/predict", False)
    assert raw.headers["content-type"] == "image/png"
    assert raw.headers["content-disposition"] == 'attachment; filename="Photo One.PNG"'
    assert raw.content == b"\x89PNG pixels"


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            httpx.ConnectError("All connection attempts failed"),
            f"could not connect to {URL}: All connection attempts failed",
        ),
        (httpx.ReadTimeout("timed out"), f"no answer from {URL}/predict within 1.5 s"),
    ],
)
def test_an_unreachable_gateway_is_named_for_each_file(
    images: list[Path], failure: Exception, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    code = predict([str(images[0]), str(images[1]), "--timeout", "1.5"], handler)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.splitlines() == [f"{images[0]}: {message}", f"{images[1]}: {message}"]


@pytest.mark.parametrize(
    ("odd", "fault"),
    [
        ([1, 2], "a JSON list, not a JSON object"),
        ("<html>It works!</html>", 'text "<html>It works!</html>", not a JSON object'),
        ({"status": "healthy"}, 'no "success" field'),
        ({"success": "yes", "predictions": []}, '"success" is "yes"'),
        ({"success": True, "predictions": None}, 'no "predictions" list'),
        ({"success": True, "predictions": ["cat"]}, 'prediction 1 is text "cat", not an object'),
        (
            {"success": True, "predictions": [{"label": "cat", "probability": "high"}]},
            'prediction 1 has no numeric "probability"',
        ),
    ],
)
def test_a_2xx_that_is_not_a_prediction_fails_that_file_alone_and_the_run_goes_on(
    images: list[Path], odd: Any, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        name = uploaded_name(request)
        if name == images[0].name and isinstance(odd, str):
            return httpx.Response(200, text=odd, headers={"content-type": "text/html"})
        if name == images[0].name:
            return httpx.Response(200, json=odd)
        return httpx.Response(200, json=answer_for(name))

    code = predict([str(images[0]), str(images[1])], handler)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"{images[0]}: 200 unexpected answer from the gateway: {fault}\n"
    assert captured.out.splitlines()[0] == str(images[1])
    assert "label of b.jpg" in captured.out

    assert predict([str(images[0]), str(images[1]), "--json"], handler) == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first == {
        "file": str(images[0]),
        "ok": False,
        "status": 200,
        "response": odd,
        "error": f"unexpected answer from the gateway: {fault}",
    }
    assert (second["ok"], second["response"]) == (True, answer_for(images[1].name))
