"""Concurrent single-image requests coalesced into batched model calls.

A worker takes the first waiting image at once, adds whatever else is already
waiting (up to `max_size`), and waits for more only up to `timeout_s`. A lone
request therefore never waits longer than the timeout (zero by default), while
under load every model call carries the queue that built up during the last
one. Requests whose caller has gone away are dropped before the call.

One request must never cost the others their answer, and no caller may wait on
a worker that has gone. A version switch that changes the input size can put
two image sizes in one batch, which no single tensor holds, so each size is its
own model call. The backend's scores are checked (2-D, one row per image)
before any row is handed out, since a short answer would give callers someone
else's row or none. Whatever else goes wrong is logged and fails only the batch
in hand; only cancellation stops a worker, and every request it holds then
hears that the gateway is shutting down.

Each entry carries what the request's own context knew, since a worker is a task
of its own: its request id, which the worker makes current for the model call
(request_id.py; the transports send it to TF Serving), and its trace context,
under which the worker records the request's `queue` and `model` spans after the
call (tracing.py). Every request's trace thus shows its own wait and the call
that answered it; the spans of one batch's requests share their model-call times
and say how many images the call held.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gateway import metrics, request_id, tracing
from gateway.backend import Backend, BatchPrediction
from gateway.errors import BackendError, BackendUnavailable, GatewayError

logger = logging.getLogger(__name__)

# The most images one call may carry for a batch request: TF Serving refuses a
# request over its max_batch_size (32 in deploy/tfserving/batching.pbtxt) with
# 400, so MAX_BATCH_FILES stops at the same number.
TOGETHER_CEILING = 32


@dataclass(frozen=True)
class TimedPrediction:
    """One image's scores, the version that produced them, and where its time went."""

    probabilities: np.ndarray  # float32 (num_classes,)
    version: int
    queue_seconds: float  # from joining the queue to the start of its model call
    model_seconds: float  # the model call of the batch it was in


@dataclass(frozen=True)
class _Waiting:
    image: np.ndarray  # uint8 (height, width, 3)
    answer: "asyncio.Future[TimedPrediction]"
    request_id: str | None
    trace: tracing.TraceContext
    # Images of one POST /predict/batch queued together: the first carries how
    # many follow it, so the call that takes it is allowed to take them all.
    together: int = 1
    enqueued: float = field(default_factory=time.perf_counter)
    enqueued_ns: int = field(default_factory=time.time_ns)  # wall clock, for the spans


class Batcher:
    """Owns the queue between request handlers and the backend's predict."""

    def __init__(
        self,
        backend: Backend,
        max_size: int,
        timeout_s: float,
        concurrency: int,
        *,
        model: str = "",
    ):
        """`model` labels the batcher's metrics (the model name its backend serves)."""
        self._backend = backend
        self._model = model
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"batcher-{n}") for n in range(self._concurrency)
        ]

    async def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        _fail(queued, _shutting_down)

    async def predict_one(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Scores for one image and the version that produced them."""
        timed = await self.predict_timed(image)
        return timed.probabilities, timed.version

    async def predict_timed(self, image: np.ndarray) -> TimedPrediction:
        """Scores for one image, its version, its wait in the queue and its model call's time."""
        if self._closed:
            raise _shutting_down()
        answer: asyncio.Future[TimedPrediction] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(image, answer, request_id.current(), tracing.current_context())
        self._queue.put_nowait(waiting)
        return await answer

    async def predict_together(
        self, images: list[np.ndarray]
    ) -> list[TimedPrediction | BaseException]:
        """Scores for several images of one request, in order, each its own answer or error.

        They join the queue at once, with no await between them, so the worker that
        takes the first takes the rest into the same model call, even past
        BATCH_MAX_SIZE: the request asked for them together.
        """
        if self._closed:
            raise _shutting_down()
        loop = asyncio.get_running_loop()
        ids, trace = request_id.current(), tracing.current_context()
        waiting = [
            _Waiting(image, loop.create_future(), ids, trace, len(images) if n == 0 else 1)
            for n, image in enumerate(images)
        ]
        for entry in waiting:
            self._queue.put_nowait(entry)
        return await asyncio.gather(*(entry.answer for entry in waiting), return_exceptions=True)

    async def _work(self) -> None:
        while True:
            batch: list[_Waiting] = []
            try:
                await self._collect(batch)
                for group in _by_shape(batch):
                    live = [waiting for waiting in group if not waiting.answer.done()]
                    if live:
                        await self._run(live)
            except asyncio.CancelledError:
                _fail(batch, _shutting_down)
                raise
            except Exception:
                logger.exception("batch worker failed; its requests get an error, it goes on")
            _fail(batch, lambda: BackendError("The gateway could not run this request's batch."))

    async def _collect(self, batch: list[_Waiting]) -> None:
        """Fill `batch` in place, so a worker cancelled mid-collection still knows its callers."""
        batch.append(await self._queue.get())
        limit = self._limit_with(batch[0].together, self._max_size)
        deadline = time.monotonic() + self._timeout_s
        while len(batch) < limit:
            if not self._queue.empty():
                waiting = self._queue.get_nowait()
                batch.append(waiting)
                limit = self._limit_with(len(batch) - 1 + waiting.together, limit)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                waiting = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            batch.append(waiting)
            limit = self._limit_with(len(batch) - 1 + waiting.together, limit)

    def _limit_with(self, wanted: int, limit: int) -> int:
        """The call's image limit once a request's images, needing `wanted`, joined it."""
        return max(limit, min(wanted, max(self._max_size, TOGETHER_CEILING)))

    async def _run(self, batch: list[_Waiting]) -> None:
        # One call may answer several requests: TF Serving is told every id it carries,
        # comma-separated (an id never holds a comma, request_id.py), and the worker's
        # own log lines for this call carry them too.
        ids = request_id.use(",".join(w.request_id for w in batch if w.request_id) or None)
        started = time.perf_counter()
        metrics.BATCH_SIZE.labels(model=self._model).observe(len(batch))
        for waiting in batch:
            metrics.QUEUE_WAIT_SECONDS.labels(model=self._model).observe(started - waiting.enqueued)
        try:
            result = await self._backend.predict(np.stack([waiting.image for waiting in batch]))
            scores, version = _checked_scores(result, len(batch)), result.version
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                logger.error("batched predict failed", exc_info=exc)
            _fail(batch, functools.partial(_copy_for_each_caller, exc))
            return
        finally:
            request_id.reset(ids)
            model_seconds = time.perf_counter() - started
            _record_spans(batch, started, model_seconds)
        finite = np.isfinite(scores).all(axis=1)
        for row, waiting in enumerate(batch):
            if waiting.answer.done():
                continue
            if finite[row]:
                queue_seconds = started - waiting.enqueued
                waiting.answer.set_result(
                    TimedPrediction(scores[row], version, queue_seconds, model_seconds)
                )
            else:
                # JSON has no NaN: the answer would carry nulls where numbers are promised.
                logger.error("the model returned non-finite scores for one image")
                waiting.answer.set_exception(
                    BackendError("The model returned non-finite scores (NaN or infinity).")
                )


def _record_spans(batch: list[_Waiting], started: float, model_seconds: float) -> None:
    """Each request's `queue` and `model` spans, on its own trace, timed from its wall clock."""
    for waiting in batch:
        queued_until = waiting.enqueued_ns + round((started - waiting.enqueued) * 1e9)
        called_until = queued_until + round(model_seconds * 1e9)
        tracing.record_span("queue", waiting.trace, waiting.enqueued_ns, queued_until)
        tracing.record_span(
            "model", waiting.trace, queued_until, called_until, batch_size=len(batch)
        )


def _by_shape(batch: list[_Waiting]) -> list[list[_Waiting]]:
    """The batch split into groups one tensor can hold, in order of arrival."""
    groups: dict[tuple[str, tuple[int, ...]], list[_Waiting]] = {}
    for waiting in batch:
        groups.setdefault((waiting.image.dtype.str, waiting.image.shape), []).append(waiting)
    return list(groups.values())


def _checked_scores(result: BatchPrediction, images: int) -> np.ndarray:
    """The backend's scores, if they hold one row per image; BackendError otherwise."""
    scores = np.asarray(result.probabilities)
    if scores.ndim != 2 or scores.shape[0] != images:
        logger.error("backend answered %d images with scores shaped %s", images, scores.shape)
        raise BackendError(
            f"The model backend returned scores shaped {tuple(scores.shape)} for {images} "
            f"image(s); expected one row of class scores per image."
        )
    return scores


def _fail(batch: list[_Waiting], error: Callable[[], Exception]) -> None:
    for waiting in batch:
        if not waiting.answer.done():
            waiting.answer.set_exception(error())


def _shutting_down() -> BackendUnavailable:
    return BackendUnavailable("The gateway is shutting down.")


def _copy_for_each_caller(exc: Exception) -> Exception:
    """A fresh exception per waiting request, so tracebacks do not pile up on one object."""
    if isinstance(exc, GatewayError):
        return type(exc)(exc.detail)
    return BackendError("The model backend failed to run this batch.")
