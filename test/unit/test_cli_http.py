"""gateway/cli/client.py and retries.py: the whole-answer timeout, and retries of 503/429.

The timeout is tested against a real socket (a tiny local HTTP server), since
what it guards against is httpx's per-read timeout, which a fake transport
never applies; retries go through httpx.MockTransport.
"""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli.__main__ import main
from gateway.cli.retries import wait_seconds

URL = "http://gateway.test"
PREDICTION = {
    "success": True,
    "filename": "a.jpg",
    "predictions": [{"class_id": 1, "label": "tabby", "probability": 0.5}],
    "total_time_ms": 3.0,
    "model": {"name": "mobilenet", "version": "1", "backend": "embedded", "weights": "trained"},
}
OVERLOADED = {
    "title": "Too many requests in flight",
    "status": 503,
    "detail": "The gateway is handling as many predictions as it allows; retry shortly.",
    "code": "overloaded",
    "success": False,
}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"the bytes of a.jpg")
    return path


@pytest.fixture
def trickling_gateway() -> Iterator[str]:
    """A server that answers /predict a byte every 50 ms: each read is quick, the whole is not."""
    stop = threading.Event()
    body = json.dumps(PREDICTION).encode()  # about 200 bytes: some 10 s in all

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up and closed the connection
                    return
                # The trickle's pace, not a synchronisation: the test's teardown cuts it short.
                if stop.wait(0.05):
                    return

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads what the CLI prints, not the server's log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    serving.join()
    server.server_close()


def test_the_timeout_bounds_the_whole_answer_not_each_read(
    trickling_gateway: str, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["predict", str(image), "--url", trickling_gateway, "--timeout", "0.5"])
    assert code == 1
    assert capsys.readouterr().err == (
        f"{image}: no answer from {trickling_gateway}/predict within 0.5 s\n"
    )


def gateway(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers each request with the next of `answers` (the last one again once they run out)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        # A fresh copy each time: a response belongs to the one request it answers.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handler)


def overloaded(retry_after: str = "0", code: str = "overloaded") -> httpx.Response:
    return httpx.Response(
        503, json={**OVERLOADED, "code": code}, headers={"Retry-After": retry_after}
    )


def test_an_overloaded_gateway_is_asked_again_with_the_same_bytes(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            # The file is gone from the disk by the retry: the bytes must come from memory.
            image.unlink()
            return overloaded(code="shutting_down")
        if len(seen) == 2:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(200, json=PREDICTION)

    code = main(["predict", str(image), "--url", URL, "--raw"], httpx.MockTransport(handler))
    assert code == 0, capsys.readouterr().err
    assert [request.content for request in seen] == [b"the bytes of a.jpg"] * 3
    assert "tabby" in capsys.readouterr().out


def test_retries_stop_after_three_and_the_last_answer_is_reported(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []
    code = main(["predict", str(image), "--url", URL], gateway([overloaded()], seen))
    assert code == 1
    assert len(seen) == 4
    assert capsys.readouterr().err == (
        f"{image}: 503 Too many requests in flight: {OVERLOADED['detail']}\n"
    )


@pytest.mark.parametrize(
    "answer",
    [
        overloaded(code="model_unavailable"),
        httpx.Response(503, json={"status": "unhealthy"}, headers={"Retry-After": "0"}),
        httpx.Response(500, json=OVERLOADED, headers={"Retry-After": "0"}),
    ],
)
def test_other_failures_are_reported_at_once(
    image: Path, answer: httpx.Response, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []
    assert main(["predict", str(image), "--url", URL], gateway([answer], seen)) == 1
    assert len(seen) == 1


NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [
        (None, 1.0),
        ("2", 2.0),
        ("0", 0.0),
        ("30", 5.0),
        ("-4", 0.0),
        ("soon", 1.0),
        ("nan", 1.0),
        (format_datetime(NOW.replace(second=3), usegmt=True), 3.0),
        (format_datetime(NOW.replace(minute=5), usegmt=True), 5.0),
        (format_datetime(NOW.replace(hour=11), usegmt=True), 0.0),
    ],
)
def test_the_wait_is_retry_after_capped_at_five_seconds_one_by_default(
    retry_after: str | None, seconds: float
) -> None:
    assert wait_seconds(retry_after, NOW) == seconds


def test_the_help_says_the_timeout_is_for_the_whole_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["health", "--help"])
    assert "seconds to wait for each whole answer" in " ".join(capsys.readouterr().out.split())
