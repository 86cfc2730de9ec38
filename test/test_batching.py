"""Coalescing concurrent requests: batches under load, no wait for a lone request."""

import asyncio
import time

import numpy as np
import pytest

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.batching import Batcher
from gateway.errors import BackendTimeout


class CountingBackend:
    """Scores each image by its first pixel after `delay_s`, recording batch sizes."""

    name = "counting"

    def __init__(self, delay_s: float = 0.02, fail: Exception | None = None):
        self.delay_s = delay_s
        self.fail = fail
        self.batch_sizes: list[int] = []

    def describe(self) -> dict[str, str]:
        return {"backend": self.name}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def status(self) -> ModelStatus:
        return ModelStatus(True, "AVAILABLE", 1)

    async def signature(self) -> ModelSignature:
        return ModelSignature(1, "images", "probabilities", (2, 2), 3)

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        self.batch_sizes.append(images.shape[0])
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        scores = np.zeros((images.shape[0], 3), dtype=np.float32)
        scores[:, 0] = images[:, 0, 0, 0]
        return BatchPrediction(scores, version=9)


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


async def with_batcher(backend: CountingBackend, max_size: int, timeout_s: float, body):  # type: ignore[no-untyped-def]
    batcher = Batcher(backend, max_size=max_size, timeout_s=timeout_s, concurrency=1)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.close()


def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    backend = CountingBackend()

    async def body(batcher: Batcher) -> list[tuple[np.ndarray, int]]:
        return await asyncio.gather(*(batcher.predict_one(image(n)) for n in range(20)))

    results = asyncio.run(with_batcher(backend, 8, 0.0, body))
    assert [int(scores[0]) for scores, _ in results] == list(range(20))
    assert {version for _, version in results} == {9}
    assert max(backend.batch_sizes) == 8
    assert len(backend.batch_sizes) < 20
    assert sum(backend.batch_sizes) == 20


def test_a_lone_request_waits_no_longer_than_the_bound() -> None:
    backend = CountingBackend(delay_s=0.0)

    async def body(batcher: Batcher) -> float:
        started = time.perf_counter()
        await batcher.predict_one(image(1))
        return time.perf_counter() - started

    assert asyncio.run(with_batcher(backend, 16, 0.0, body)) < 0.05
    waited = asyncio.run(with_batcher(CountingBackend(delay_s=0.0), 16, 0.1, body))
    assert 0.09 <= waited < 0.5


def test_a_failed_call_fails_every_request_in_it() -> None:
    backend = CountingBackend(fail=BackendTimeout("slow"))

    async def body(batcher: Batcher) -> list[object]:
        calls = (batcher.predict_one(image(n)) for n in range(3))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(with_batcher(backend, 8, 0.0, body))
    assert all(isinstance(result, BackendTimeout) for result in results)
    assert len({id(result) for result in results}) == 3


def test_requests_whose_caller_left_are_not_sent() -> None:
    backend = CountingBackend(delay_s=0.05)

    async def body(batcher: Batcher) -> None:
        first = asyncio.create_task(batcher.predict_one(image(1)))
        await asyncio.sleep(0.01)  # the first call is now running
        abandoned = asyncio.create_task(batcher.predict_one(image(2)))
        await asyncio.sleep(0)
        abandoned.cancel()
        await first
        await asyncio.sleep(0.1)

    asyncio.run(with_batcher(backend, 8, 0.0, body))
    assert backend.batch_sizes == [1]


def test_pending_requests_fail_cleanly_on_shutdown() -> None:
    async def scenario() -> None:
        batcher = Batcher(CountingBackend(delay_s=1.0), max_size=1, timeout_s=0.0, concurrency=1)
        batcher.start()
        running = asyncio.create_task(batcher.predict_one(image(1)))
        queued = asyncio.create_task(batcher.predict_one(image(2)))
        await asyncio.sleep(0.05)
        await batcher.close()
        for request in (running, queued):
            with pytest.raises(Exception, match="shutting down"):
                await request

    asyncio.run(scenario())
