"""Fault injection and predict counters, controlled on a separate port.

Not part of TF Serving: this is the double's test seam. It lives on its own
port (`--control_port`, 0 = off) so the /v1 protocol on the REST port stays
faithful. Routes on the control port (JSON in and out):

- `GET /faults`, `PUT /faults`, `DELETE /faults`: read, replace, clear the faults
  `{"delay_ms": int, "error": {"status": int, "message": str} | null,
  "reset_connections": bool}`. Keys left out of a PUT take their defaults.
  They apply to every predict call that reaches the double, REST (a URL
  matching the predict route) or gRPC (PredictionService/Predict):
  - `reset_connections`: REST drops the connection with a TCP reset without
    answering. gRPC answers UNAVAILABLE "Connection reset by peer" instead: a
    gRPC Python server cannot drop the one HTTP/2 stream's TCP connection, and
    UNAVAILABLE is what a gRPC client reports when its connection is reset.
  - else `error`: REST answers that status with `{"error": message}`; gRPC
    answers the tensorflow.error.Code that TF Serving maps to that status
    (errors.HTTP_STATUS read backwards, see `Faults.error_code`) with the message.
  - else `delay_ms` is slept before the model runs. It counts against
    `--rest_api_timeout_in_ms` on REST (504 past it) and against the client's
    deadline on gRPC (DEADLINE_EXCEEDED past it), like a slow model would.
- `GET /stats` -> `{"predict_requests": n, "predict_examples": n}`;
  `DELETE /stats` zeroes them. REST and gRPC calls share the counters. Every
  predict call counts as a request, faulted ones included; examples (the batch
  size) are counted once the request's tensors are parsed, so calls answered by
  an `error` or `reset` fault, or rejected before parsing, add none.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson

from .httpd import Response

_FAULT_KEYS = {"delay_ms", "error", "reset_connections"}
# errors.HTTP_STATUS read backwards; where several codes share a status, the
# general one: 400 INVALID_ARGUMENT, 409 ABORTED, 500 INTERNAL.
_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Faults:
    """The faults currently injected into predict calls."""

    delay_ms: int = 0
    error_status: int | None = None
    error_message: str = ""
    reset_connections: bool = False

    @property
    def error_code(self) -> str:
        """The tensorflow.error.Code name for the `error` fault's HTTP status (UNKNOWN if none)."""
        return _ERROR_CODES.get(self.error_status or 0, "UNKNOWN")

    def to_json(self) -> dict[str, Any]:
        """Render in the PUT /faults format."""
        error = None
        if self.error_status is not None:
            error = {"status": self.error_status, "message": self.error_message}
        return {
            "delay_ms": self.delay_ms,
            "error": error,
            "reset_connections": self.reset_connections,
        }


def parse_faults(doc: Any) -> Faults:
    """Validate a PUT /faults body (raises ValueError with the reason)."""
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(doc) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    delay = doc.get("delay_ms", 0)
    if type(delay) is not int or delay < 0:
        raise ValueError("delay_ms must be a non-negative integer")
    reset = doc.get("reset_connections", False)
    if type(reset) is not bool:
        raise ValueError("reset_connections must be true or false")
    error = doc.get("error")
    if error is None:
        return Faults(delay_ms=delay, reset_connections=reset)
    if not isinstance(error, dict) or set(error) != {"status", "message"}:
        raise ValueError('error must be null or {"status": int, "message": str}')
    status, message = error["status"], error["message"]
    if type(status) is not int or not 100 <= status <= 599 or not isinstance(message, str):
        raise ValueError("error.status must be an HTTP status (100-599), error.message a string")
    return Faults(delay, status, message, reset)


class FaultControl:
    """Thread-safe holder of the current faults and the predict counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = Faults()
        self._requests = 0
        self._examples = 0

    def current(self) -> Faults:
        """The faults to apply to the predict call starting now."""
        with self._lock:
            return self._faults

    def replace(self, faults: Faults) -> None:
        """Install a new set of faults (Faults() clears them)."""
        with self._lock:
            self._faults = faults

    def count_request(self) -> None:
        """Count one predict call that reached the double."""
        with self._lock:
            self._requests += 1

    def count_examples(self, examples: int) -> None:
        """Count the examples of a parsed predict request."""
        with self._lock:
            self._examples += examples

    def stats(self) -> dict[str, int]:
        """The counters as served by GET /stats."""
        with self._lock:
            return {"predict_requests": self._requests, "predict_examples": self._examples}

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._requests = self._examples = 0


class ControlApi:
    """The control port's application: /faults and /stats."""

    def __init__(self, control: FaultControl) -> None:
        self._control = control

    def __call__(self, method: str, path: str, body: bytes) -> Response:
        """Answer one control request."""
        route = (method, path.split("?", 1)[0].rstrip("/"))
        if route == ("GET", "/faults"):
            return _json(200, self._control.current().to_json())
        if route == ("PUT", "/faults"):
            try:
                faults = parse_faults(orjson.loads(body or b"null"))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _json(400, {"error": f"Invalid faults: {exc}"})
            self._control.replace(faults)
            return _json(200, faults.to_json())
        if route == ("DELETE", "/faults"):
            self._control.replace(Faults())
            return _json(200, Faults().to_json())
        if route == ("GET", "/stats"):
            return _json(200, self._control.stats())
        if route == ("DELETE", "/stats"):
            self._control.reset_stats()
            return _json(200, self._control.stats())
        return _json(404, {"error": f"No control route {method} {path}"})


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, orjson.dumps(payload))
