"""Concurrent single-image requests coalesced into batched model calls.

A worker takes the first waiting image at once, adds whatever else is already
waiting (up to `max_size`), and waits for more only up to `timeout_s`. A lone
request therefore never waits longer than the timeout (zero by default), while
under load every model call carries the queue that built up during the last
one. Requests whose caller has gone away are dropped before the call.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from gateway.backend import Backend
from gateway.errors import BackendError, BackendUnavailable, GatewayError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Waiting:
    image: np.ndarray  # uint8 (height, width, 3)
    answer: "asyncio.Future[tuple[np.ndarray, int]]"


class Batcher:
    """Owns the queue between request handlers and the backend's predict."""

    def __init__(self, backend: Backend, max_size: int, timeout_s: float, concurrency: int):
        self._backend = backend
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"batcher-{n}") for n in range(self._concurrency)
        ]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        while not self._queue.empty():
            waiting = self._queue.get_nowait()
            if not waiting.answer.done():
                waiting.answer.set_exception(BackendUnavailable("The gateway is shutting down."))

    async def predict_one(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Scores for one image and the version that produced them."""
        answer: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(image, answer))
        return await answer

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            live = [waiting for waiting in batch if not waiting.answer.done()]
            if live:
                await self._run(live)

    async def _collect(self) -> list[_Waiting]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self._timeout_s
        while len(batch) < self._max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            result = await self._backend.predict(np.stack([waiting.image for waiting in batch]))
        except asyncio.CancelledError:
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(
                        BackendUnavailable("The gateway is shutting down.")
                    )
            raise
        except Exception as exc:
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(_copy_for_each_caller(exc))
            return
        for row, waiting in enumerate(batch):
            if not waiting.answer.done():
                waiting.answer.set_result((result.probabilities[row], result.version))


def _copy_for_each_caller(exc: Exception) -> Exception:
    """A fresh exception per waiting request, so tracebacks do not pile up on one object."""
    if isinstance(exc, GatewayError):
        return type(exc)(exc.detail)
    logger.error("batched predict failed", exc_info=exc)
    return BackendError("The model backend failed to run this batch.")
