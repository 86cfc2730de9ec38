"""The upload, bounded while it streams in: in bytes (413) and in time (408).

Both are enforced before the body sits whole in memory. In time, two bounds:
the whole body within the request deadline, and, after a short grace period,
at least `min_bytes_per_second` over the last `grace_seconds`
(gateway/upload_rate.py). Without the second, connections trickling a byte a
second, or sending a burst and then stalling, hold every in-flight slot for
the whole deadline, again and again; with it they are cut off a few seconds
after they slow down, while any client on a working link (even 16 KiB/s sends
a phone photo in seconds) is never near the bound.
"""

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import paths
from gateway.errors import GatewayError, PayloadTooLarge, UploadTimeout
from gateway.problems import problem_response
from gateway.upload_rate import RecentRate

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
        max_batch_bytes: int | None = None,
    ):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_batch_bytes = max_batch_bytes or max_upload_bytes
        self.max_body_bytes = max_upload_bytes + FORM_OVERHEAD_BYTES
        self.max_batch_body_bytes = self.max_batch_bytes + FORM_OVERHEAD_BYTES
        self.timeout_seconds = timeout_seconds
        self.min_bytes_per_second = min_bytes_per_second
        self.grace_seconds = grace_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        batch = scope["path"] == paths.PREDICT_BATCH
        max_body_bytes = self.max_batch_body_bytes if batch else self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > max_body_bytes:
            await self._answer(self._too_large(batch), scope, receive, send)
            return

        started = time.monotonic()
        deadline = started + self.timeout_seconds
        rate = RecentRate(self.min_bytes_per_second, self.grace_seconds, started)
        received = 0
        body_done = False
        refused: GatewayError | None = None
        response_started = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done:
                return await receive()  # e.g. waiting for a disconnect: not bounded here
            too_slow_at = rate.too_slow_at(time.monotonic())
            try:
                message = await asyncio.wait_for(
                    receive(), min(deadline, too_slow_at) - time.monotonic()
                )
            except TimeoutError:
                lately = rate.received_lately(time.monotonic())
                refused = self._timed_out(lately, too_slow_at < deadline)
                raise _Refused(refused) from None
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                rate.add(time.monotonic(), chunk)
                received += chunk
                body_done = not message.get("more_body", False)
                if received > max_body_bytes:
                    refused = self._too_large(batch)
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

    def _timed_out(self, lately: int, too_slow: bool) -> UploadTimeout:
        if not too_slow:
            return UploadTimeout(
                f"The upload did not complete within {self.timeout_seconds:g} s "
                "(REQUEST_TIMEOUT_SECONDS)."
            )
        return UploadTimeout(
            f"The upload is too slow ({lately:,} bytes in the last {self.grace_seconds:g} s); "
            f"the minimum is {self.min_bytes_per_second:,} bytes/s "
            "(MIN_UPLOAD_BYTES_PER_SECOND)."
        )

    def _too_large(self, batch: bool) -> PayloadTooLarge:
        if batch:
            return PayloadTooLarge.over_batch(self.max_batch_bytes)
        return PayloadTooLarge.over(self.max_upload_bytes)

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
