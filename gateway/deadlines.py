"""Every prediction runs under a deadline and stops when its client goes away.

Cancelling the handler's work cancels its place in the batcher's queue, so a
request that timed out or lost its client is never sent to the model. Work in
threads cannot be cancelled, so the deadline travels with the work
(`current_deadline`) and the decode checks it between stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import ClientClosedRequest, DeadlineExceeded, InvalidRequest

if TYPE_CHECKING:  # the pipeline reads current_deadline without importing the web framework
    from starlette.types import Receive

T = TypeVar("T")

TIMEOUT_HEADER = "x-request-timeout"

# Set for the task run_bounded starts: a task copies the context it was created in.
_DEADLINE: ContextVar[float | None] = ContextVar("deadline", default=None)


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


def current_deadline() -> float | None:
    """The `time.monotonic()` instant by which the work `run_bounded` runs must end, if any."""
    return _DEADLINE.get()


async def run_bounded(work: Coroutine[Any, Any, T], receive: Receive, timeout_seconds: float) -> T:
    """Run `work`; stop it on the deadline (504) or when the client disconnects (499).

    Inside `work`, `current_deadline()` tells when that deadline falls.
    """
    token = _DEADLINE.set(time.monotonic() + timeout_seconds)
    try:
        task = asyncio.ensure_future(work)
    finally:
        _DEADLINE.reset(token)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        # The request itself was cancelled (a drain cut short by SHUTDOWN_TIMEOUT_SECONDS):
        # stop its work too, or the orphaned task dies later with nobody to read its error.
        task.cancel()
        raise
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


def raise_if_past(deadline: float | None) -> None:
    """DeadlineExceeded once `deadline` (a `time.monotonic()` instant) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("The request's deadline passed before its image was decoded.")
