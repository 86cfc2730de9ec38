"""The gateway's own exceptions; each knows its HTTP status, stable code and title.

Pipeline modules raise these and never import FastAPI; `problems.py` turns them
into RFC 9457 problem documents in one place.
"""

from typing import ClassVar


class GatewayError(Exception):
    """Base class: a failure the client should hear about, with a human message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    retry_after_seconds: ClassVar[int | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class EmptyFile(GatewayError):
    status, code, title = 400, "empty_file", "Empty file"


class NotAnImage(GatewayError):
    status, code, title = 415, "not_an_image", "Not an image"


class UnsupportedFormat(GatewayError):
    status, code, title = 415, "unsupported_format", "Unsupported image format"


class CorruptImage(GatewayError):
    status, code, title = 422, "corrupt_image", "Truncated or corrupt image"


class TooManyPixels(GatewayError):
    status, code, title = 422, "too_many_pixels", "Image has too many pixels"


class DecodeTooLarge(GatewayError):
    """Decoding would need more memory than DECODE_MEMORY_BUDGET_MB: a server limit, like
    TooManyPixels, known from the header, so retrying can never help (422, not 503)."""

    status, code, title = 422, "decode_too_large", "Image too large to decode"


class PayloadTooLarge(GatewayError):
    status, code, title = 413, "payload_too_large", "Upload too large"

    @classmethod
    def over(cls, limit_bytes: int) -> "PayloadTooLarge":
        """The one wording of the 413, whichever check noticed: the stream or the form."""
        return cls(f"The upload is larger than the {limit_bytes:,}-byte limit (MAX_UPLOAD_BYTES).")

    @classmethod
    def over_batch(cls, limit_bytes: int) -> "PayloadTooLarge":
        """The 413 of a POST /predict/batch, whose files share one limit."""
        return cls(
            f"The batch's files are larger than the {limit_bytes:,}-byte limit "
            "for all of them together (MAX_BATCH_BYTES)."
        )


class TooManyFiles(GatewayError):
    status, code, title = 413, "too_many_files", "Too many files"


class BadRequest(GatewayError):
    status, code, title = 400, "bad_request", "Bad request"


class UploadTimeout(GatewayError):
    status, code, title = 408, "upload_timeout", "Upload too slow"


class InvalidRequest(GatewayError):
    status, code, title = 422, "invalid_request", "Invalid request"


class MissingFile(GatewayError):
    status, code, title = 422, "missing_file", "Missing file field"


class BackendUnavailable(GatewayError):
    status, code, title = 503, "model_unavailable", "Model server unavailable"
    retry_after_seconds = 5


class ServableGone(BackendUnavailable):
    """The model server no longer has the version or model we asked for."""


class BackendTimeout(GatewayError):
    status, code, title = 504, "model_timeout", "Model server timed out"


class BackendError(GatewayError):
    status, code, title = 502, "model_error", "Model server error"


class InvalidTopK(GatewayError):
    status, code, title = 422, "invalid_top_k", "Invalid top_k"


class NotFound(GatewayError):
    status, code, title = 404, "not_found", "Not found"


class UnknownModel(GatewayError):
    """?model= names a model the gateway does not serve."""

    status, code, title = 404, "unknown_model", "Unknown model"


class UnknownVersion(GatewayError):
    """?version= or ?label= names a version (or label) the model does not serve."""

    status, code, title = 404, "unknown_version", "Unknown model version"


class MethodNotAllowed(GatewayError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Overloaded(GatewayError):
    status, code, title = 503, "overloaded", "Too many requests in flight"
    retry_after_seconds = 1


class ShuttingDown(GatewayError):
    """A new prediction reached a gateway that is draining: another replica should answer it."""

    status, code, title = 503, "shutting_down", "Gateway shutting down"
    retry_after_seconds = 1


class DecodeBudgetExhausted(GatewayError):
    status, code, title = 503, "decode_budget_exhausted", "Decode memory in use"
    retry_after_seconds = 1


class DeadlineExceeded(GatewayError):
    status, code, title = 504, "deadline_exceeded", "Request deadline exceeded"


class Unauthorized(GatewayError):
    status, code, title = 401, "unauthorized", "Missing or unknown API key"


class AdminDisabled(GatewayError):
    """An admin endpoint called while API keys are off: anyone could change the routing."""

    status, code, title = 403, "admin_disabled", "Admin endpoints need API keys"


class RoutingNotSaved(GatewayError):
    """PUT /admin/routing could not write ROUTING_FILE; the routing in force is unchanged."""

    status, code, title = 500, "routing_not_saved", "Routing not saved"


class ClientClosedRequest(GatewayError):
    """The client went away; nobody reads this answer, but the outcome is counted."""

    status, code, title = 499, "client_closed_request", "Client closed request"
