"""Graceful shutdown: on SIGTERM, drain before uvicorn stops listening.

Uvicorn alone, on SIGTERM, closes its listening socket at once and waits for
open requests: a client arriving meanwhile is refused a connection rather than
told to go elsewhere, and a probe cannot see "not ready". This server instead,
on the first SIGTERM or SIGINT:

1. begins the app's drain (gateway/drain.py) inside the signal handler itself,
   so the very next readiness probe answers 503 and every new POST /predict
   gets 503 `shutting_down` with Retry-After, while the socket stays open;
2. waits until every prediction admitted before the signal has been answered
   (queued ones in the batcher included: the lifespan's shutdown, which fails
   whatever is still queued, runs only after this), or until
   SHUTDOWN_TIMEOUT_SECONDS have passed since the signal;
3. then lets uvicorn shut down as usual with what is left of that budget:
   close the socket, finish open connections (cancelling what is still running
   when the budget is spent), run the lifespan's shutdown; the process exits 0.

A second signal forces the exit at once (uvicorn's force_exit: no waiting, no
lifespan shutdown) and `python -m gateway` exits 1.

A signal that came while the process was still importing, held by
gateway/early_signals.py, stops the server before it starts: no lifespan, no
socket, exit 0. One that comes after the server took the signals over but
before it serves lets start-up finish, then shuts down as usual (exit 0):
nothing was admitted, so there is nothing to drain.

The hooks are `handle_exit` (uvicorn's signal handler) and `capture_signals`
(which installs it): uvicorn's own version of the latter raises the captured
signal again after shutdown, so that the process dies of it (exit status 143
for SIGTERM); after a drain that went as planned the exit status is 0.
"""

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from socket import socket
from types import FrameType

import uvicorn

from gateway.drain import Drain
from gateway.early_signals import SIGNALS, EarlySignals

logger = logging.getLogger(__name__)

# Uvicorn's last look at open connections and tasks never gets less than this,
# so an answer already being written still leaves, even when the drain used the
# whole budget.
MIN_CLOSE_SECONDS = 0.1


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM (or SIGINT) drains `drain` before shutting down."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        timeout_seconds: float,
        early_signals: EarlySignals | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout_seconds = timeout_seconds
        self.early_signals = early_signals
        self.stopped_before_start = False  # a signal came while the process was importing
        self.cut_off = 0  # admitted predictions still running when the budget ran out
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if self._held_signal() is not None:
            logger.info("signalled while starting: stopping before serving")
            self.stopped_before_start = True
            return
        await super().serve(sockets)

    def _held_signal(self) -> int | None:
        return self.early_signals.received if self.early_signals is not None else None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install `handle_exit` for SIGINT and SIGTERM; restore the old handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread: whoever runs us stops us
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        held = self._held_signal()
        if held is not None:
            # Came after serve() looked, before the line above: act on it as ours.
            self.handle_exit(held, None)
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: set state, schedule the rest on the loop, nothing else.
        if self.should_exit or self.drain.draining:
            self.force_exit = self.should_exit = True
        elif not self.started or self._loop is None:
            self.should_exit = True  # still starting: nothing admitted yet, nothing to drain
        else:
            self.drain.begin()
            self._loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        self._drainer = asyncio.create_task(self._drain_then_exit(), name="drain")

    async def _drain_then_exit(self) -> None:
        began = self.drain.began_at or time.monotonic()
        logger.info(
            "shutting down: not ready, refusing new predictions; waiting at most %.1f s "
            "for %d accepted",
            self.timeout_seconds,
            self.drain.in_flight_at_start,
        )
        drained = await self.drain.wait_idle(self.timeout_seconds - (time.monotonic() - began))
        waited = time.monotonic() - began
        if drained:
            logger.info("drained in %.2f s: every accepted prediction was answered", waited)
        else:
            self.cut_off = self.drain.in_flight
            logger.warning(
                "SHUTDOWN_TIMEOUT_SECONDS (%.1f) ran out: %d accepted predictions cut off",
                self.timeout_seconds,
                self.cut_off,
            )
        # What is left of the budget bounds uvicorn's wait for open connections
        # (typed int by uvicorn, but it only reaches asyncio.wait_for).
        left = max(self.timeout_seconds - (time.monotonic() - began), MIN_CLOSE_SECONDS)
        self.config.timeout_graceful_shutdown = left  # type: ignore[assignment]
        self.should_exit = True
