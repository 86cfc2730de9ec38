"""X-Request-ID: one id per request, from the client when it sends a sane one, echoed back.

The id is what ties a client's report, the gateway's log lines, its trace and
TF Serving's side of the call together. A client's own id is kept only when it
is short and plain (visible ASCII, no comma): it is written back into a response
header, a gRPC metadata value and log lines, so anything else (CR/LF header
injection, control characters, megabytes) is replaced by a fresh uuid4, never
echoed. The comma is refused because the batcher joins the ids of one model call
with commas (batching.py), which must stay splittable.

The id lives in a context variable, which logs (logs.py) and the TF Serving
transports read; the batcher's workers run in tasks of their own and set it for
each model call to the ids of the batch they carry.
"""

import contextvars
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_HEADER_KEY = HEADER.lower().encode()
# Where the id is kept in the ASGI scope, for whoever runs after the middleware has
# returned (the access line, Starlette's handler of unexpected errors).
_SCOPE_KEY = "gateway.request_id"
# Visible ASCII (RFC 9110's VCHAR) but the comma: safe in a header, in gRPC metadata
# and in a log line, and splittable once joined for a batch.
_ALLOWED = frozenset(range(0x21, 0x7F)) - {ord(",")}

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def current() -> str | None:
    """The id of the request (or, in a batch worker, the ids of the batch) being handled."""
    return _current.get()


def use(request_id: str | None) -> contextvars.Token[str | None]:
    """Make `request_id` current in this context; `reset` with the token undoes it."""
    return _current.set(request_id)


def reset(token: contextvars.Token[str | None]) -> None:
    """Restore the id that was current before `use` returned `token`."""
    _current.reset(token)


def of_scope(scope: Scope) -> str | None:
    """The id the middleware gave this request, if it has run."""
    request_id: str | None = scope.get(_SCOPE_KEY)
    return request_id


def accepted(raw: bytes | None) -> str | None:
    """The client's id if it is sane (1-128 visible ASCII characters, no comma), else None."""
    if not raw or len(raw) > MAX_LENGTH or not _ALLOWED.issuperset(raw):
        return None
    return raw.decode("ascii")


def new_request_id() -> str:
    """A fresh id: 32 hex digits of a random UUID."""
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every HTTP request an id, make it current and echo it on the response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(_HEADER_KEY)
        request_id = accepted(sent) or new_request_id()
        scope[_SCOPE_KEY] = request_id
        # Not reset on the way out: the server runs each request in a task of its
        # own (uvicorn creates one per request), and Starlette logs an unexpected
        # error after every middleware has returned, a line that needs the id most.
        use(request_id)
        echoed = (_HEADER_KEY, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_KEY]
                message = {**message, "headers": [*kept, echoed]}
            await send(message)

        await self.app(scope, receive, send_with_id)
