"""Where the TF Serving client is: status and metadata over REST, predict over gRPC or REST.

Protocol facts come from docs/tf-serving-protocol.md §2:
status is `GET /v1/models/NAME` and answers 200 even when nothing is
AVAILABLE; metadata is `GET .../versions/N/metadata` (read over REST even
when predicting over gRPC).
"""

import asyncio
import logging
from dataclasses import replace
from typing import Any, Protocol

import httpx
import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendUnavailable, ServableGone
from gateway.settings import Settings
from gateway.tfserving_rest import RestPredictor, error_message

logger = logging.getLogger(__name__)

_SIGNATURE_NAME = "serving_default"


class Predictor(Protocol):
    """One way of sending a batch to TF Serving's Predict."""

    transport: str

    async def predict(
        self, images: np.ndarray, signature: ModelSignature
    ) -> tuple[np.ndarray, int | None]: ...

    def problem(self) -> str:
        """Why this transport cannot carry predictions right now, or ''."""
        ...

    async def close(self) -> None: ...


class TFServingBackend:
    """TF Serving seen through one pooled HTTP client (and, for gRPC, one channel)."""

    name = "tfserving"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._model_url = settings.tf_serving_model_url
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
        self._predictor: Predictor | None = None
        self._signature: ModelSignature | None = None
        self._metadata_lock = asyncio.Lock()

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "transport": self._settings.tf_serving_transport}

    async def start(self) -> None:
        self._predictor = self._make_predictor()

    async def close(self) -> None:
        if self._predictor is not None:
            await self._predictor.close()
        await self._client.aclose()

    async def status(self) -> ModelStatus:
        """Ask TF Serving for the model's versions; learn the signature of a new one."""
        try:
            response = await self._client.get(self._model_url)
        except httpx.HTTPError as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            detail = (
                "TF Serving did not answer in time" if timed_out else "TF Serving is not reachable"
            )
            return ModelStatus(False, "UNREACHABLE", detail=detail)
        if response.status_code != 200:
            return ModelStatus(False, "NOT_FOUND", detail=error_message(response))
        status = _parse_status(response)
        if status.ready and status.version is not None:
            problem = await self._learn_signature(status.version)
            if problem:
                detail = f"version {status.version} cannot be served by this gateway: {problem}"
                return replace(status, ready=False, detail=detail)
            transport_problem = self._predictor.problem() if self._predictor else ""
            if transport_problem:
                return replace(status, ready=False, state="UNREACHABLE", detail=transport_problem)
        return status

    async def signature(self) -> ModelSignature:
        if self._signature is None:
            status = await self.status()
            if self._signature is None:
                raise BackendUnavailable(f"No model version is being served yet: {status.detail}")
        return self._signature

    def served_version(self) -> int | None:
        return self._signature.version if self._signature else None

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        if self._predictor is None:
            raise RuntimeError("TFServingBackend.start() was not awaited")
        signature = await self.signature()
        try:
            probabilities, version = await self._predictor.predict(images, signature)
        except ServableGone:
            # The version we knew was unloaded, as TF Serving does once a newer one
            # is AVAILABLE: learn which one is served now and send the batch once more.
            self._signature = None
            fresh = await self.signature()
            if fresh.version == signature.version or not _same_input(fresh, signature):
                raise  # nothing newer, or it wants other pixels: the caller may try again
            signature = fresh
            probabilities, version = await self._predictor.predict(images, signature)
        return BatchPrediction(probabilities, version or signature.version)

    def _make_predictor(self) -> Predictor:
        settings = self._settings
        if settings.tf_serving_transport == "grpc":
            from gateway.tfserving_grpc import GrpcPredictor  # grpcio loads only when used

            return GrpcPredictor(
                settings.grpc_target,
                settings.model_name,
                settings.tf_serving_timeout_seconds,
                reconnect_seconds=settings.tf_serving_connect_timeout_seconds,
            )
        return RestPredictor(
            self._client,
            settings.tf_serving_url,
            settings.tf_serving_timeout_seconds,
            model_url=None if settings.tf_serving_url_selects_version else self._model_url,
        )

    async def _learn_signature(self, version: int) -> str:
        """Fetch and check a new version's signature; return why it is unusable, or ''."""
        if self._signature is not None and self._signature.version == version:
            return ""
        async with self._metadata_lock:
            if self._signature is not None and self._signature.version == version:
                return ""
            url = f"{self._model_url}/versions/{version}/metadata"
            try:
                response = await self._client.get(url)
                response.raise_for_status()
                document = response.json()
                signature = parse_signature(document, version)
                self._signature = replace(signature, metadata=document)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                logger.warning("could not use the metadata of version %d: %s", version, exc)
                return str(exc) if isinstance(exc, ValueError) else "its metadata is unreadable"
            logger.info("serving %s", self._signature)
            return ""


def _same_input(one: ModelSignature, other: ModelSignature) -> bool:
    """Whether pixels prepared for `other` can be fed to `one` as they are."""
    return (one.input_name, one.image_size) == (other.input_name, other.image_size)


def parse_signature(metadata: dict[str, Any], version: int) -> ModelSignature:
    """Pick input and output names and the image size out of TF Serving's metadata JSON."""
    signature = metadata["metadata"]["signature_def"]["signature_def"][_SIGNATURE_NAME]
    inputs, outputs = signature["inputs"], signature["outputs"]
    if len(inputs) != 1:
        raise ValueError(f"expected one input, the signature has {sorted(inputs)}")
    input_name, tensor = next(iter(inputs.items()))
    if tensor["dtype"] != "DT_UINT8":
        raise ValueError(f"input {input_name!r} is {tensor['dtype']}; the gateway sends DT_UINT8")
    dims = [int(dim["size"]) for dim in tensor["tensor_shape"]["dim"]]
    if len(dims) != 4 or dims[3] != 3 or min(dims[1:3]) <= 0:
        raise ValueError(f"input {input_name!r} has shape {dims}; expected [-1, H, W, 3]")
    output_name = "probabilities" if "probabilities" in outputs else next(iter(outputs))
    classes = int(outputs[output_name]["tensor_shape"]["dim"][-1]["size"])
    return ModelSignature(
        version=version,
        input_name=input_name,
        output_name=output_name,
        image_size=(dims[2], dims[1]),
        num_classes=classes,
        signature_name=_SIGNATURE_NAME,
    )


def _parse_status(response: httpx.Response) -> ModelStatus:
    try:
        document = response.json()
        entries = document["model_version_status"]
        versions = [(int(entry["version"]), str(entry["state"])) for entry in entries]
    except (ValueError, KeyError, TypeError):
        return ModelStatus(False, "UNKNOWN", detail="TF Serving sent an unreadable status")
    available = [version for version, state in versions if state == "AVAILABLE"]
    if available:
        return ModelStatus(True, "AVAILABLE", max(available), document=document)
    if not versions:
        return ModelStatus(
            False, "UNKNOWN", detail="TF Serving lists no version", document=document
        )
    version, state = max(versions)
    return ModelStatus(False, state, version, f"version {version} is {state}", document)
