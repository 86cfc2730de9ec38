"""Every prediction runs under a deadline and stops when its client goes away.

Cancelling the handler's work cancels its place in the batcher's queue, so a
request that timed out or lost its client is never sent to the model.
"""

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from starlette.types import Receive

from gateway.errors import ClientClosedRequest, DeadlineExceeded, InvalidRequest

T = TypeVar("T")

TIMEOUT_HEADER = "x-request-timeout"


def request_timeout(headers: Mapping[str, str], default_seconds: float) -> float:
    """The deadline in seconds: X-Request-Timeout when given, never above the setting."""
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return default_seconds
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise InvalidRequest("X-Request-Timeout must be a positive number of seconds.")
    return min(seconds, default_seconds)


async def run_bounded(work: Coroutine[Any, Any, T], receive: Receive, timeout_seconds: float) -> T:
    """Run `work`; stop it on the deadline (504) or when the client disconnects (499)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if watcher in done:
        raise ClientClosedRequest("The client closed the connection before the answer was ready.")
    raise DeadlineExceeded(f"No answer within the request's {timeout_seconds:g} s deadline.")


async def _wait_for_disconnect(receive: Receive) -> None:
    # The body has been read, so the next message the server delivers is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass
