"""The TF Serving backend's watcher learns new versions; status() only reports them.

TF Serving is a REST double behind httpx's mock transport, with a gRPC
PredictionService over the same versions, whose served versions each test
changes as it goes.
"""

import asyncio
import re
from collections.abc import Awaitable, Callable

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2

from gateway.backend import BatchPrediction
from gateway.errors import BackendUnavailable
from gateway.settings import Settings
from gateway.tfserving.client import TFServingBackend
from gateway.tfserving.watcher import LOOK_AGAIN_SECONDS
from test_tfserving import (
    MODEL_URL,
    grpc_serving,
    metadata,
    predict_response,
    scores_with_best,
    status,
)

STATUS = "GET /v1/models/mobilenet"
_VERSION_PATH = re.compile(r"/v1/models/mobilenet/versions/(\d+)(/metadata|:predict)")


class RollingServer:
    """TF Serving whose versions a test rolls; it records every request as `METHOD path`."""

    def __init__(self) -> None:
        self.versions: tuple[tuple[int, str], ...] = ((1, "AVAILABLE"),)
        self.metadata = {1: metadata(), 2: metadata()}
        self.down = False
        self.metadata_answered = asyncio.Event()  # cleared: metadata requests wait
        self.metadata_answered.set()
        self.requests: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        if f"{request.method} {path}" == STATUS:
            return httpx.Response(200, json=status(*self.versions))
        match = _VERSION_PATH.fullmatch(path)
        version = int(match.group(1)) if match else 0
        if match is None or (version, "AVAILABLE") not in self.versions:
            return httpx.Response(404, json={"error": f"Servable not found: {version}"})
        if match.group(2) == "/metadata":
            await self.metadata_answered.wait()
            return httpx.Response(200, json=self.metadata[version])
        return httpx.Response(200, json=scores_with_best(version))

    async def predict(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """gRPC Predict, recorded as `Predict N` (or `Predict newest` without a version)."""
        spec = predict_pb2.PredictRequest.FromString(request).model_spec
        pinned = spec.HasField("version")
        self.requests.append(f"Predict {spec.version.value if pinned else 'newest'}")
        available = [version for version, state in self.versions if state == "AVAILABLE"]
        version = spec.version.value if pinned else max(available)
        if version not in available:
            message = f"Servable not found for request: Specific(mobilenet, {version})"
            await context.abort(grpc.StatusCode.NOT_FOUND, message)
        wanted = self.metadata[version]["metadata"]["signature_def"]["signature_def"]
        if wanted != metadata()["metadata"]["signature_def"]["signature_def"]:
            # What TF Serving answers a batch prepared for another input.
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Can not cast TensorSpec")
        return predict_response(version)

    def since(self, count: int) -> list[str]:
        """The requests made after the first `count`."""
        return self.requests[count:]


Scenario = Callable[[TFServingBackend], Awaitable[None]]


def against(
    server: RollingServer, poll_seconds: float, scenario: Scenario, transport: str = "rest"
) -> None:
    """Run `scenario` on a started backend in front of `server`, predicting over `transport`."""

    async def run() -> None:
        async with grpc_serving(server.predict) as target:
            backend = TFServingBackend(
                Settings(
                    tf_serving_url=f"{MODEL_URL}:predict",
                    tf_serving_transport=transport,
                    tf_serving_grpc_target=target,
                    status_poll_seconds=poll_seconds,
                ),
                transport=httpx.MockTransport(server),
            )
            await backend.start()
            try:
                await scenario(backend)
            finally:
                await backend.close()

    asyncio.run(run())


TRANSPORTS = pytest.mark.parametrize("transport", ["rest", "grpc"])


async def predict(backend: TFServingBackend) -> BatchPrediction:
    return await backend.predict(np.zeros((1, 224, 224, 3), np.uint8))


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until `condition()` holds, checking without asking the backend anything."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


def batches(requests: list[str]) -> list[str]:
    """The version each batch among `requests` named, REST or gRPC alike ('newest' for none)."""
    named = []
    for request in requests:
        if request.startswith("Predict "):
            named.append(request.removeprefix("Predict "))
        elif request.startswith("POST "):
            match = _VERSION_PATH.fullmatch(request.removeprefix("POST "))
            named.append(match.group(1) if match else request)
    return named


def test_status_reports_a_new_version_without_changing_the_signature_batches_use() -> None:
    server = RollingServer()
    server.metadata[2] = metadata(dims=(-1, 192, 192, 3))

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1  # the watcher's first look
        server.versions = ((2, "AVAILABLE"), (1, "AVAILABLE"))
        seen = len(server.requests)
        reports = [await backend.status() for _ in range(3)]
        # status() asks TF Serving what it serves, and reads no version's metadata.
        assert server.since(seen) == [STATUS] * 3
        for report in reports:
            assert (report.ready, report.version) == (True, 2)
            assert report.detail == (
                "the gateway has not read version 2's signature yet; "
                "batches use version 1's meanwhile"
            )
        signature = await backend.signature()
        assert (signature.version, signature.image_size) == (1, (224, 224))
        assert backend.served_version() == 1
        assert (await predict(backend)).version == 1
        assert server.requests[-1] == "POST /v1/models/mobilenet/versions/1:predict"

    against(server, poll_seconds=3600, scenario=scenario)


def test_the_watcher_alone_makes_the_backend_follow_a_new_version() -> None:
    server = RollingServer()

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.versions = ((2, "AVAILABLE"), (1, "END"))
        await eventually(lambda: backend.served_version() == 2)
        assert "GET /v1/models/mobilenet/versions/2/metadata" in server.requests
        seen = len(server.requests)
        result = await predict(backend)
        assert result.version == 2
        # Sent straight to version 2: no batch was refused to find it.
        posts = [request for request in server.since(seen) if request.startswith("POST")]
        assert posts == ["POST /v1/models/mobilenet/versions/2:predict"]

    against(server, poll_seconds=0.02, scenario=scenario)


@TRANSPORTS
def test_a_version_the_gateway_cannot_use_is_reported_and_batches_keep_the_one_they_had(
    transport: str,
) -> None:
    server = RollingServer()
    server.metadata[2] = metadata(dtype="DT_FLOAT")

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.versions = ((2, "AVAILABLE"), (1, "AVAILABLE"))
        await eventually(lambda: "GET /v1/models/mobilenet/versions/2/metadata" in server.requests)
        report = await backend.status()
        assert (report.ready, report.state, report.version) == (False, "AVAILABLE", 2)
        assert report.detail == UNUSABLE_2
        seen = len(server.requests)
        assert (await predict(backend)).version == 1
        assert batches(server.since(seen)) == ["1"]

    against(server, poll_seconds=0.02, scenario=scenario, transport=transport)


UNUSABLE_2 = (
    "version 2 cannot be served by this gateway: "
    "input 'images' is DT_FLOAT; the gateway sends DT_UINT8"
)


@TRANSPORTS
def test_no_batch_is_sent_once_only_a_version_the_gateway_cannot_use_is_served(
    transport: str,
) -> None:
    server = RollingServer()
    server.metadata[2] = metadata(dtype="DT_FLOAT")

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.versions = ((2, "AVAILABLE"), (1, "END"))
        # The batch for the unloaded version 1 is refused; the look it wakes says why.
        with pytest.raises(BackendUnavailable) as refused:
            await predict(backend)
        assert (type(refused.value), str(refused.value)) == (BackendUnavailable, UNUSABLE_2)
        assert batches(server.requests) == ["1"]
        for _ in range(3):
            # From then on, answered at once: 503 with the reason, nothing sent.
            with pytest.raises(BackendUnavailable) as again:
                await predict(backend)
            assert str(again.value) == UNUSABLE_2
        assert batches(server.requests) == ["1"]

    against(server, poll_seconds=3600, scenario=scenario, transport=transport)


@TRANSPORTS
def test_a_rollout_to_a_version_wanting_other_pixels_never_gets_the_old_pixels(
    transport: str,
) -> None:
    server = RollingServer()
    server.metadata[2] = metadata(dims=(-1, 192, 192, 3))

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.versions = ((2, "AVAILABLE"), (1, "END"))
        # Sent to version 1, as prepared: refused as unloaded (503, retry), never
        # fed to version 2's 192x192 input (502 INVALID_ARGUMENT).
        with pytest.raises(BackendUnavailable, match=r"Specific\(mobilenet, 1\)|not found: 1"):
            await predict(backend)
        assert batches(server.requests) == ["1"]
        await eventually(lambda: backend.served_version() == 2)

    against(server, poll_seconds=3600, scenario=scenario, transport=transport)


@TRANSPORTS
def test_a_backend_started_before_tf_serving_is_ready_soon_after_it_comes_up(
    transport: str,
) -> None:
    server = RollingServer()
    server.down = True

    async def scenario(backend: TFServingBackend) -> None:
        with pytest.raises(BackendUnavailable, match="TF Serving is not reachable"):
            await backend.signature()
        await asyncio.sleep(1.0)
        # Looked again every LOOK_AGAIN_SECONDS while down (the poll is hourly), no faster.
        looks = server.requests.count(STATUS)
        assert 2 <= looks <= 2 + 1.0 / LOOK_AGAIN_SECONDS, looks
        server.metadata_answered.clear()
        server.down = False
        metadata_1 = "GET /v1/models/mobilenet/versions/1/metadata"
        await eventually(lambda: metadata_1 in server.requests, seconds=2.0)
        # What is true now, not what the last failed look found.
        with pytest.raises(BackendUnavailable) as caught:
            await predict(backend)
        assert str(caught.value) == (
            "No model version is ready yet: version 1 is AVAILABLE; its signature is not read yet"
        )
        server.metadata_answered.set()
        await eventually(lambda: backend.served_version() == 1, seconds=2.0)
        assert (await predict(backend)).version == 1

    against(server, poll_seconds=3600, scenario=scenario, transport=transport)


def test_an_outage_shows_at_once_and_the_version_learned_serves_again_after_it() -> None:
    server = RollingServer()

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.down = True
        report = await backend.status()
        assert (report.ready, report.state) == (False, "UNREACHABLE")
        with pytest.raises(BackendUnavailable, match="not reachable"):
            await predict(backend)
        assert backend.served_version() == 1  # /metrics still names it
        server.down = False
        # Ready again at once: the watcher (polling hourly here) need not look first.
        report = await backend.status()
        assert (report.ready, report.version, report.detail) == (True, 1, "")
        assert (await predict(backend)).version == 1

    against(server, poll_seconds=3600, scenario=scenario)


@TRANSPORTS
def test_batches_refused_for_an_unloaded_version_share_the_look_they_wake_the_watcher_for(
    transport: str,
) -> None:
    server = RollingServer()

    async def scenario(backend: TFServingBackend) -> None:
        assert (await backend.signature()).version == 1
        server.versions = ((2, "AVAILABLE"), (1, "END"))
        seen = len(server.requests)
        results = await asyncio.gather(*(predict(backend) for _ in range(4)))
        assert [result.version for result in results] == [2, 2, 2, 2]
        # The watcher polls hourly here: the refused batches woke it, and shared its
        # look instead of asking TF Serving one each.
        looks = server.since(seen).count(STATUS)
        assert 1 <= looks < 4, server.since(seen)
        # Each sent to version 1 first, as its pixels were prepared for it.
        assert batches(server.since(seen)).count("1") == 4

    against(server, poll_seconds=3600, scenario=scenario, transport=transport)


def test_a_batch_before_the_first_look_has_ended_waits_for_it() -> None:
    server = RollingServer()

    async def scenario(backend: TFServingBackend) -> None:
        # Straight after start(): the watcher has not run yet.
        assert backend.served_version() is None
        assert (await predict(backend)).version == 1

    against(server, poll_seconds=3600, scenario=scenario)


def test_closing_releases_a_batch_still_waiting_for_the_first_look() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # TF Serving accepted the connection and never answers
        raise AssertionError("unreachable")

    async def run() -> None:
        backend = TFServingBackend(
            Settings(tf_serving_url=f"{MODEL_URL}:predict", tf_serving_transport="rest"),
            transport=httpx.MockTransport(hang),
        )
        await backend.start()
        waiting = asyncio.create_task(predict(backend))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await backend.close()
        with pytest.raises(BackendUnavailable, match="TF Serving has not answered yet"):
            await asyncio.wait_for(waiting, 5)

    asyncio.run(run())
