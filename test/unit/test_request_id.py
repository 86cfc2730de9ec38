"""X-Request-ID: kept when sane, replaced otherwise, echoed on every answer, sent to TF Serving."""

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from api_client import post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway import request_id
from gateway.app import create_app
from gateway.backend import BatchPrediction, ModelSignature
from gateway.batching import Batcher
from gateway.settings import Settings
from gateway.tfserving.grpc_transport import GrpcPredictor
from gateway.tfserving.protos import predict_pb2, types_pb2
from gateway.tfserving.rest_transport import RestPredictor

HANG_S = 10.0
GENERATED = re.compile(r"[0-9a-f]{32}")
CAT = (Path(__file__).resolve().parents[1] / "cat.jpg").read_bytes()
SIGNATURE = ModelSignature(1, "images", "probabilities", (224, 224), 3)


@contextlib.asynccontextmanager
async def observed(
    settings: Settings,
    backend: FakeBackend,
    *,
    extend: Callable[[FastAPI], None] = lambda app: None,
    span_processor: Any = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its spans going to `span_processor` when given.

    `extend` may add test routes. Requests come from 127.0.0.1, as over a socket.
    """
    app = create_app(settings, backend, backend.open_lane, span_processor)
    extend(app)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=("127.0.0.1", 5000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fake_settings(write_model_files(tmp_path), api_keys="s3cret", max_upload_bytes=1000)


KEY = {"X-API-Key": "s3cret"}


@pytest.mark.anyio
async def test_a_sane_id_is_echoed_and_a_missing_one_generated(settings: Settings) -> None:
    async with observed(settings, FakeBackend()) as client:
        kept = await client.get("/health/live", headers={"X-Request-ID": "client-42/a:b=c"})
        first = await client.get("/health/live")
        second = await client.get("/health/live")
    assert kept.headers["X-Request-ID"] == "client-42/a:b=c"
    assert GENERATED.fullmatch(first.headers["X-Request-ID"])
    assert GENERATED.fullmatch(second.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "sent",
    [
        "x" * 129,  # longer than MAX_LENGTH
        "two words",  # a space is not visible ASCII
        "a,b",  # the batch separator
        "tab\there",
        "caf\u00e9",  # not ASCII
        "",
    ],
)
@pytest.mark.anyio
async def test_an_insane_id_is_replaced_never_echoed(settings: Settings, sent: str) -> None:
    async with observed(settings, FakeBackend()) as client:
        answer = await client.get("/health/live", headers={"X-Request-ID": sent.encode()})
    echoed = answer.headers.get_list("X-Request-ID")
    assert len(echoed) == 1
    assert GENERATED.fullmatch(echoed[0])


@pytest.mark.anyio
async def test_refusals_made_by_middleware_carry_the_id_too(settings: Settings) -> None:
    async with observed(settings, FakeBackend()) as client:
        unauthorized = await client.post(
            "/predict", files={"file": ("a.jpg", CAT)}, headers={"X-Request-ID": "r-401"}
        )
        too_large = await client.post(
            "/predict",
            files={"file": ("a.jpg", CAT)},
            headers={"X-Request-ID": "r-413", **KEY},
        )
        not_found = await client.get("/nowhere", headers={"X-Request-ID": "r-404", **KEY})
    assert (unauthorized.status_code, unauthorized.headers["X-Request-ID"]) == (401, "r-401")
    assert (too_large.status_code, too_large.headers["X-Request-ID"]) == (413, "r-413")
    assert (not_found.status_code, not_found.headers["X-Request-ID"]) == (404, "r-404")


class IdRecordingBackend(FakeBackend):
    """The fake model backend, noting the request id current when each batch reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        self.ids.append(request_id.current())
        return await super().predict(images)


@pytest.mark.anyio
async def test_the_request_s_id_is_current_when_its_batch_reaches_the_backend(
    tmp_path: Path,
) -> None:
    backend = IdRecordingBackend()
    async with observed(fake_settings(write_model_files(tmp_path)), backend) as client:
        client.headers["X-Request-ID"] = "req-7"
        answer = await post_image_in_process(client, CAT, "cat.jpg")
    assert answer.status_code == 200
    assert backend.ids == ["req-7"]


def test_one_batch_carries_every_request_s_id_comma_separated() -> None:
    backend = IdRecordingBackend()

    async def predict_as(batcher: Batcher, known: str | None) -> None:
        request_id.use(known)  # each task has its own context, as each request has
        await batcher.predict_one(np.zeros((224, 224, 3), np.uint8))

    async def scenario() -> None:
        batcher = Batcher(backend, max_size=8, timeout_s=HANG_S, concurrency=1)
        batcher.start()
        try:
            # A full batch is sent at once: the long timeout is never waited for.
            batch = [predict_as(batcher, known) for known in ("a", None, "b")]
            batcher_full = [predict_as(batcher, f"x{n}") for n in range(5)]
            await asyncio.wait_for(asyncio.gather(*batch, *batcher_full), HANG_S)
        finally:
            await batcher.close()

    asyncio.run(scenario())
    assert backend.ids == ["a,b,x0,x1,x2,x3,x4"]


def test_rest_predict_sends_the_id_as_a_header() -> None:
    seen: list[str | None] = []

    def tf_serving(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Request-ID"))
        return httpx.Response(200, json={"outputs": [[0.5, 0.25, 0.25]]})

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(tf_serving)) as client:
            predictor = RestPredictor(client, "http://tfs:8501/v1/models/m", 5.0)
            pixels = np.zeros((1, 224, 224, 3), np.uint8)
            await predictor.predict(pixels, SIGNATURE)
            request_id.use("a,b")
            await predictor.predict(pixels, SIGNATURE)

    asyncio.run(scenario())
    assert seen == [None, "a,b"]


def predict_reply(rows: int) -> bytes:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 1
    tensor = response.outputs["probabilities"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = rows
    tensor.tensor_shape.dim.add().size = 3
    tensor.float_val.extend([0.5, 0.25, 0.25] * rows)
    return bytes(response.SerializeToString())


def test_grpc_predict_sends_the_id_as_metadata() -> None:
    seen: list[dict[str, str | bytes]] = []

    async def predict(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata() or ()))
        return predict_reply(1)

    async def scenario() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.PredictionService",
                    {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        predictor = GrpcPredictor(f"127.0.0.1:{port}", "m", 5.0, 1.0)
        try:
            pixels = np.zeros((1, 224, 224, 3), np.uint8)
            await predictor.predict(pixels, SIGNATURE)
            request_id.use("req-1,req-2")
            await predictor.predict(pixels, SIGNATURE)
        finally:
            await predictor.close()
            await server.stop(None)

    asyncio.run(scenario())
    assert "x-request-id" not in seen[0]
    assert seen[1]["x-request-id"] == "req-1,req-2"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (b"abc-123", "abc-123"),
        (b"!~", "!~"),
        (b"x" * 128, "x" * 128),
        (b"x" * 129, None),
        (b"a\r\nSet-Cookie: x=1", None),
        (b"a b", None),
        (b"a,b", None),
        (b"\x7f", None),
        (b"", None),
        (None, None),
    ],
)
def test_only_short_visible_ascii_without_commas_is_accepted(
    raw: bytes | None, kept: str | None
) -> None:
    assert request_id.accepted(raw) == kept
