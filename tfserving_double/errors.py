"""TensorFlow status codes, the error the double raises, and their HTTP mapping.

Codes are tensorflow.error.Code (tensorflow/core/protobuf/error_codes.proto).
The HTTP mapping is TFS/model_servers/http_server.cc `ToHTTPStatusCode`
(reference: docs/tf-serving-protocol.md §5.1).
"""

from __future__ import annotations

CODE_NAMES: dict[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}

HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A non-OK tensorflow::Status: a code name and the message clients see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status the REST server answers for this code."""
        return HTTP_STATUS.get(self.code, 500)

    def status_string(self) -> str:
        """Render like absl::Status::ToString(), used when TF nests one error in another."""
        return f"{self.code}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    """Build an INVALID_ARGUMENT error (HTTP 400)."""
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    """Build a NOT_FOUND error (HTTP 404)."""
    return ServingError("NOT_FOUND", message)


def code_name(code: int) -> str:
    """Name a numeric tensorflow.error.Code, UNKNOWN for anything unexpected."""
    return CODE_NAMES.get(code, "UNKNOWN")
