"""Counts every POST /predict exactly once, by outcome, whoever answered it.

It sits outside every other middleware, so uploads refused for size, bodies
FastAPI rejected, backend failures and successes are all counted the same way:
from the response that actually left.
"""

import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.problems import PROBLEM_MEDIA_TYPE

PREDICT_PATH = "/predict"


class PredictAccounting:
    """Record the outcome and duration of each prediction request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        is_problem = False
        body = bytearray()

        async def watching_send(message: Message) -> None:
            nonlocal status, is_problem
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                is_problem = headers.get(b"content-type", b"").startswith(
                    PROBLEM_MEDIA_TYPE.encode()
                )
            elif message["type"] == "http.response.body" and is_problem:
                body.extend(message.get("body", b""))
            await send(message)

        outcome = "internal_error"  # unless a response says otherwise below
        try:
            await self.app(scope, receive, watching_send)
            outcome = _outcome(status, is_problem, bytes(body))
        finally:
            metrics.PREDICT_REQUESTS.labels(outcome=outcome).inc()
            metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)


def _outcome(status: int, is_problem: bool, body: bytes) -> str:
    if status == 0:
        return "no_response"
    if 200 <= status < 300:
        return "success"
    if is_problem:
        try:
            code = orjson.loads(body).get("code")
        except (orjson.JSONDecodeError, AttributeError):
            code = None
        if isinstance(code, str):
            return code
    return f"http_{status}"
