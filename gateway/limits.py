"""The upload, bounded while it streams in: in bytes (413) and in time (408).

Both are enforced before the body sits whole in memory. In time, two bounds:
the whole body within the request deadline, and, after a short grace period,
an average rate of at least `min_bytes_per_second`. Without the second, 64
connections trickling a byte a second hold every in-flight slot for the whole
deadline, again and again; with it they are cut off after a few seconds, while
any client on a working link (even 16 KiB/s sends a phone photo in seconds)
is never near the bound.
"""

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, PayloadTooLarge, UploadTimeout
from gateway.problems import problem_response

# multipart/form-data wraps the file in boundaries and part headers.
FORM_OVERHEAD_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, error: GatewayError):
        super().__init__(error.detail)
        self.error = error


class UploadGuard:
    """Answer 413 once a body exceeds the cap, 408 once it is not complete in time."""

    def __init__(
        self,
        app: ASGIApp,
        max_upload_bytes: int,
        timeout_seconds: float,
        min_bytes_per_second: int = 0,
        grace_seconds: float = 2.0,
    ):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + FORM_OVERHEAD_BYTES
        self.timeout_seconds = timeout_seconds
        self.min_bytes_per_second = min_bytes_per_second
        self.grace_seconds = grace_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._answer(self._too_large(), scope, receive, send)
            return

        started = time.monotonic()
        deadline = started + self.timeout_seconds
        received = 0
        body_done = False
        refused: GatewayError | None = None
        response_started = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done:
                return await receive()  # e.g. waiting for a disconnect: not bounded here
            too_slow_at = self._too_slow_at(started, received)
            try:
                message = await asyncio.wait_for(
                    receive(), min(deadline, too_slow_at) - time.monotonic()
                )
            except TimeoutError:
                refused = self._timed_out(started, received, too_slow_at < deadline)
                raise _Refused(refused) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    refused = self._too_large()
                    raise _Refused(refused)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused is not None:
                return  # the app's answer to a cut-off body is replaced by ours
            response_started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            # Whatever the app made of the cut-off body, the answer is ours.
            if refused is None:
                raise
        if refused is not None and not response_started:
            await self._answer(refused, scope, receive, send)

    def _too_slow_at(self, started: float, received: int) -> float:
        """When the bytes received so far stop meeting the minimum average rate."""
        if self.min_bytes_per_second <= 0:
            return float("inf")
        return started + self.grace_seconds + received / self.min_bytes_per_second

    def _timed_out(self, started: float, received: int, too_slow: bool) -> UploadTimeout:
        if not too_slow:
            return UploadTimeout(
                f"The upload did not complete within {self.timeout_seconds:g} s "
                "(REQUEST_TIMEOUT_SECONDS)."
            )
        rate = received / max(time.monotonic() - started, 1e-9)
        return UploadTimeout(
            f"The upload is too slow ({rate:,.0f} bytes/s on average); the minimum is "
            f"{self.min_bytes_per_second:,} bytes/s after {self.grace_seconds:g} s "
            "(MIN_UPLOAD_BYTES_PER_SECOND)."
        )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The upload is larger than the {self.max_upload_bytes:,}-byte limit "
            "(MAX_UPLOAD_BYTES)."
        )

    @staticmethod
    async def _answer(error: GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
        await problem_response(error, headers={"Connection": "close"})(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
