"""The TF Serving backend's watcher: the one place it learns which version batches go to.

Every STATUS_POLL_SECONDS it reads what TF Serving serves (status_reader.py)
and, for a version it has not learned yet, reads and checks that version's
signature. Until it has, batches keep the signature they have, as TF Serving
keeps the old version serving until the new one is AVAILABLE; the backend's
status() only reports what TF Serving says and what was learned here.

A batch that TF Serving refuses because its version was unloaded wakes the
watcher and waits for a look begun after the refusal, so a rollout costs no
request (test/e2e/test_versions_under_load.py).

While it holds no signature batches can use (TF Serving not up yet, or serving
only a version the gateway cannot use) it looks every LOOK_AGAIN_SECONDS instead:
the gateway is ready within that much of TF Serving coming up, and a TF Serving
that is down is asked no more often than that.
"""

import asyncio
import contextlib
import logging

from gateway.backend import ModelSignature, ModelStatus
from gateway.tfserving.documents import state_of
from gateway.tfserving.status_reader import StatusReader, UnusableVersion

logger = logging.getLogger(__name__)

# How soon to look again while batches have no signature to use: the readiness lag
# after TF Serving comes up, and the most often a TF Serving that is down is asked.
LOOK_AGAIN_SECONDS = 0.2


class VersionWatcher:
    """Follows the version TF Serving serves and holds the signature learned for it."""

    def __init__(self, reader: StatusReader, every_seconds: float):
        self._reader = reader
        self._every_seconds = every_seconds
        self._signature: ModelSignature | None = None
        self._unusable: tuple[int, str] | None = None  # a served version it cannot use, and why
        # The same, when the last look found no version the gateway can use served at all.
        self._refused: tuple[int, str] | None = None
        self._last_read = ModelStatus(False, "UNKNOWN", detail="TF Serving has not answered yet")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Each done when its look has ended: the first, the one under way, the next to begin.
        self._first_look: asyncio.Future[None] | None = None
        self._looking: asyncio.Future[None] | None = None
        self._next_look: asyncio.Future[None] | None = None

    @property
    def signature(self) -> ModelSignature | None:
        """The signature batches are prepared for and sent with; None until one is learned."""
        return self._signature

    @property
    def last_read(self) -> ModelStatus:
        """What TF Serving served at the last look."""
        return self._last_read

    @property
    def refused(self) -> tuple[int, str] | None:
        """The served version no batch can be sent for, and why, as the last look found.

        Set while TF Serving serves a version the gateway cannot use and no longer
        lists the version whose signature is held as AVAILABLE; None otherwise.
        """
        return self._refused

    def problem_with(self, version: int) -> str:
        """Why the gateway cannot use `version`, as the last look found; '' if it can."""
        unusable = self._unusable
        return unusable[1] if unusable is not None and unusable[0] == version else ""

    def start(self) -> None:
        first = asyncio.get_running_loop().create_future()
        self._first_look = self._next_look = first
        self._task = asyncio.create_task(self._follow(first))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Whoever still waits for a look gets what was learned so far.
        for future in (self._looking, self._next_look):
            if future is not None and not future.done():
                future.set_result(None)

    async def first_look(self) -> None:
        """Return once the watcher has looked once (at once if it was never started)."""
        if self._first_look is not None and not self._first_look.done():
            await asyncio.shield(self._first_look)

    async def look_again(self) -> None:
        """Wake the watcher; return once a look begun after this call has ended."""
        looked = self._next_look
        if looked is None or looked.done():
            return  # never started, or closed
        self._wake.set()
        await asyncio.shield(looked)

    async def _follow(self, upcoming: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            looking, upcoming = upcoming, loop.create_future()
            self._looking, self._next_look = looking, upcoming
            self._wake.clear()  # whoever woke the watcher is served by this look
            try:
                await self._look()
            except Exception:
                logger.exception("following TF Serving's versions failed")
            looking.set_result(None)
            pause = self._every_seconds
            if self._signature is None or self._refused is not None:
                pause = min(pause, LOOK_AGAIN_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _look(self) -> None:
        """Read what TF Serving serves; learn the signature of a version not learned yet."""
        served = await self._reader.read()
        self._last_read = status = served.status
        if not status.ready or status.version is None:
            # Down, restarting or loading: keep the signature held, which a restarted
            # TF Serving most likely serves again; a batch refused says otherwise.
            self._refused = None
            return
        version = status.version
        if self._signature is None or self._signature.version != version:
            try:
                signature = await self._reader.signature(version, served.metadata)
            except UnusableVersion as exc:
                if self._unusable != (version, str(exc)):
                    logger.warning("cannot serve version %d: %s", version, exc)
                self._unusable = (version, str(exc))
                held = self._signature
                held_served = held is not None and (
                    state_of(status.document, held.version) == "AVAILABLE"
                )
                self._refused = None if held_served else self._unusable
                return
            self._signature = signature
            logger.info("serving %s", signature)
        self._unusable = self._refused = None
