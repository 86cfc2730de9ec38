"""The classification pipeline: preprocess, predict, postprocess, each stage timed.

Plain asyncio; no web framework here, so the benchmark and tests can drive it directly.
Preprocessing reads the header first, then waits for its share of the decode
memory budget, then decodes under the request's deadline.
"""

import asyncio
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from gateway import metrics, tracing
from gateway.backend import Backend
from gateway.batching import Batcher, TimedPrediction
from gateway.deadlines import current_deadline
from gateway.decode_budget import MIB, DecodeBudget, DecodeCost, return_freed_memory
from gateway.errors import DeadlineExceeded, DecodeBudgetExhausted, DecodeTooLarge
from gateway.imaging import PreparedImage, inspect_image, prepare_image
from gateway.model_assets import ModelAssets, load_assets
from gateway.ranking import Prediction, rank_top_k
from gateway.settings import Settings


@dataclass(frozen=True)
class Classification:
    """One image's answer, with what the response reports about it."""

    predictions: list[Prediction]
    original_size: tuple[int, int]
    image_format: str
    version: int
    assets: ModelAssets
    preprocess_ms: float
    inference_ms: float  # queue wait plus the model call, as the original reported it
    queue_ms: float
    model_ms: float
    ranking_ms: float
    probabilities: np.ndarray  # the whole row, for quality signals and shadow comparisons


class Classifier:
    """Turns uploaded bytes into ranked, labelled predictions."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        batcher: Batcher,
        executor: Executor,
        budget: DecodeBudget | None = None,
    ):
        self._settings = settings
        self._backend = backend
        self._batcher = batcher
        self._executor = executor
        # One budget for the whole process: every model's classifier shares it.
        self._budget = budget or DecodeBudget(settings.decode_memory_budget_mb * MIB)
        # Labelled once: .labels() looks the child up under a lock on every call.
        self._stage_seconds = {
            stage: metrics.STAGE_SECONDS.labels(settings.model_name, stage)
            for stage in ("decode", "queue", "model", "ranking")
        }

    async def classify(
        self, data: bytes, top_k: int, deadline: float | None = None
    ) -> Classification:
        """Classify one upload by `deadline` (`time.monotonic()`; default: run_bounded's)."""
        if deadline is None:
            deadline = current_deadline()
        signature = await self._backend.signature()

        started = time.perf_counter()
        with tracing.stage("decode"):
            prepared = await self._prepare(data, signature.image_size, deadline)
        decoded = time.perf_counter()
        # The batcher records the queue and model spans: its worker knows when each began.
        answer = await self._batcher.predict_timed(prepared.pixels)
        return self._ranked(prepared, answer, top_k, decoded - started, decoded)

    async def classify_many(
        self, uploads: list[bytes], top_k: int, deadline: float | None = None
    ) -> list[Classification | BaseException]:
        """Classify several uploads of one request: decoded side by side, then one model call.

        Each gets its own answer or its own error, in order; one bad image costs
        the others nothing.
        """
        if deadline is None:
            deadline = current_deadline()
        signature = await self._backend.signature()

        async def timed_prepare(data: bytes) -> tuple[PreparedImage, float]:
            started = time.perf_counter()
            prepared = await self._prepare(data, signature.image_size, deadline)
            return prepared, time.perf_counter() - started

        with tracing.stage("decode"):
            decoded = await asyncio.gather(
                *(timed_prepare(data) for data in uploads), return_exceptions=True
            )
        sent = time.perf_counter()
        ready = [item for item in decoded if not isinstance(item, BaseException)]
        answers = iter(await self._batcher.predict_together([item[0].pixels for item in ready]))
        results: list[Classification | BaseException] = []
        for item in decoded:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            answer = next(answers)
            if isinstance(answer, BaseException):
                results.append(answer)
                continue
            prepared, decode_seconds = item
            results.append(self._ranked(prepared, answer, top_k, decode_seconds, sent))
        return results

    def _ranked(
        self,
        prepared: PreparedImage,
        answer: TimedPrediction,
        top_k: int,
        decode_seconds: float,
        sent: float,
    ) -> Classification:
        """Label and rank the model's answer; time each stage into the metrics."""
        inferred = time.perf_counter()
        metrics.DECODE_SECONDS.observe(decode_seconds)
        metrics.INFERENCE_SECONDS.observe(inferred - sent)
        with tracing.stage("ranking"):
            assets = load_assets(
                self._settings.model_dir, answer.version, answer.probabilities.size
            )
            predictions = rank_top_k(answer.probabilities, top_k, assets.labels)
        ranked = time.perf_counter()
        stages = self._stage_seconds
        stages["decode"].observe(decode_seconds)
        stages["queue"].observe(answer.queue_seconds)
        stages["model"].observe(answer.model_seconds)
        stages["ranking"].observe(ranked - inferred)
        return Classification(
            predictions=predictions,
            original_size=prepared.original_size,
            image_format=prepared.format,
            version=answer.version,
            assets=assets,
            preprocess_ms=decode_seconds * 1000.0,
            inference_ms=(inferred - sent) * 1000.0,
            queue_ms=answer.queue_seconds * 1000.0,
            model_ms=answer.model_seconds * 1000.0,
            ranking_ms=(ranked - inferred) * 1000.0,
            probabilities=answer.probabilities,
        )

    async def _prepare(
        self, data: bytes, size: tuple[int, int], deadline: float | None
    ) -> PreparedImage:
        """Decode data for size: one thread hop when the budget has room, else wait in line.

        Each hop to the preprocessing threads and back costs a wake-up of the loop
        and of a thread (about a tenth of the gateway's CPU per request in
        `make profile`), so the header is read, the budget taken and the picture
        decoded in one hop, and the budget given back there too.
        """
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(
            self._executor, self._decode_if_room, data, size, deadline, loop
        )
        if isinstance(first, PreparedImage):
            return first
        cost = first  # the budget had no room: wait in line on the loop, then decode
        try:
            await self._budget.acquire(cost.bytes, self._latest_start(cost, deadline))
        except TimeoutError:
            raise DecodeBudgetExhausted(
                "Other uploads hold the decode memory budget (DECODE_MEMORY_BUDGET_MB) "
                "and none was freed within this request's deadline; retry shortly."
            ) from None

        def release(_: Future[PreparedImage]) -> None:
            # The memory is in use until the thread is done, even once this
            # request has stopped waiting for it (deadline, client gone).
            self._budget.release_from_thread(cost.bytes, loop)

        max_pixels = self._settings.max_image_pixels
        try:
            future = self._executor.submit(_decode, data, size, max_pixels, deadline, cost)
        except BaseException:
            self._budget.release(cost.bytes)
            raise
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def _decode_if_room(
        self,
        data: bytes,
        size: tuple[int, int],
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> PreparedImage | DecodeCost:
        """On a preprocessing thread: read the header, then decode if the budget has room.

        Returns the decoded image, or its cost when it must wait in line for the budget.
        """
        max_pixels = self._settings.max_image_pixels
        cost = inspect_image(data, size, max_pixels)
        self._latest_start(cost, deadline)  # refuses what could not finish in time
        if not self._budget.try_acquire(cost.bytes):
            return cost
        try:
            return _decode(data, size, max_pixels, deadline, cost)
        finally:
            # Here, not on the loop: the loop is woken only if an upload waits in line.
            self._budget.release_from_thread(cost.bytes, loop)

    def _latest_start(self, cost: DecodeCost, deadline: float | None) -> float | None:
        """When the decode must start by to end before deadline; raise if that is past or
        if the image could never fit the budget."""
        if cost.bytes > self._budget.capacity:
            raise DecodeTooLarge(
                f"Decoding this image needs an estimated {cost.bytes / MIB:,.0f} MiB; "
                f"the decode memory budget is {self._budget.capacity / MIB:,.0f} MiB "
                "(DECODE_MEMORY_BUDGET_MB)."
            )
        # Admitted later than this, even the fastest decode would end past the deadline.
        latest_start = None if deadline is None else deadline - cost.min_seconds
        if latest_start is not None and time.monotonic() >= latest_start:
            raise DeadlineExceeded("Too little of the request's deadline is left to decode.")
        return latest_start


def _decode(
    data: bytes, size: tuple[int, int], max_pixels: int, deadline: float | None, cost: DecodeCost
) -> PreparedImage:
    try:
        return prepare_image(data, size, max_pixels, deadline)
    finally:
        return_freed_memory(cost)
