"""Coalescing concurrent requests: batches under load, no wait for a lone request.

A request never costs the others their answer, and no caller is left waiting:
every scenario runs under a deadline, so a hang fails the test instead of
stalling the suite.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.batching import TOGETHER_CEILING, Batcher, TimedPrediction
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable, GatewayError

# Long enough for a loaded two-core machine, short enough that a hang is obvious.
HANG_S = 5.0


def scores_as_batched(scores: np.ndarray) -> BatchPrediction:
    return BatchPrediction(scores, version=9)


class CountingBackend:
    """Scores each image by its first pixel after `delay_s`, recording the batches it got.

    `respond` turns those scores into what `predict` returns, so a test can make
    the backend misbehave.
    """

    name = "counting"

    def __init__(
        self,
        delay_s: float = 0.02,
        fail: Exception | None = None,
        respond: Callable[[np.ndarray], Any] = scores_as_batched,
    ):
        self.delay_s = delay_s
        self.fail = fail
        self.respond = respond
        self.batch_shapes: list[tuple[int, ...]] = []

    @property
    def batch_sizes(self) -> list[int]:
        return [shape[0] for shape in self.batch_shapes]

    def describe(self) -> dict[str, str]:
        return {"backend": self.name}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def status(self) -> ModelStatus:
        return ModelStatus(True, "AVAILABLE", 1)

    async def signature(self) -> ModelSignature:
        return ModelSignature(1, "images", "probabilities", (2, 2), 3)

    def served_version(self) -> int | None:
        return 9

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        self.batch_shapes.append(images.shape)
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        scores = np.zeros((images.shape[0], 3), dtype=np.float32)
        scores[:, 0] = images[:, 0, 0, 0]
        return self.respond(scores)  # type: ignore[no-any-return]


class UncopyableError(GatewayError):
    """A backend error the batcher cannot re-create from its detail alone."""

    def __init__(self, detail: str, attempt: int) -> None:
        super().__init__(detail)
        self.attempt = attempt


def image(value: int, size: int = 2) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


async def with_batcher(backend: CountingBackend, max_size: int, timeout_s: float, body):  # type: ignore[no-untyped-def]
    batcher = Batcher(backend, max_size=max_size, timeout_s=timeout_s, concurrency=1)
    batcher.start()
    try:
        return await asyncio.wait_for(body(batcher), HANG_S)
    finally:
        await batcher.close()


async def predict_many(batcher: Batcher, *images: np.ndarray) -> list[Any]:
    return await asyncio.gather(
        *(batcher.predict_one(pixels) for pixels in images), return_exceptions=True
    )


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


def test_images_of_different_sizes_in_one_batch_each_get_their_own_answer() -> None:
    # What a version switch to a new input size leaves in the queue.
    backend = CountingBackend()

    async def body(batcher: Batcher) -> list[Any]:
        return await predict_many(batcher, image(1), image(2, size=3), image(3), image(4, size=3))

    results = asyncio.run(with_batcher(backend, 8, 0.05, body))
    assert [(int(scores[0]), version) for scores, version in results] == [
        (1, 9),
        (2, 9),
        (3, 9),
        (4, 9),
    ]
    # One call per size, each still batched, in order of arrival.
    assert backend.batch_shapes == [(2, 2, 2, 3), (2, 3, 3, 3)]


@pytest.mark.parametrize(
    "misshapen",
    [
        pytest.param(lambda scores: scores[:-1], id="a-row-short"),
        pytest.param(lambda scores: np.concatenate([scores, scores]), id="rows-to-spare"),
        pytest.param(lambda scores: scores[:, 0], id="one-dimensional"),
    ],
)
def test_scores_that_do_not_fit_the_batch_fail_every_request_and_the_worker_goes_on(
    misshapen: Callable[[np.ndarray], np.ndarray],
) -> None:
    backend = CountingBackend(respond=lambda scores: scores_as_batched(misshapen(scores)))

    async def body(batcher: Batcher) -> tuple[list[Any], tuple[np.ndarray, int]]:
        failed = await predict_many(batcher, image(1), image(2), image(3))
        backend.respond = scores_as_batched
        return failed, await batcher.predict_one(image(7))

    failed, (scores, version) = asyncio.run(with_batcher(backend, 8, 0.05, body))
    assert backend.batch_sizes == [3, 1]
    assert all(isinstance(error, BackendError) for error in failed), failed
    assert {error.status for error in failed} == {502}
    assert all("scores shaped" in error.detail for error in failed)
    assert len({id(error) for error in failed}) == 3
    assert (int(scores[0]), version) == (7, 9)


@pytest.mark.parametrize(
    "misbehaving",
    [
        pytest.param({"respond": lambda scores: None}, id="answer-is-not-a-prediction"),
        pytest.param({"fail": UncopyableError("odd", attempt=2)}, id="error-cannot-be-copied"),
    ],
)
def test_the_worker_logs_an_unexpected_failure_and_goes_on(
    misbehaving: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    backend = CountingBackend(**misbehaving)

    async def body(batcher: Batcher) -> tuple[list[Any], tuple[np.ndarray, int]]:
        failed = await predict_many(batcher, image(1), image(2))
        backend.respond, backend.fail = scores_as_batched, None
        return failed, await batcher.predict_one(image(7))

    with caplog.at_level(logging.ERROR, logger="gateway.batching"):
        failed, (scores, _) = asyncio.run(with_batcher(backend, 8, 0.05, body))
    assert all(isinstance(error, BackendError) for error in failed), failed
    assert len({id(error) for error in failed}) == 2
    assert any(record.exc_info for record in caplog.records)
    assert int(scores[0]) == 7


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
            with pytest.raises(BackendUnavailable, match="shutting down"):
                await asyncio.wait_for(request, HANG_S)

    asyncio.run(scenario())


def test_a_request_still_being_batched_fails_cleanly_on_shutdown() -> None:
    backend = CountingBackend()

    async def scenario() -> None:
        batcher = Batcher(backend, max_size=8, timeout_s=HANG_S * 2, concurrency=1)
        batcher.start()
        collected = asyncio.create_task(batcher.predict_one(image(1)))
        await asyncio.sleep(0.05)  # the worker holds it, waiting for company
        await batcher.close()
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await asyncio.wait_for(collected, HANG_S)

    asyncio.run(scenario())
    assert backend.batch_sizes == []


def test_a_request_after_shutdown_fails_at_once() -> None:
    async def scenario() -> None:
        batcher = Batcher(CountingBackend(), max_size=8, timeout_s=0.0, concurrency=1)
        batcher.start()
        await batcher.close()
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await asyncio.wait_for(batcher.predict_one(image(1)), HANG_S)

    asyncio.run(scenario())


def test_non_finite_scores_fail_only_their_own_request() -> None:
    def poison_second_row(scores: np.ndarray) -> BatchPrediction:
        poisoned = scores.astype(np.float32).copy()
        poisoned[1, 0] = np.nan
        return scores_as_batched(poisoned)

    backend = CountingBackend(respond=poison_second_row)

    async def body(batcher: Batcher) -> list[Any]:
        return await predict_many(batcher, image(1), image(2), image(3))

    first, second, third = asyncio.run(with_batcher(backend, 8, 0.05, body))
    assert isinstance(second, BackendError)
    assert second.status == 502
    assert "non-finite" in second.detail
    assert (int(first[0][0]), int(third[0][0])) == (1, 3)


def sample(name: str, model: str) -> float:
    value = REGISTRY.get_sample_value(name, {"model": model})
    return value or 0.0


def test_predict_timed_says_where_the_time_went_and_predict_one_still_answers() -> None:
    backend = CountingBackend(delay_s=0.02)

    async def body(batcher: Batcher) -> tuple[TimedPrediction, tuple[np.ndarray, int]]:
        timed = await batcher.predict_timed(image(7))
        return timed, await batcher.predict_one(image(8))

    timed, (scores, version) = asyncio.run(with_batcher(backend, 8, 0.0, body))
    assert (int(timed.probabilities[0]), timed.version) == (7, 9)
    assert (int(scores[0]), version) == (8, 9)
    assert timed.queue_seconds >= 0.0
    assert timed.model_seconds >= 0.02  # the backend's own sleep, at least


def test_one_model_call_is_one_batch_size_and_each_image_one_queue_wait() -> None:
    backend = CountingBackend(delay_s=0.0)
    before = {
        name: sample(name, "resnet")
        for name in (
            "gateway_batch_size_count",
            "gateway_batch_size_sum",
            "gateway_queue_wait_seconds_count",
        )
    }

    async def scenario() -> list[TimedPrediction]:
        batcher = Batcher(backend, max_size=3, timeout_s=HANG_S, concurrency=1, model="resnet")
        batcher.start()
        try:
            # Three images fill the batch, so the long timeout is never waited for.
            calls = (batcher.predict_timed(image(n)) for n in range(3))
            return await asyncio.wait_for(asyncio.gather(*calls), HANG_S)
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    assert backend.batch_sizes == [3]
    assert sample("gateway_batch_size_count", "resnet") - before["gateway_batch_size_count"] == 1
    assert sample("gateway_batch_size_sum", "resnet") - before["gateway_batch_size_sum"] == 3
    waits = sample("gateway_queue_wait_seconds_count", "resnet")
    assert waits - before["gateway_queue_wait_seconds_count"] == 3
    # One call answered all three: they share its duration.
    assert len({result.model_seconds for result in results}) == 1


def test_one_requests_images_go_together_past_max_size_but_never_past_the_ceiling() -> None:
    backend = CountingBackend()

    async def body(batcher: Batcher) -> list[list[Any]]:
        # A lone request first, so the worker is busy while the others queue up.
        lone = asyncio.ensure_future(batcher.predict_one(image(100)))
        await asyncio.sleep(0)
        groups = await asyncio.gather(
            batcher.predict_together([image(n) for n in range(6)]),
            batcher.predict_together([image(n) for n in range(TOGETHER_CEILING + 5)]),
        )
        await lone
        return list(groups)

    six, many = asyncio.run(with_batcher(backend, 2, 0.0, body))
    assert [int(answer.probabilities[0]) for answer in six] == list(range(6))
    assert [int(answer.probabilities[0]) for answer in many] == list(range(TOGETHER_CEILING + 5))
    assert backend.batch_sizes[0] == 1
    # BATCH_MAX_SIZE is 2, yet six images of one request are one call; none carries more
    # than TF Serving's max_batch_size.
    assert 6 in backend.batch_sizes
    assert max(backend.batch_sizes) == TOGETHER_CEILING
    assert sum(backend.batch_sizes) == 1 + 6 + TOGETHER_CEILING + 5


def test_a_failed_call_fails_each_image_of_the_group_on_its_own() -> None:
    backend = CountingBackend(fail=BackendUnavailable("down"))

    async def body(batcher: Batcher) -> list[Any]:
        return await batcher.predict_together([image(1), image(2)])

    answers = asyncio.run(with_batcher(backend, 4, 0.0, body))
    assert [type(answer) for answer in answers] == [BackendUnavailable, BackendUnavailable]
    assert answers[0] is not answers[1]  # each caller its own copy
