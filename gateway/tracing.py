"""OpenTelemetry traces of each request and its stages, exported over OTLP/HTTP when asked for.

With OTEL_EXPORTER_OTLP_ENDPOINT unset nothing of OpenTelemetry is imported and
`stage()` costs a global lookup: the SDK, its exporter thread and its HTTP client
exist only in a process that sends traces. With it set, every HTTP request gets
a SERVER span (method, route, status, request id), continuing the caller's trace
when a W3C `traceparent` header names one, and the stages run inside it get
child spans: the route's and pipeline's through `stage()`, the batcher's through
`record_span()` (its worker is another task, see batching.py). Spans go to
`<endpoint>/v1/traces` (the OTLP spec's path for the base endpoint) from the
SDK's batch processor thread, never from the event loop; the processor is shut
down, and its last spans sent, when the app's lifespan ends.
"""

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeAlias

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import request_id
from gateway.delivery import Delivery
from gateway.settings import Settings

if TYPE_CHECKING:  # only for mypy: importing them would load OpenTelemetry in every process
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Tracer

# The stages a prediction's time is split into, as span names and `stages_ms` keys.
STAGES = ("upload", "decode", "queue", "model", "ranking")
TRACES_PATH = "/v1/traces"

AttributeValue = str | int | float | bool
# A request's trace context as the batcher carries it to its worker (None when off).
TraceContext: TypeAlias = "Context | None"

_tracer: "Tracer | None" = None


@contextlib.contextmanager
def stage(name: str, **attributes: AttributeValue) -> Iterator[None]:
    """A child span of the current one around the block; nothing when tracing is off."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield


def current_context() -> "Context | None":
    """The current trace context, to parent spans recorded later elsewhere; None when off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def record_span(
    name: str,
    parent: "Context | None",
    start_ns: int,
    end_ns: int,
    **attributes: AttributeValue,
) -> None:
    """A finished span from `start_ns` to `end_ns` (epoch ns) under `parent`; nothing when off."""
    if _tracer is None or parent is None:
        return
    span = _tracer.start_span(name, context=parent, start_time=start_ns, attributes=attributes)
    span.end(end_time=end_ns)


def install_tracing(
    app: Starlette, settings: Settings, span_processor: "SpanProcessor | None" = None
) -> None:
    """Add the server-span middleware to `app` when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    `span_processor` replaces the OTLP exporter (tests pass the SDK's in-memory one).
    """
    global _tracer
    if not settings.otel_exporter_otlp_endpoint:
        _tracer = None
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Shut down with the lifespan (TracingMiddleware), not at interpreter exit.
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name}),
        shutdown_on_exit=False,
    )
    if span_processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=traces_url(settings.otel_exporter_otlp_endpoint))
        span_processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(span_processor)
    _tracer = provider.get_tracer("gateway")
    app.add_middleware(TracingMiddleware, tracer=_tracer, provider=provider)


def traces_url(endpoint: str) -> str:
    """The URL spans are POSTed to: the base endpoint plus /v1/traces, unless already there."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class TracingMiddleware:
    """A SERVER span per HTTP request; flushes and stops the exporter at lifespan shutdown."""

    def __init__(self, app: ASGIApp, tracer: "Tracer", provider: "TracerProvider"):
        self.app = app
        self._tracer = tracer
        self._provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._shutting_down(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = TraceContextTextMapPropagator().extract(headers)
        method = scope["method"]
        delivery = Delivery(send, reraise=True)
        with self._tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes={"http.request.method": method}
        ) as span:
            try:
                await self.app(scope, receive, delivery.send)
            finally:
                # The route is known only once the router has matched it into the scope.
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", delivery.status)
                known = request_id.of_scope(scope)
                if known:
                    span.set_attribute("http.request.header.x-request-id", known)
                if delivery.status >= 500:
                    span.set_status(StatusCode.ERROR)

    def _shutting_down(self, send: Send) -> Send:
        async def send_after_flush(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                # Blocking: the last spans are POSTed now; off the event loop.
                await asyncio.to_thread(self._provider.shutdown)
            await send(message)

        return send_after_flush
