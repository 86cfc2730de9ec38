"""Counts every POST /predict exactly once, by outcome, whoever answered it.

It sits outside every other middleware, so uploads refused for size, bodies
FastAPI rejected, backend failures and successes are all counted the same way:
by the status that left and the code the problem document recorded as it was
sent (gateway/problems.py), never by reading a body back. For the same reason
it holds the in-flight gauge: it sees every prediction request exactly once,
those refused before a route could run included.
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.errors import ClientClosedRequest
from gateway.paths import is_prediction
from gateway.problems import sent_problem_code

# The client closed the connection before its answer could be written (499).
CLIENT_GONE = ClientClosedRequest.code


class PredictAccounting:
    """Record the outcome and duration of each prediction request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_prediction(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        client_gone = False

        async def watching_send(message: Message) -> None:
            nonlocal status, client_gone
            if client_gone:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            try:
                await send(message)
            except (OSError, RuntimeError):
                # The server could not write: the client has gone. ASGI servers
                # raise OSError; uvicorn on uvloop raises RuntimeError for a
                # pipelined request whose connection closed. The answer is
                # dropped, not turned into a 500 and a traceback.
                client_gone = True

        outcome = "internal_error"  # unless a response says otherwise below
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, watching_send)
            outcome = CLIENT_GONE if client_gone else outcome_of(status, sent_problem_code(scope))
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.PREDICT_REQUESTS.labels(outcome=outcome).inc()
            metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)


def outcome_of(status: int, problem_code: str | None) -> str:
    """The outcome a prediction answered with `status` (and the problem's code) is counted under."""
    if status == 0:
        return "no_response"
    if 200 <= status < 300:
        return "success"
    return problem_code or f"http_{status}"
