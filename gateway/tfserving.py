"""Where the TF Serving client is: REST, one pooled connection set, errors mapped at the boundary.

Protocol facts come from ../shared/reference/tf-serving-api.md (section 1):
status is `GET /v1/models/NAME` and answers 200 even when nothing is
AVAILABLE; metadata is `GET .../versions/N/metadata`; errors are
`{"error": "..."}`. Pixels travel as uint8 integers in the columnar
`inputs` form, encoded straight from the numpy buffer by orjson.
"""

import asyncio
import json
import logging
from typing import Any

import httpx
import numpy as np
import orjson

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from gateway.settings import Settings

logger = logging.getLogger(__name__)

_SIGNATURE_NAME = "serving_default"


class TFServingRestBackend:
    """Talks to TF Serving's REST API with one pooled async client."""

    name = "tfserving"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._predict_url = settings.tf_serving_url
        self._model_url = settings.tf_serving_model_url
        self._timeout = httpx.Timeout(
            settings.tf_serving_timeout_seconds,
            connect=settings.tf_serving_connect_timeout_seconds,
        )
        limits = httpx.Limits(
            max_connections=settings.tf_serving_max_connections,
            max_keepalive_connections=settings.tf_serving_max_connections,
        )
        # retries=1 re-attempts only failed connection attempts: nothing was sent yet.
        self._transport = transport or httpx.AsyncHTTPTransport(limits=limits, retries=1)
        self._client: httpx.AsyncClient | None = None
        self._signature: ModelSignature | None = None
        self._metadata_lock = asyncio.Lock()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def status(self) -> ModelStatus:
        """Ask TF Serving for the model's versions; learn the signature of a new one."""
        try:
            response = await self._http.get(self._model_url)
        except httpx.HTTPError as exc:
            return ModelStatus(False, "UNREACHABLE", detail=_describe_transport_error(exc))
        if response.status_code != 200:
            return ModelStatus(False, "NOT_FOUND", detail=_error_message(response))
        status = _parse_status(response)
        if status.ready and status.version is not None:
            problem = await self._learn_signature(status.version)
            if problem:
                detail = f"version {status.version} cannot be served by this gateway: {problem}"
                return ModelStatus(False, status.state, status.version, detail)
        return status

    async def signature(self) -> ModelSignature:
        if self._signature is None:
            status = await self.status()
            if self._signature is None:
                raise BackendUnavailable(f"No model version is being served yet: {status.detail}")
        return self._signature

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        signature = await self.signature()
        body = orjson.dumps(
            {
                "signature_name": signature.signature_name,
                "inputs": {signature.input_name: np.ascontiguousarray(images, dtype=np.uint8)},
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        response = await self._post(body)
        if response.status_code != 200:
            raise self._translate_status(response)
        probabilities = _parse_outputs(response, signature, expected_rows=images.shape[0])
        return BatchPrediction(probabilities, signature.version)

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("TFServingRestBackend.start() was not awaited")
        return self._client

    async def _post(self, body: bytes) -> httpx.Response:
        try:
            return await self._http.post(
                self._predict_url, content=body, headers={"Content-Type": "application/json"}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendUnavailable("TF Serving is not reachable; try again shortly.") from exc
        except httpx.PoolTimeout as exc:
            raise BackendUnavailable("All connections to TF Serving are busy.") from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"TF Serving did not answer within {self._timeout.read:g} s."
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"The connection to TF Serving failed mid-request ({type(exc).__name__})."
            ) from exc

    def _translate_status(self, response: httpx.Response) -> Exception:
        message = _error_message(response)
        code = response.status_code
        if code == 404:
            # The version we knew was unloaded: learn the new one on the next call.
            self._signature = None
            return BackendUnavailable(f"TF Serving has no servable version: {message}")
        if code in (429, 503):
            return BackendUnavailable(f"TF Serving is overloaded or unavailable: {message}")
        if code == 504:
            return BackendTimeout(f"TF Serving timed out: {message}")
        return BackendError(f"TF Serving answered {code}: {message}")

    async def _learn_signature(self, version: int) -> str:
        """Fetch and check a new version's signature; return why it is unusable, or ''."""
        if self._signature is not None and self._signature.version == version:
            return ""
        async with self._metadata_lock:
            if self._signature is not None and self._signature.version == version:
                return ""
            url = f"{self._model_url}/versions/{version}/metadata"
            try:
                response = await self._http.get(url)
                response.raise_for_status()
                self._signature = parse_signature(response.json(), version)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                logger.warning("could not use the metadata of version %d: %s", version, exc)
                return str(exc) if isinstance(exc, ValueError) else "its metadata is unreadable"
            logger.info("serving %s", self._signature)
            return ""


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
        entries = response.json()["model_version_status"]
        versions = [(int(entry["version"]), str(entry["state"])) for entry in entries]
    except (ValueError, KeyError, TypeError):
        return ModelStatus(False, "UNKNOWN", detail="TF Serving sent an unreadable status")
    available = [version for version, state in versions if state == "AVAILABLE"]
    if available:
        return ModelStatus(True, "AVAILABLE", max(available))
    if not versions:
        return ModelStatus(False, "UNKNOWN", detail="TF Serving lists no version")
    version, state = max(versions)
    return ModelStatus(False, state, version, f"version {version} is {state}")


def _parse_outputs(
    response: httpx.Response, signature: ModelSignature, expected_rows: int
) -> np.ndarray:
    try:
        outputs = _loads(response.content)["outputs"]
        if isinstance(outputs, dict):
            outputs = outputs[signature.output_name]
        probabilities = np.asarray(outputs, dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError("TF Serving sent a response the gateway cannot read.") from exc
    if probabilities.shape != (expected_rows, signature.num_classes):
        raise BackendError(
            f"TF Serving returned shape {list(probabilities.shape)}, "
            f"expected [{expected_rows}, {signature.num_classes}]."
        )
    return probabilities


def _loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # TF Serving writes NaN and Infinity as bare tokens, which orjson refuses.
        return json.loads(content)


def _error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return str(message).strip()[:500]


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "TF Serving did not answer the status request in time"
    return "TF Serving is not reachable"
