"""Where errors are mapped: every failure leaves as an RFC 9457 problem document.

The body carries a stable machine-readable `code` and a human `detail`; it
never carries a traceback, an internal URL or a file path. As it leaves, the
response also records that code in the request's ASGI scope, where the
accounting middleware reads each request's outcome.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import paths, request_id, security_headers
from gateway.errors import (
    BadRequest,
    ClientClosedRequest,
    GatewayError,
    InvalidRequest,
    InvalidTopK,
    MethodNotAllowed,
    MissingFile,
    NotFound,
    PayloadTooLarge,
)

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Where a problem response records its code in the scope of the request it answers.
_SENT_CODE_KEY = "gateway.problem_code"


class Problem(BaseModel):
    """An error, as RFC 9457 describes it, plus the gateway's stable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    success: bool = False


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem documents a route can answer with."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


class _ProblemResponse(Response):
    """A problem document that records its `code` in the request's scope as it is sent.

    Recorded when sent, not when built: a middleware that replaces the app's
    answer (UploadGuard cutting a body off) sends its own problem last.
    """

    media_type = PROBLEM_MEDIA_TYPE

    def __init__(self, error: GatewayError, headers: Mapping[str, str] | None = None) -> None:
        body = problem_document(error)
        all_headers = dict(headers or {})
        if error.retry_after_seconds is not None:
            all_headers["Retry-After"] = str(error.retry_after_seconds)
        super().__init__(orjson.dumps(body), status_code=error.status, headers=all_headers)
        self.code = error.code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_SENT_CODE_KEY] = self.code
        # A 500 is sent by Starlette's outermost handler, outside the request-id middleware.
        if known := request_id.of_scope(scope):
            self.headers[request_id.HEADER] = known
        await super().__call__(scope, receive, send)


def problem_document(error: GatewayError) -> dict[str, Any]:
    """The problem document's fields, also each failed image's entry in a batch's answer."""
    return {
        "type": f"urn:ml-inference-pipeline:problem:{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "success": False,
    }


def problem_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    """The HTTP response for one of the gateway's errors."""
    return _ProblemResponse(error, headers)


def record_partial_outcome(scope: Scope, code: str) -> None:
    """Count a 200 that still failed somewhere (a batch with failed files) under `code`.

    The answer is a success document, so nothing else records a code for it; without
    this, a batch whose every file was refused would count as a success.
    """
    scope[_SENT_CODE_KEY] = code


def sent_problem_code(scope: Scope) -> str | None:
    """The `code` of the problem document last sent for this request, if one was."""
    code: str | None = scope.get(_SENT_CODE_KEY)
    return code


def install_problem_handlers(app: FastAPI, max_upload_bytes: int) -> None:
    """Route every exception the app can raise through `problem_response`.

    `max_upload_bytes` words a 413 from Starlette the way the gateway's own checks do.
    """

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return problem_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 413:
            return problem_response(PayloadTooLarge.over(max_upload_bytes))
        if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI turns a body that stopped arriving into "error parsing the
            # body" (400); the client is gone and will never read the answer.
            return problem_response(
                ClientClosedRequest("The client closed the connection during the upload.")
            )
        headers = dict(exc.headers or {})
        # Starlette's Allow names the first route on the path only; a path served by
        # two routes (GET and PUT /admin/routing) must list both (RFC 9110 §15.5.6).
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            headers["Allow"] = ", ".join(allowed)
        return problem_response(_from_http_exception(exc), headers=headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(from_validation_errors(exc.errors()))

    async def client_gone(_: Request, exc: Exception) -> Response:
        # A raw body or a batch's form read straight from the stream (no FastAPI
        # wrapping): the client closed the connection before its upload was complete.
        return problem_response(
            ClientClosedRequest("The client closed the connection during the upload.")
        )

    async def unexpected_error(_: Request, exc: Exception) -> Response:
        logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
        # Starlette sends this 500 from its outermost handler, outside every
        # middleware, SecurityHeaders included: the headers are added here.
        return problem_response(
            GatewayError("An unexpected error occurred; it has been logged."),
            headers=security_headers.API_HEADERS,
        )

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected_error)


def from_validation_errors(errors: Any) -> GatewayError:
    """Name the first field FastAPI rejected in words a user can act on."""
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if "file" in location:
            return MissingFile(
                "Send the image as multipart/form-data in a field named 'file', "
                f"for example: curl -F file=@cat.jpg http://localhost:8000{paths.PREDICT}"
            )
        if "top_k" in location:
            return InvalidTopK(f"top_k: {error.get('msg', 'invalid value')}.")
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors
    )
    return InvalidRequest(summary or "The request is not valid.")


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API document declares for the request's path (it is built once)."""
    declared = request.app.openapi().get("paths", {}).get(request.url.path, {})
    methods = {method.upper() for method in declared}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


def _from_http_exception(exc: HTTPException) -> GatewayError:
    if exc.status_code == 404:
        return NotFound("No such endpoint; GET / lists them.")
    if exc.status_code == 405:
        return MethodNotAllowed("This endpoint does not accept that method; GET / lists them.")
    if 400 <= exc.status_code < 500:
        return BadRequest(f"The request could not be read: {str(exc.detail).rstrip('.')}.")
    return GatewayError("An unexpected error occurred; it has been logged.")
