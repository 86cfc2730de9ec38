"""Where the TF Serving client is: a watcher follows versions, status() reports, predict sends.

What TF Serving serves is read over REST (status_reader.py); which version's
signature batches are prepared for is learned by the watcher alone
(watcher.py), started in start() and stopped in close(). status() asks TF
Serving afresh on every call, so /health sees an outage at once, and judges
that answer by what the watcher has learned, changing nothing.

TF_SERVING_URL may pin what is served (docs/tf-serving-protocol.md §1):
`.../versions/N:predict` is ready only while version N is AVAILABLE and never
answers from another version; `.../labels/L:predict` is ready while the
version L names is AVAILABLE and follows L when it moves.

Each batch goes to the version whose signature the watcher holds (both
transports name it), so it is never fed to a version whose input it was not
prepared for. Which batches are sent at all:
- the watcher's last look found the served version usable, or found it unusable
  while the held version is still AVAILABLE: the batch is sent to the held version;
- it found the served version unusable and the held one gone (or none held):
  503 naming the reason, without asking TF Serving;
- TF Serving refuses the held version as unloaded: the watcher looks again at
  once, and the batch is sent once more to the version it learns (if that version
  takes the same pixels), or answered 503, with the reason when that version is
  one the gateway cannot use.
"""

from dataclasses import replace

import httpx
import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendUnavailable, ServableGone
from gateway.settings import Settings
from gateway.tfserving.predictor import Predictor
from gateway.tfserving.rest_transport import RestPredictor
from gateway.tfserving.status_reader import StatusReader
from gateway.tfserving.watcher import VersionWatcher


class TFServingBackend:
    """TF Serving seen through one pooled HTTP client (and, for gRPC, one channel)."""

    name = "tfserving"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        limits = httpx.Limits(
            max_connections=settings.tf_serving_max_connections,
            max_keepalive_connections=settings.tf_serving_max_connections,
        )
        timeout = httpx.Timeout(
            settings.tf_serving_timeout_seconds,
            connect=settings.tf_serving_connect_timeout_seconds,
        )
        # retries=1 re-attempts only failed connection attempts: nothing was sent yet.
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(limits=limits, retries=1),
            timeout=timeout,
        )
        self._reader = StatusReader(self._client, settings)
        self._watcher = VersionWatcher(self._reader, settings.status_poll_seconds)
        self._predictor: Predictor | None = None

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "transport": self._settings.tf_serving_transport}

    async def start(self) -> None:
        self._predictor = self._make_predictor()
        self._watcher.start()

    async def close(self) -> None:
        await self._watcher.close()
        if self._predictor is not None:
            await self._predictor.close()
        await self._client.aclose()

    async def status(self) -> ModelStatus:
        """What TF Serving serves now, judged by what the watcher learned; learns nothing."""
        served = await self._reader.read()
        return self._judge(served.status)

    async def signature(self) -> ModelSignature:
        """The signature the watcher learned; at start-up, once it has looked."""
        await self._watcher.first_look()
        if refusal := self._refusal():
            raise refusal
        signature = self._watcher.signature
        if signature is None:
            # The watcher looks again within LOOK_AGAIN_SECONDS: this is what it saw last.
            detail = self._judge(self._watcher.last_read).detail
            raise BackendUnavailable(f"No model version is ready yet: {detail}")
        return signature

    def served_version(self) -> int | None:
        signature = self._watcher.signature
        return signature.version if signature else None

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        if self._predictor is None:
            raise RuntimeError("TFServingBackend.start() was not awaited")
        signature = await self.signature()
        try:
            probabilities, version = await self._predictor.predict(images, signature)
        except ServableGone as exc:
            if self._settings.tf_serving_version is not None:
                raise  # the pinned version is gone: never answer from another one
            # The version we knew was unloaded, as TF Serving does once a newer one
            # is AVAILABLE: learn which one is served now and send the batch once more.
            fresh = await self._signature_after(signature)
            if refusal := self._refusal():
                raise refusal from exc  # what is served now is a version it cannot use
            if fresh.version == signature.version or not _same_input(fresh, signature):
                raise  # nothing newer, or it wants other pixels: the caller may try again
            signature = fresh
            probabilities, version = await self._predictor.predict(images, signature)
        return BatchPrediction(probabilities, version or signature.version)

    async def _signature_after(self, refused: ModelSignature) -> ModelSignature:
        """The signature learned since TF Serving refused `refused`'s version."""
        learned = self._watcher.signature
        if learned is None or learned.version == refused.version:
            await self._watcher.look_again()  # unless a look has already moved on
            learned = self._watcher.signature
        return learned or refused

    def _refusal(self) -> BackendUnavailable | None:
        """The 503 to answer when the last look found nothing a batch can be sent to."""
        refused = self._watcher.refused
        return BackendUnavailable(_cannot_serve(*refused)) if refused else None

    def _judge(self, served: ModelStatus) -> ModelStatus:
        """`served`, unready while the gateway cannot send batches to the version it names."""
        if not served.ready or served.version is None:
            return served
        version = served.version
        problem = self._watcher.problem_with(version)
        if problem:
            return replace(served, ready=False, detail=_cannot_serve(version, problem))
        learned = self._watcher.signature
        if learned is None:
            detail = f"version {version} is AVAILABLE; its signature is not read yet"
            return replace(served, ready=False, detail=detail)
        transport_problem = self._predictor.problem() if self._predictor else ""
        if transport_problem:
            return replace(served, ready=False, state="UNREACHABLE", detail=transport_problem)
        if learned.version != version:
            # The watcher reads it within STATUS_POLL_SECONDS, or when a batch is refused.
            detail = (
                f"the gateway has not read version {version}'s signature yet; "
                f"batches use version {learned.version}'s meanwhile"
            )
            return replace(served, detail=detail)
        return served

    def _make_predictor(self) -> Predictor:
        settings = self._settings
        if settings.tf_serving_transport == "grpc":
            # grpcio and the generated messages load only when used.
            from gateway.tfserving.grpc_transport import GrpcPredictor

            return GrpcPredictor(
                settings.grpc_target,
                settings.model_name,
                settings.tf_serving_timeout_seconds,
                reconnect_seconds=settings.tf_serving_connect_timeout_seconds,
            )
        return RestPredictor(
            self._client, settings.tf_serving_model_url, settings.tf_serving_timeout_seconds
        )


def _cannot_serve(version: int, problem: str) -> str:
    return f"version {version} cannot be served by this gateway: {problem}"


def _same_input(one: ModelSignature, other: ModelSignature) -> bool:
    """Whether pixels prepared for `other` can be fed to `one` as they are."""
    return (one.input_name, one.image_size) == (other.input_name, other.image_size)
