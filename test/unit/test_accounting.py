"""Every POST /predict is counted once, by the outcome its response recorded, never by its body."""

import asyncio
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway import metrics
from gateway.accounting import PredictAccounting
from gateway.app import create_app
from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendUnavailable, EmptyFile, InvalidRequest
from gateway.limits import UploadGuard
from gateway.problems import PROBLEM_MEDIA_TYPE, problem_response
from gateway.settings import Settings

HANG_S = 10.0  # a test that would hang fails after this instead


def outcome_deltas(before: dict[str, int]) -> dict[str, int]:
    after = metrics.counts_by_outcome()
    deltas = {key: after[key] - before.get(key, 0) for key in after}
    return {key: delta for key, delta in deltas.items() if delta}


def scope_for(method: str = "POST", path: str = "/predict") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


def call(app: ASGIApp, scope: Scope, body: list[bytes] | None = None) -> list[Message]:
    """Run `app` on one request whose body arrives in `body`'s chunks; what it sent."""
    chunks = list(body or [b""])
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(HANG_S)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


async def answers_200(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def answers_empty_file(scope: Scope, receive: Receive, send: Send) -> None:
    await problem_response(EmptyFile("The uploaded file is empty."))(scope, receive, send)


async def answers_a_hand_made_problem(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps({"code": "forged"})})


async def answers_nothing(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def fails(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def reads_the_body_then_answers(scope: Scope, receive: Receive, send: Send) -> None:
    """What FastAPI does with a body cut off under it: reads, fails, answers its own problem."""
    try:
        while (await receive()).get("more_body"):
            pass
    except Exception:
        await problem_response(InvalidRequest("body: unreadable"))(scope, receive, send)


def test_a_success_is_counted_by_its_status() -> None:
    before = metrics.counts_by_outcome()
    call(PredictAccounting(answers_200), scope_for())
    assert outcome_deltas(before) == {"success": 1}


def test_a_problem_is_counted_by_the_code_its_response_recorded() -> None:
    before = metrics.counts_by_outcome()
    sent = call(PredictAccounting(answers_empty_file), scope_for())
    assert sent[0]["status"] == 400
    assert outcome_deltas(before) == {"empty_file": 1}


def test_a_body_is_never_read_back() -> None:
    """A problem body not sent by problem_response names no outcome: its status does."""
    before = metrics.counts_by_outcome()
    call(PredictAccounting(answers_a_hand_made_problem), scope_for())
    assert outcome_deltas(before) == {"http_400": 1}


def test_an_answer_replaced_on_its_way_out_counts_as_the_one_sent() -> None:
    guarded = UploadGuard(reads_the_body_then_answers, max_upload_bytes=4, timeout_seconds=HANG_S)
    before = metrics.counts_by_outcome()
    sent = call(PredictAccounting(guarded), scope_for(), [b"x" * 40_000] * 3)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    assert outcome_deltas(before) == {"payload_too_large": 1}


def test_a_request_left_without_an_answer_is_counted_as_no_response() -> None:
    before = metrics.counts_by_outcome()
    call(PredictAccounting(answers_nothing), scope_for())
    assert outcome_deltas(before) == {"no_response": 1}


def test_an_unexpected_error_is_counted_as_internal_error_and_raised_on() -> None:
    before = metrics.counts_by_outcome()
    with pytest.raises(RuntimeError, match="a bug"):
        call(PredictAccounting(fails), scope_for())
    assert outcome_deltas(before) == {"internal_error": 1}


@pytest.mark.parametrize(("method", "path"), [("GET", "/predict"), ("POST", "/metrics")])
def test_other_requests_are_not_counted(method: str, path: str) -> None:
    before = metrics.counts_by_outcome()
    call(PredictAccounting(answers_empty_file), scope_for(method, path))
    assert outcome_deltas(before) == {}


class HeldBackend:
    """A backend that is never ready; its signature waits until the test releases it."""

    name = "held"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def describe(self) -> dict[str, str]:
        return {"backend": self.name}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def status(self) -> ModelStatus:
        return ModelStatus(False, "LOADING", detail="held by the test")

    async def signature(self) -> ModelSignature:
        self.asked.set()
        await asyncio.wait_for(self.release.wait(), HANG_S)
        raise BackendUnavailable("The test's model never loads.")

    def served_version(self) -> int | None:
        return None

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        raise AssertionError("never called: the signature never comes")


def test_refusals_by_middleware_and_by_fastapi_are_each_counted_once(tmp_path: Path) -> None:
    settings = Settings(
        model_base_path=tmp_path, max_in_flight=1, max_upload_bytes=1000, api_keys="right-key"
    )
    backend = HeldBackend()
    app = create_app(settings, backend)
    key = {"X-API-Key": "right-key"}
    image = {"file": ("cat.jpg", b"\xff\xd8 not really a JPEG")}

    async def main() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
        ):
            before = metrics.counts_by_outcome()
            answers = [
                await client.post("/predict", files=image),
                await client.post("/predict", files={"image": image["file"]}, headers=key),
                await client.post("/predict", files={"file": ("big", bytes(70_000))}, headers=key),
            ]
            held = asyncio.create_task(client.post("/predict", files=image, headers=key))
            await asyncio.wait_for(backend.asked.wait(), HANG_S)
            answers.append(await client.post("/predict", files=image, headers=key))
            backend.release.set()
            answers.append(await held)
            codes = [answer.json()["code"] for answer in answers]
            assert codes == [
                "unauthorized",
                "missing_file",
                "payload_too_large",
                "overloaded",
                "model_unavailable",
            ]
            return outcome_deltas(before)

    assert asyncio.run(main()) == {
        "unauthorized": 1,
        "missing_file": 1,
        "payload_too_large": 1,
        "overloaded": 1,
        "model_unavailable": 1,
    }


@pytest.mark.parametrize(
    "failure", [OSError("connection reset"), RuntimeError("handler is closed")]
)
def test_an_answer_the_server_cannot_write_counts_as_the_client_gone(failure: Exception) -> None:
    """uvicorn on uvloop raises RuntimeError writing to a closed pipelined connection."""
    attempts: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def broken_send(message: Message) -> None:
        attempts.append(message)
        raise failure

    before = metrics.counts_by_outcome()
    asyncio.run(PredictAccounting(answers_200)(scope_for(), receive, broken_send))
    assert outcome_deltas(before) == {"client_closed_request": 1}
    assert [message["type"] for message in attempts] == ["http.response.start"]  # then dropped


def test_a_client_that_hangs_up_mid_upload_is_counted_as_gone_not_as_a_bad_request(
    tmp_path: Path,
) -> None:
    app = create_app(fake_settings(write_model_files(tmp_path)), FakeBackend())
    boundary = b"cut"
    head = (
        b'--cut\r\nContent-Disposition: form-data; name="file"; filename="cat.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + bytes(20_000)
    )
    scope = scope_for()
    scope["headers"] = [
        (b"content-type", b"multipart/form-data; boundary=" + boundary),
        (b"content-length", b"100000"),
    ]
    sent: list[Message] = []
    chunks: list[Message] = [
        {"type": "http.request", "body": head, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(HANG_S)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> dict[str, int]:
        async with app.router.lifespan_context(app):
            before = metrics.counts_by_outcome()
            await app(scope, receive, send)
            return outcome_deltas(before)

    assert asyncio.run(main()) == {"client_closed_request": 1}
