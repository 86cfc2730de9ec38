"""The /v1 REST API: routing, the status/metadata/predict handlers, error bodies.

Follows TFS/model_servers/http_server.cc (`RestApiRequestDispatcher`,
`ToHTTPStatusCode`), http_rest_api_handler.cc (`ProcessRequest`,
`ProcessPredictRequest`, `ProcessModelStatusRequest`,
`ProcessModelMetadataRequest`, `GetInfoMap`), http_rest_api_util.cc
(`kPredictionApiGegex`, `kModelStatusApiRegex`, `ParseModelInfo`,
`ToJsonString`) and get_model_status_impl.cc. Reference:
docs/tf-serving-protocol.md §1-§5.

- Only paths matching `(?i)/v1/.*` reach the API; anything else gets libevent's
  HTML 404 page (evhttp_send_error). The path includes any `?query`.
- The regexes are case-insensitive but the method and the verb are compared
  exactly: `:PREDICT`, PUT, DELETE... give 400 "Malformed request: METHOD path".
- Errors are `{"error": "<message>"}` with the status of `ToHTTPStatusCode`.
  A version number beyond int64 fails in ParseModelInfo before TF Serving builds
  an error body, so that 400 has an empty body (as in http_rest_api_handler.cc).
- Status with a version label: GetModelStatusImpl only looks at `version`, so
  TF Serving ignores the label and lists every version; the double does the
  same (docs/tf-serving-protocol.md §2.1, §13): "unknown label -> 400" only
  comes where a servable handle is taken, predict and metadata, where the
  label resolves through the config's version_labels (server_core.py).
- With `--monitoring_config_file` enabling Prometheus, its path answers before
  the /v1 routing, whatever the method (http_server.cc registers it as a
  handler of its own): 200 text/plain with the page (monitoring.py); with a
  query string, 400 "Unexpected path: PATH?QUERY. Should be PATH"
  (`ProcessPrometheusRequest`, which compares the path with its query).
- Every /v1 request is counted for the Prometheus page with its model name
  and status, and timed when it succeeds (http_server.cc `ProcessRequest`).
- classify/regress are not implemented: 501 UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.parse
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import ServingError, invalid_argument
from .faults import FaultControl
from .httpd import Response
from .json_request import batch_size, read_predict_inputs, read_signature_name
from .json_response import write_predict_response
from .json_values import parse_json_object
from .monitoring import Metrics
from .servable import Servable
from .server_core import ServerCore

_FLAGS = re.IGNORECASE | re.ASCII
_V1_PATH = re.compile(r"/v1/.*", _FLAGS | re.DOTALL)
_SPEC = r"(?:(?:/versions/(?P<version>[0-9]+))|(?:/labels/(?P<label>[^/:]+)))?"
_PREDICT_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)" + _SPEC + r":(?P<verb>classify|regress|predict)", _FLAGS
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/(?P<name>[^/:]+))?" + _SPEC + r"(?:/(?P<sub>metadata))?", _FLAGS
)
_INT64_MAX = 2**63 - 1
_NOT_FOUND_PAGE = (
    b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
    b"<H1>Not Found</H1>\n</BODY></HTML>\n"
)
_CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)
# TF's DirectSession text for a Run past RunOptions.timeout_in_ms (found in libtensorflow_cc).
DEADLINE_MESSAGE = "Timed out waiting for notification"

log = logging.getLogger("tfserving_double")


class _NoBodyError(ServingError):
    """An error TF Serving returns before it writes the JSON error body."""


@dataclass
class _Call:
    """What http_server.cc records about one /v1 request: model name, verb, outcome."""

    model_name: str = ""
    verb: str = ""
    code: str = "OK"
    counted: bool = True


class RestApi:
    """The REST port's application."""

    def __init__(
        self,
        core: ServerCore,
        control: FaultControl,
        executor: Executor,
        timeout_ms: int,
        metrics: Metrics,
        prometheus_path: str | None = None,
        cors: bool = False,
    ) -> None:
        self._core = core
        self._metrics = metrics
        self._prometheus_path = prometheus_path
        self._control = control
        self._executor = executor
        self._timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self._headers = _CORS_HEADERS if cors else ()
        # Parsing holds the GIL from start to end; letting one request parse at a time
        # (the model runs outside the lock) stops concurrent requests from thrashing the
        # GIL: +10% throughput and a third lower p99 at 8-16 concurrent image requests.
        self._parsing = threading.Lock()

    def __call__(self, method: str, path: str, body: bytes) -> Response:
        """Answer one HTTP request made to the REST port."""
        if self._prometheus_path is not None and path.split("?", 1)[0] == self._prometheus_path:
            return self._prometheus(path)
        if not _V1_PATH.fullmatch(path):
            return Response(404, _NOT_FOUND_PAGE, "text/html; charset=ISO-8859-1", close=True)
        start = time.perf_counter()
        call = _Call()
        response = self._answer(method, path, body, call)
        if call.counted:
            micros = int((time.perf_counter() - start) * 1e6)
            self._metrics.record_request(call.model_name, call.verb, "REST", call.code, micros)
        return response

    def _answer(self, method: str, path: str, body: bytes, call: _Call) -> Response:
        try:
            result = self._process(method, path, body, call)
        except _NoBodyError as exc:
            call.code = exc.code
            return Response(exc.http_status, b"", headers=self._headers)
        except ServingError as exc:
            call.code = exc.code
            return self._error(exc.http_status, exc.message)
        except Exception as exc:
            log.exception("Unexpected failure answering %s %s", method, path)
            call.code = "INTERNAL"
            return self._error(500, f"Internal error in the TF Serving double: {exc}")
        if isinstance(result, Response):
            return result
        return Response(200, result, headers=self._headers)

    def _prometheus(self, path: str) -> Response:
        if path != self._prometheus_path:
            message = f"Unexpected path: {path}. Should be {self._prometheus_path}"
            return Response(400, message.encode(), "text/plain")
        return Response(200, self._metrics.page().encode(), "text/plain")

    def _error(self, status: int, message: str) -> Response:
        return Response(status, orjson.dumps({"error": message}), headers=self._headers)

    def _process(self, method: str, path: str, body: bytes, call: _Call) -> bytes | Response:
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        pattern = {"POST": _PREDICT_PATH, "GET": _STATUS_PATH}.get(method)
        match = pattern.fullmatch(path) if pattern else None
        if match is None:
            raise malformed
        name = call.model_name = _unescape(match["name"] or "")
        call.verb = match.groupdict().get("verb") or ""
        version = _version(match["version"])
        label = _unescape(match["label"]) if match["label"] else None
        if method == "POST":
            if match["verb"] == "predict":
                return self._predict(name, version, label, body, call)
            if match["verb"] in ("classify", "regress"):
                raise ServingError(
                    "UNIMPLEMENTED", f"{match['verb']} is not implemented by the TF Serving double"
                )
            raise malformed
        if match["sub"] == "metadata":
            return self._metadata(name, version, label)
        return self._status(name, version)

    def _status(self, name: str, version: int | None) -> bytes:
        if not name:
            raise invalid_argument("Missing model name in request.")
        statuses = self._core.version_statuses(name, version)
        return orjson.dumps(
            {
                "model_version_status": [
                    {
                        "version": str(status.version),
                        "state": status.state,
                        "status": {
                            "error_code": status.error_code,
                            "error_message": status.error_message,
                        },
                    }
                    for status in statuses
                ]
            }
        )

    def _servable(self, name: str, version: int | None, label: str | None) -> Servable:
        if label is not None:
            version = self._core.version_for_label(name, label)
        return self._core.servable(name, version)

    def _metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        if not name:
            raise invalid_argument("Missing model name in request.")
        servable = self._servable(name, version, label)
        return orjson.dumps(
            {
                "model_spec": {
                    "name": name,
                    "signature_name": "",
                    "version": str(servable.version),
                },
                "metadata": {"signature_def": {"signature_def": servable.signature_def_json}},
            }
        )

    def _predict(
        self, name: str, version: int | None, label: str | None, body: bytes, call: _Call
    ) -> bytes | Response:
        self._control.count_request()
        faults = self._control.current()
        if faults.reset_connections:
            call.counted = False
            return Response(0, reset=True)
        if faults.error_status is not None:
            call.code = faults.error_code
            return self._error(faults.error_status, faults.error_message)
        with self._parsing:
            doc = parse_json_object(body)
            signature_name = read_signature_name(doc)
            servable = self._servable(name, version, label)
            inputs = servable.input_dtypes(signature_name)
            if not inputs:
                raise invalid_argument(
                    f"Failed to get input map for signature: {signature_name or 'DEFAULT'}"
                )
            allow_fast = b"true" not in body and b"false" not in body
            tensors, request_format = read_predict_inputs(doc, inputs, allow_fast)
        self._control.count_examples(batch_size(tensors))
        outputs = self._run(name, servable, signature_name, tensors, faults.delay_ms / 1000)
        return write_predict_response(outputs, request_format)

    def _run(
        self,
        name: str,
        servable: Servable,
        signature_name: str,
        tensors: dict[str, np.ndarray],
        delay: float,
    ) -> dict[str, Any]:
        # The deadline covers the injected delay and the model run, not JSON parsing
        # (TF Serving applies RunOptions.timeout_in_ms to the Session::Run only).
        budget = self._timeout
        if delay:
            if budget is not None and delay >= budget:
                time.sleep(budget)
                raise ServingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE)
            time.sleep(delay)
            budget = None if budget is None else budget - delay
        future = self._executor.submit(self._timed_run, name, servable, signature_name, tensors)
        try:
            return future.result(timeout=budget)
        except TimeoutError as exc:
            raise ServingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE) from exc

    def _timed_run(
        self, name: str, servable: Servable, signature_name: str, tensors: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        with self._metrics.runtime(name):
            return servable.run(signature_name, tensors)


def _unescape(text: str) -> str:
    """Percent-decode a path segment like curl_easy_unescape ('+' stays '+')."""
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > _INT64_MAX:
        raise _NoBodyError("INVALID_ARGUMENT", f"Failed to convert version: {text} to numeric.")
    return value
