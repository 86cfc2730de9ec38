"""One `gateway.access` line per request: what was asked, how it ended, and what the route noted."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from api_client import post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway import metrics
from gateway.access_log import AccessLog, printable
from gateway.accounting import PredictAccounting
from gateway.logs import FIELDS
from gateway.request_id import RequestIdMiddleware
from test_request_id import CAT, observed

pytestmark = pytest.mark.anyio

RECORDED = {
    "model": "mobilenet",
    "version": "2",
    "label": "canary",
    "stages_ms": {"upload": 1.5, "decode": 4.0, "queue": 0.2, "model": 9.0, "ranking": 0.1},
}


AccessLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> AccessLines:
    """Reads the fields of the access lines written so far."""
    caplog.set_level(logging.INFO, logger="gateway.access")

    def read() -> list[dict[str, Any]]:
        return [dict(getattr(r, FIELDS)) for r in caplog.records if r.name == "gateway.access"]

    return read


def with_recording_route(app: FastAPI) -> None:
    """A route that records what the /predict handler is to record, as it is to record it."""

    async def observed_route(request: Request) -> dict[str, str]:
        request.state.access_log = RECORDED
        return {}

    app.add_api_route("/observed", observed_route, methods=["POST"])


async def test_a_prediction_is_one_line_without_its_query_string(
    tmp_path: Path, access_lines: AccessLines
) -> None:
    settings = fake_settings(write_model_files(tmp_path))
    async with observed(settings, FakeBackend()) as client:
        answer = await post_image_in_process(client, CAT, "cat.jpg", top_k=2, api_key="zzz")
    assert answer.status_code == 200
    (line,) = access_lines()
    assert line == {
        "method": "POST",
        "path": "/predict",
        "status": 200,
        "outcome": "success",
        "duration_ms": line["duration_ms"],
        "request_id": answer.headers["X-Request-ID"],
        "client": "127.0.0.1",
        # What the /predict handler recorded: who answered, and where the time went.
        "model": "mobilenet",
        "version": "1",
        "label": "",
        "stages_ms": line["stages_ms"],
    }
    assert set(line["stages_ms"]) == {"upload", "decode", "queue", "model", "ranking"}
    assert all(ms >= 0 for ms in line["stages_ms"].values())
    assert line["duration_ms"] > 0
    assert "zzz" not in repr(line)


async def test_what_the_route_recorded_is_on_the_line(
    tmp_path: Path, access_lines: AccessLines
) -> None:
    settings = fake_settings(write_model_files(tmp_path))
    async with observed(settings, FakeBackend(), extend=with_recording_route) as client:
        answer = await client.post("/observed", headers={"X-Request-ID": "r-1"})
    assert answer.status_code == 200
    (line,) = access_lines()
    assert line["request_id"] == "r-1"
    assert {key: line[key] for key in RECORDED} == RECORDED
    assert line["outcome"] == "200"  # not a prediction: its status


async def test_a_problem_is_logged_under_its_code_and_other_answers_under_their_status(
    tmp_path: Path, access_lines: AccessLines
) -> None:
    settings = fake_settings(write_model_files(tmp_path), api_keys="k")
    async with observed(settings, FakeBackend()) as client:
        await post_image_in_process(client, b"", "empty.jpg")
        client.headers["X-API-Key"] = "k"
        await post_image_in_process(client, b"", "empty.jpg")
        await client.get("/nowhere")
        await client.get("/health/live")
    assert [(line["path"], line["status"], line["outcome"]) for line in access_lines()] == [
        ("/predict", 401, "unauthorized"),
        ("/predict", 400, "empty_file"),
        ("/nowhere", 404, "not_found"),
        ("/health/live", 200, "200"),
    ]


def scope_for(path: str = "/predict") -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"x-request-id", b"gone-1")],
        "client": ("10.0.0.7", 4242),
    }


async def answers_200(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def fails(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def never_called() -> Message:
    raise AssertionError("the body is not read here")


async def test_a_client_that_went_away_is_499_and_still_counted_by_accounting(
    access_lines: AccessLines,
) -> None:
    async def closed_connection(message: Message) -> None:
        raise OSError("connection reset by peer")

    before = metrics.counts_by_outcome().get("client_closed_request", 0)
    app = RequestIdMiddleware(AccessLog(PredictAccounting(answers_200)))
    await app(scope_for(), never_called, closed_connection)
    (line,) = access_lines()
    assert (line["status"], line["outcome"]) == (499, "client_closed_request")
    assert (line["request_id"], line["client"]) == ("gone-1", "10.0.0.7")
    assert metrics.counts_by_outcome()["client_closed_request"] == before + 1


async def test_an_exception_that_escapes_is_logged_as_a_500_and_goes_on(
    access_lines: AccessLines,
) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = RequestIdMiddleware(AccessLog(fails))
    with pytest.raises(RuntimeError, match="a bug"):
        await asyncio.wait_for(app(scope_for("/anything"), never_called, send), 10.0)
    (line,) = access_lines()
    assert (line["status"], line["outcome"]) == (500, "internal_error")


def test_a_path_cannot_split_a_text_line_or_grow_without_bound() -> None:
    assert printable("/predict") == "/predict"
    assert printable("/a\r\nINFO forged: line") == "/a\\r\\nINFO forged: line"
    assert printable("/caf\u00e9") == "/caf\\xe9"
    assert len(printable("/" + "a" * 10_000)) == 256
