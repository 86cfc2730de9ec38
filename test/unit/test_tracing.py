"""Traces: a server span per request with its stages as children, exported over OTLP/HTTP.

Without OTEL_EXPORTER_OTLP_ENDPOINT nothing of OpenTelemetry's SDK is even imported.
"""

import asyncio
import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message

from api_client import post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway import tracing
from gateway.settings import Settings
from test_request_id import CAT, observed

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 10.0


@pytest.fixture(autouse=True)
def tracing_off_afterwards(tmp_path: Path) -> Iterator[None]:
    """The tracer is process-wide, as the pipeline's `stage()` calls need: leave it off."""
    yield
    tracing.install_tracing(Starlette(), fake_settings(write_model_files(tmp_path / "off")))


def traced_settings(tmp_path: Path, endpoint: str = "http://127.0.0.1:9") -> Settings:
    return fake_settings(
        write_model_files(tmp_path),
        otel_exporter_otlp_endpoint=endpoint,
        otel_service_name="gateway-under-test",
    )


def with_staged_route(app: FastAPI) -> None:
    """A route that runs its stages as routes.py and pipeline.py are to run theirs."""

    async def staged(request: Request) -> dict[str, str]:
        with tracing.stage("upload", bytes=3):
            await request.body()
        with tracing.stage("decode"), tracing.stage("inner"):
            pass
        return {}

    app.add_api_route("/staged", staged, methods=["POST"])


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def test_without_an_endpoint_the_sdk_is_never_imported(tmp_path: Path) -> None:
    # A fresh interpreter: this one has imported the SDK for the other tests.
    script = f"""
import sys
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.app import create_app
from gateway import tracing
from pathlib import Path
settings = fake_settings(write_model_files(Path({str(tmp_path)!r})))
app = create_app(settings, FakeBackend())
with tracing.stage("decode", size=1):
    pass
assert tracing.current_context() is None
# FastAPI imports OpenTelemetry's API for its own hooks; the SDK and exporter are ours.
heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
print(sorted(name for name in sys.modules if name.startswith(heavy)))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "test")])}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_each_request_is_a_server_span_with_its_stages_as_children(tmp_path: Path) -> None:
    exported = InMemorySpanExporter()
    async with observed(
        traced_settings(tmp_path),
        FakeBackend(),
        extend=with_staged_route,
        span_processor=SimpleSpanProcessor(exported),
    ) as client:
        predicted = await post_image_in_process(client, CAT, "cat.jpg")
        staged = await client.post("/staged", content=b"abc", headers={"X-Request-ID": "s-1"})
    assert (predicted.status_code, staged.status_code) == (200, 200)
    spans = exported.get_finished_spans()

    predict_trace = [s for s in spans if s.context.trace_id == _server(spans, "POST /predict")]
    named = by_name(predict_trace)
    server = named["POST /predict"]
    assert server.kind == SpanKind.SERVER
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/predict",
        "http.response.status_code": 200,
        "http.request.header.x-request-id": predicted.headers["X-Request-ID"],
    }
    assert server.resource.attributes["service.name"] == "gateway-under-test"
    queue, model = named["queue"], named["model"]
    assert parent_of(queue) == parent_of(model) == server.context.span_id
    assert (model.attributes or {})["batch_size"] == 1
    assert server.start_time <= queue.start_time <= queue.end_time  # type: ignore[operator]
    assert queue.end_time == model.start_time
    assert model.end_time <= server.end_time  # type: ignore[operator]

    staged_trace = by_name(
        [s for s in spans if s.context.trace_id == _server(spans, "POST /staged")]
    )
    server = staged_trace["POST /staged"]
    assert (server.attributes or {})["http.request.header.x-request-id"] == "s-1"
    upload, decode, inner = staged_trace["upload"], staged_trace["decode"], staged_trace["inner"]
    assert parent_of(upload) == server.context.span_id
    assert dict(upload.attributes or {}) == {"bytes": 3}
    assert parent_of(decode) == server.context.span_id
    assert parent_of(inner) == decode.context.span_id


def _server(spans: tuple[ReadableSpan, ...], name: str) -> int:
    (server,) = [span for span in spans if span.name == name]
    return server.context.trace_id


@pytest.mark.anyio
async def test_a_caller_s_traceparent_is_continued(tmp_path: Path) -> None:
    exported = InMemorySpanExporter()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with observed(
        traced_settings(tmp_path), FakeBackend(), span_processor=SimpleSpanProcessor(exported)
    ) as client:
        await client.get("/health/live", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    (server,) = exported.get_finished_spans()
    assert server.name == "GET /health/live"
    assert f"{server.context.trace_id:032x}" == trace_id
    assert f"{parent_of(server):016x}" == parent_id


class Collector(http.server.BaseHTTPRequestHandler):
    """Stands in for an OpenTelemetry collector's OTLP/HTTP receiver."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what arrived."""


@contextlib.contextmanager
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Receiving", (Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANG_S)


@contextlib.asynccontextmanager
async def asgi_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Start and stop `app` through its ASGI lifespan messages, as uvicorn does.

    (httpx's transport sends none, and the middleware flushes spans on shutdown.)
    """
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    running = asyncio.create_task(app({"type": "lifespan", "state": {}}, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(from_app.get(), HANG_S))["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        message = await asyncio.wait_for(from_app.get(), HANG_S)
        assert message["type"] == "lifespan.shutdown.complete"
        await asyncio.wait_for(running, HANG_S)


@pytest.mark.anyio
async def test_spans_reach_a_collector_over_otlp_http_by_shutdown(tmp_path: Path) -> None:
    import httpx

    from gateway.app import create_app

    with collector() as (endpoint, received):
        settings = traced_settings(tmp_path, endpoint + "/")
        app = create_app(settings, FakeBackend())  # the real exporter, batching in its thread
        with_staged_route(app)
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with (
            asgi_lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            await post_image_in_process(client, CAT, "cat.jpg")
            await client.post("/staged", content=b"abc")
        # The lifespan has ended: the batch processor has sent what it held.

    assert received
    names: set[str] = set()
    for path, content_type, body in received:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert service["service.name"] == "gateway-under-test"
            names |= {s.name for scope in resource_spans.scope_spans for s in scope.spans}
    assert {"POST /predict", "queue", "model", "POST /staged", "upload", "decode"} <= names


def test_the_endpoint_is_the_base_the_traces_path_is_added_to() -> None:
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
