"""Where the TF Serving client is: status and metadata over REST, predict over gRPC or REST.

Protocol facts come from docs/tf-serving-protocol.md §2:
status is `GET /v1/models/NAME` and answers 200 even when nothing is
AVAILABLE; metadata is `GET .../versions/N/metadata` (read over REST even
when predicting over gRPC).

TF_SERVING_URL may pin what is served (§1):
- `.../versions/N:predict`: status asks `GET /v1/models/NAME/versions/N`, the
  gateway is ready only while version N is AVAILABLE, and it never answers
  from another version;
- `.../labels/L:predict`: status ignores labels (§2.1), so the version L names
  is read from `GET /v1/models/NAME/labels/L/metadata` on every status call;
  the gateway is ready while that version is AVAILABLE and follows L when it
  moves.
"""

import asyncio
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus, probabilities_output
from gateway.errors import BackendUnavailable, ServableGone
from gateway.settings import Settings
from gateway.tfserving.predictor import Predictor
from gateway.tfserving.rest_transport import RestPredictor, error_message

logger = logging.getLogger(__name__)

_SIGNATURE_NAME = "serving_default"


class TFServingBackend:
    """TF Serving seen through one pooled HTTP client (and, for gRPC, one channel)."""

    name = "tfserving"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._model_url = settings.tf_serving_model_url
        self._pinned_version = settings.tf_serving_version
        self._label = settings.tf_serving_version_label
        self._status_url = self._model_url
        self._pin = ""  # what TF_SERVING_URL pins, for messages
        if self._pinned_version is not None:
            self._status_url = f"{self._model_url}/versions/{self._pinned_version}"
            self._pin = f"version {self._pinned_version}"
        elif self._label is not None:
            self._pin = f"label {self._label!r}"
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
            response = await self._client.get(self._status_url)
        except httpx.HTTPError as exc:
            return ModelStatus(False, "UNREACHABLE", detail=_unreachable(exc))
        if response.status_code != 200:
            return ModelStatus(False, "NOT_FOUND", detail=self._pinned(error_message(response)))
        status = _parse_status(response, self._pinned_version)
        if self._pin and not status.ready:
            status = replace(status, detail=self._pinned(status.detail))
        metadata = None
        if status.ready and self._label is not None:
            status, metadata = await self._resolve_label(status, self._label)
        if status.ready and status.version is not None:
            problem = await self._learn_signature(status.version, metadata)
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
            if self._pinned_version is not None:
                raise  # the pinned version is gone: never answer from another one
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
            # grpcio and the generated messages load only when used.
            from gateway.tfserving.grpc_transport import GrpcPredictor

            return GrpcPredictor(
                settings.grpc_target,
                settings.model_name,
                settings.tf_serving_timeout_seconds,
                reconnect_seconds=settings.tf_serving_connect_timeout_seconds,
                version=self._pinned_version,
                version_label=self._label,
            )
        return RestPredictor(self._client, self._model_url, settings.tf_serving_timeout_seconds)

    def _pinned(self, detail: str) -> str:
        """`detail`, saying what TF_SERVING_URL pins when it pins something."""
        return f"TF_SERVING_URL pins {self._pin}: {detail}" if self._pin else detail

    async def _resolve_label(
        self, status: ModelStatus, label: str
    ) -> tuple[ModelStatus, dict[str, Any] | None]:
        """The status of the version `label` names now, and that version's metadata."""
        url = f"{self._model_url}/labels/{quote(label, safe='')}/metadata"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            return ModelStatus(False, "UNREACHABLE", detail=_unreachable(exc)), None
        unready = replace(status, ready=False, state="NOT_FOUND", version=None)
        if response.status_code != 200:
            return replace(unready, detail=self._pinned(error_message(response))), None
        try:
            document = response.json()
            version = int(document["model_spec"]["version"])
        except (ValueError, KeyError, TypeError):
            detail = self._pinned("TF Serving sent unreadable metadata")
            return replace(unready, state="UNKNOWN", detail=detail), None
        state = _state_of(status.document, version)
        if state != "AVAILABLE":
            detail = self._pinned(f"it names version {version}, which is {state}")
            return replace(unready, state=state, version=version, detail=detail), None
        return replace(status, version=version), document

    async def _learn_signature(self, version: int, document: dict[str, Any] | None = None) -> str:
        """Check a new version's signature (fetched unless given); return why unusable, or ''."""
        if self._signature is not None and self._signature.version == version:
            return ""
        async with self._metadata_lock:
            if self._signature is not None and self._signature.version == version:
                return ""
            url = f"{self._model_url}/versions/{version}/metadata"
            try:
                if document is None:
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


def parse_signature(metadata: Any, version: int) -> ModelSignature:
    """Pick input and output names and the image size out of TF Serving's metadata JSON.

    The document comes from another process, so any shape of it is possible:
    whatever does not fit becomes a ValueError saying what was expected.
    """
    try:
        signature = metadata["metadata"]["signature_def"]["signature_def"][_SIGNATURE_NAME]
        inputs, outputs = dict(signature["inputs"]), dict(signature["outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"it has no readable {_SIGNATURE_NAME!r} signature") from exc
    if len(inputs) != 1:
        raise ValueError(f"expected one input, the signature has {sorted(inputs)}")
    if not outputs:
        raise ValueError("the signature has no output")
    input_name, tensor = next(iter(inputs.items()))
    dtype = tensor.get("dtype") if isinstance(tensor, dict) else None
    if dtype != "DT_UINT8":
        raise ValueError(f"input {input_name!r} is {dtype}; the gateway sends DT_UINT8")
    dims = _dims(tensor)
    if len(dims) != 4 or dims[3] != 3 or min(dims[1:3]) <= 0:
        raise ValueError(f"input {input_name!r} has shape {dims}; expected [-1, H, W, 3]")
    output_name = probabilities_output(outputs)
    output_dims = _dims(outputs[output_name])
    if len(output_dims) != 2 or output_dims[1] <= 0:
        raise ValueError(f"output {output_name!r} has shape {output_dims}; expected [-1, classes]")
    return ModelSignature(
        version=version,
        input_name=input_name,
        output_name=output_name,
        image_size=(dims[2], dims[1]),
        num_classes=output_dims[1],
        signature_name=_SIGNATURE_NAME,
    )


def _dims(tensor: Any) -> list[int]:
    """A TensorInfo's dimension sizes; [] when the rank is unknown or the entry is malformed."""
    try:
        return [int(dim["size"]) for dim in tensor["tensor_shape"]["dim"]]
    except (KeyError, TypeError, ValueError):
        return []


def _unreachable(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "TF Serving did not answer in time"
    return "TF Serving is not reachable"


def _versions(document: Any) -> list[tuple[int, str]]:
    """(version, state) pairs of a status document; raises on an unreadable one."""
    return [(int(e["version"]), str(e["state"])) for e in document["model_version_status"]]


def _state_of(document: dict[str, Any] | None, version: int) -> str:
    """The state a status document gives `version`; UNKNOWN when it is not listed."""
    try:
        states = dict(_versions(document))
    except (KeyError, TypeError, ValueError):
        return "UNKNOWN"
    return states.get(version, "UNKNOWN")


def _parse_status(response: httpx.Response, pinned: int | None = None) -> ModelStatus:
    """Readiness from a status document: the highest AVAILABLE version, or the pinned one."""
    try:
        document = response.json()
        versions = _versions(document)
    except (ValueError, KeyError, TypeError):
        return ModelStatus(False, "UNKNOWN", detail="TF Serving sent an unreadable status")
    if pinned is not None:
        versions = [(version, state) for version, state in versions if version == pinned]
    available = [version for version, state in versions if state == "AVAILABLE"]
    if available:
        return ModelStatus(True, "AVAILABLE", max(available), document=document)
    if not versions:
        return ModelStatus(
            False, "UNKNOWN", detail="TF Serving lists no version", document=document
        )
    version, state = max(versions)
    return ModelStatus(False, state, version, f"version {version} is {state}", document)
