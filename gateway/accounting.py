"""Counts every POST /predict exactly once, by outcome, whoever answered it.

It sits outside every other middleware, so uploads refused for size, bodies
FastAPI rejected, backend failures and successes are all counted the same way:
by the status that left and the code the problem document recorded as it was
sent (gateway/problems.py), never by reading a body back. For the same reason
it holds the in-flight gauge: it sees every prediction request exactly once,
those refused before a route could run included.
"""

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import metrics
from gateway.delivery import Delivery
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
        # Swallowed: the answer is dropped, not turned into a 500 and a traceback.
        delivery = Delivery(send, reraise=False)
        outcome = "internal_error"  # unless a response says otherwise below
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, delivery.send)
            code = sent_problem_code(scope)
            outcome = CLIENT_GONE if delivery.client_gone else outcome_of(delivery.status, code)
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.PREDICT_REQUESTS.labels(outcome=outcome).inc()
            metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)


def outcome_of(status: int, problem_code: str | None) -> str:
    """The outcome a prediction answered with `status` (and the problem's code) is counted under."""
    if status == 0:
        return "no_response"
    if 200 <= status < 300:
        # A 200 that recorded a code is a batch with failed files (problems.py).
        return problem_code or "success"
    return problem_code or f"http_{status}"
