"""Predict over TF Serving's REST API: uint8 pixels as JSON integers in the columnar form.

docs/tf-serving-protocol.md §3-§5: `POST .../v1/models/NAME:predict` with
`{"signature_name", "inputs": {name: nested list}}` answers `{"outputs": ...}`
or `{"error": "..."}`. orjson encodes the numpy buffer directly.

A REST answer does not say which version produced it, so each batch is sent
to `.../versions/N:predict` for the version whose signature and labels the
gateway holds: the version TF_SERVING_URL pins, the one its label named at the
watcher's last look (watcher.py), or else the newest AVAILABLE one then. The
answer then carries that version's labels, even while TF Serving switches
versions (a version already unloaded answers 404).

Each POST carries the ids of the requests in its batch in an `X-Request-ID`
header (request_id.py, batching.py), for whatever logs requests on the way.
"""

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import orjson

from gateway import request_id
from gateway.backend import ModelSignature
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from gateway.tfserving.predictor import (
    check_shape,
    servable_gone,
    timed_out,
    unreachable,
    unreadable_response,
)


class RestPredictor:
    """Sends batches to the predict URL through the backend's pooled HTTP client."""

    transport = "rest"

    def __init__(self, client: httpx.AsyncClient, model_url: str, timeout_seconds: float):
        """`model_url` is `.../v1/models/NAME`; each batch goes to the signature's version."""
        self._client = client
        self._model_url = model_url
        self._timeout_seconds = timeout_seconds

    async def close(self) -> None:
        """The HTTP client belongs to the backend, which closes it."""

    def problem(self) -> str:
        """Status and predict share the REST port: if status answered, so can predict."""
        return ""

    async def predict(
        self, images: np.ndarray, signature: ModelSignature
    ) -> tuple[np.ndarray, int | None]:
        """Scores, and the version that produced them."""
        url = f"{self._model_url}/versions/{signature.version}:predict"
        # Encoding ~150,000 integers an image and parsing the reply are CPU work:
        # off the event loop, so other requests keep moving meanwhile.
        body = await asyncio.to_thread(encode_request, images, signature)
        response = await self._post(url, body)
        if response.status_code != 200:
            raise translate_status(response.status_code, error_message(response))
        rows = images.shape[0]
        probabilities = await asyncio.to_thread(parse_outputs, response.content, signature, rows)
        return probabilities, signature.version

    async def _post(self, url: str, body: bytes) -> httpx.Response:
        try:
            return await self._client.post(url, content=body, headers=outbound_headers())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unreachable() from exc
        except httpx.PoolTimeout as exc:
            raise BackendUnavailable("All connections to TF Serving are busy.") from exc
        except httpx.TimeoutException as exc:
            raise timed_out(self._timeout_seconds) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"The connection to TF Serving failed mid-request ({type(exc).__name__})."
            ) from exc


def outbound_headers() -> dict[str, str]:
    """The predict POST's headers: JSON, and the batch's request ids when known."""
    headers = {"Content-Type": "application/json"}
    known = request_id.current()
    if known:
        headers[request_id.HEADER] = known
    return headers


def encode_request(images: np.ndarray, signature: ModelSignature) -> bytes:
    """The columnar predict body, uint8 pixels written straight from the numpy buffer."""
    return orjson.dumps(
        {
            "signature_name": signature.signature_name,
            "inputs": {signature.input_name: np.ascontiguousarray(images, dtype=np.uint8)},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def translate_status(code: int, message: str) -> Exception:
    """TF Serving's HTTP status (docs/tf-serving-protocol.md §5.1) to the gateway's error."""
    if code == 404:
        return servable_gone(message)
    if code in (429, 503):
        return BackendUnavailable(f"TF Serving is overloaded or unavailable: {message}")
    if code == 504:
        return BackendTimeout(f"TF Serving timed out: {message}")
    return BackendError(f"TF Serving answered {code}: {message}")


def parse_outputs(content: bytes, signature: ModelSignature, expected_rows: int) -> np.ndarray:
    """The output tensor from a columnar predict response, checked against the signature."""
    try:
        outputs = _loads(content)["outputs"]
        if isinstance(outputs, dict):
            outputs = outputs[signature.output_name]
        probabilities = np.asarray(outputs, dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise unreadable_response() from exc
    return check_shape(probabilities, signature, expected_rows)


def _loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # TF Serving writes NaN and Infinity as bare tokens, which orjson refuses.
        return json.loads(content)


def error_message(response: httpx.Response) -> str:
    """TF Serving's `{"error": ...}` text, or the bare status when the body has none."""
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return str(message).strip()[:500]
