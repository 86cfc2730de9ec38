"""The middleware that makes a request observable, installed in one call and in one order.

Outermost first: RequestIdMiddleware (request_id.py) gives the request its id
before anything can refuse it, and echoes it on every answer, 401s, 413s and
503s included; AccessLog (access_log.py) writes the request's line once its
answer has left; TracingMiddleware (tracing.py, only with an OTLP endpoint)
opens its server span. Each add_middleware wraps the ones added before, so they
are added innermost first, and `install_observability` must be the app factory's
last add_middleware call: outside the accounting middleware and everything in it.
"""

from typing import TYPE_CHECKING

from starlette.applications import Starlette

from gateway.access_log import AccessLog
from gateway.request_id import RequestIdMiddleware
from gateway.settings import Settings
from gateway.tracing import install_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor


def install_observability(
    app: Starlette, settings: Settings, span_processor: "SpanProcessor | None" = None
) -> None:
    """Add request ids, access lines and (when configured) tracing around the whole app.

    `span_processor` stands in for the OTLP exporter (tests pass an in-memory one).
    """
    install_tracing(app, settings, span_processor)
    app.add_middleware(AccessLog)
    app.add_middleware(RequestIdMiddleware)
