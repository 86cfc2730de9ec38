"""One access line per HTTP request, written once its answer has left (or failed to).

The line names the method, the path, the status, the outcome (the code the problem
document recorded, `success` for an answered prediction, `client_closed_request`
with status 499 when the client went away, else the status), the duration, the
request id and the client's address; and, when the route recorded them in
`request.state.access_log`, the model, version, label and stage timings.

The path is logged without its query string: the gateway's own queries carry
nothing worth a log line (`top_k`), and a client's may carry what must never be
logged (`?api_key=` is a common habit). Headers and bodies are never logged. The
path is the client's text, so it is bounded and its control characters escaped
before a text-format line can be split by a CR/LF in it.
"""

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import accounting, request_id
from gateway.delivery import Delivery
from gateway.logs import FIELDS
from gateway.paths import is_prediction
from gateway.problems import sent_problem_code

logger = logging.getLogger("gateway.access")

CLIENT_CLOSED_STATUS = 499  # nginx's "client closed request", as the problem uses
MAX_PATH_CHARS = 256
# What the route handler may record in `request.state.access_log`, and nothing else.
ROUTE_FIELDS = ("model", "version", "label", "stages_ms", "images", "failed_images")


class AccessLog:
    """Write `gateway.access` INFO lines; it must sit inside RequestIdMiddleware."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Re-raised, so the accounting middleware inside sees the client gone too.
        delivery = Delivery(send, reraise=True)
        failed = True
        try:
            await self.app(scope, receive, delivery.send)
            failed = False
        finally:
            duration_ms = (time.perf_counter() - started) * 1000.0
            _write_line(scope, delivery.status, delivery.client_gone, failed, duration_ms)


def _write_line(
    scope: Scope, status: int, client_gone: bool, failed: bool, duration_ms: float
) -> None:
    code = sent_problem_code(scope)
    if client_gone:
        status, outcome = CLIENT_CLOSED_STATUS, accounting.CLIENT_GONE
    elif failed and status == 0:
        # An exception left the app unanswered: Starlette's outermost handler sends a 500.
        status, outcome = 500, "internal_error"
    elif is_prediction(scope):
        outcome = accounting.outcome_of(status, code)
    else:
        outcome = code or str(status)
    path = printable(scope["path"])
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": path,
        "status": status,
        "outcome": outcome,
        "duration_ms": round(duration_ms, 3),
        "request_id": request_id.of_scope(scope),
        "client": _client(scope),
    }
    recorded = scope.get("state", {}).get("access_log")
    if isinstance(recorded, dict):
        fields |= {key: recorded[key] for key in ROUTE_FIELDS if key in recorded}
    logger.info(
        "%s %s %d %s %.1f ms",
        fields["method"],
        path,
        status,
        outcome,
        duration_ms,
        extra={FIELDS: fields},
    )


def printable(text: str) -> str:
    """`text` cut to MAX_PATH_CHARS, with control and non-ASCII characters backslash-escaped."""
    cut = text[:MAX_PATH_CHARS]
    if cut.isascii() and cut.isprintable():
        return cut
    return cut.encode("unicode_escape").decode("ascii")


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
