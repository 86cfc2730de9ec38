"""Whether the gateway is draining, and the predictions it admitted and has not yet answered.

One object per app, shared by three readers: admission (gateway/admission.py)
counts every POST /predict it lets in and refuses new ones once draining,
readiness (gateway/routes.py) answers 503 once draining, and the server
(gateway/shutdown.py) begins the drain on SIGTERM and waits until nothing
admitted is left. It lives on `app.state`, created on first use, so the app
factory needs no argument for it and every app a test builds has its own.

Plain attributes, no locks: everything runs on the event loop's thread, and the
signal handler that begins the drain runs on that thread too, between two
bytecodes, so it only sets a number and wakes the loop.
"""

import asyncio
import time

from starlette.applications import Starlette


class Drain:
    """Admitted predictions in flight, and when the drain began (None while serving)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.began_at: float | None = None  # time.monotonic() of the first signal
        self.in_flight_at_start = 0
        self._idle: asyncio.Event | None = None

    @property
    def draining(self) -> bool:
        return self.began_at is not None

    def begin(self) -> bool:
        """Start draining; False when already draining (a second signal)."""
        if self.began_at is not None:
            return False
        self.began_at = time.monotonic()
        self.in_flight_at_start = self.in_flight
        return True

    def admit(self) -> None:
        """One more prediction admitted; it counts until `release`."""
        self.in_flight += 1

    def release(self) -> None:
        """An admitted prediction has been answered (or its client has gone)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout_seconds: float) -> bool:
        """Wait until no admitted prediction is left; False if `timeout_seconds` ran out first."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_seconds)
        except TimeoutError:
            return False
        finally:
            self._idle = None
        return True


def drain_of(app: Starlette) -> Drain:
    """The app's Drain, created on first use (a request's app is `scope["app"]`)."""
    drain: Drain | None = getattr(app.state, "drain", None)
    if drain is None:
        drain = app.state.drain = Drain()
    return drain
