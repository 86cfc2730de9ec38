"""Shadow traffic: compared when it answers, counted when it cannot, never in the primary's way."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from itertools import count

import numpy as np
import pytest
from prometheus_client import REGISTRY

from gateway.shadow import Comparison, ShadowCall, ShadowRunner, compare

PRIMARY = np.array([0.1, 0.7, 0.2], dtype=np.float32)
_models = count()


def fresh_model() -> str:
    """A model name no other test used: the metrics are process-wide."""
    return f"shadowtest{next(_models)}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def skipped(model: str, reason: str) -> float:
    return sample("gateway_shadow_skipped_total", model=model, reason=reason)


def answering(probs: np.ndarray, version: int) -> ShadowCall:
    async def call() -> tuple[np.ndarray, int]:
        return probs, version

    return call


def waiting_for(event: asyncio.Event, probs: np.ndarray = PRIMARY) -> ShadowCall:
    async def call() -> tuple[np.ndarray, int]:
        await event.wait()
        return probs, 2

    return call


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_compare_tells_top1_agreement_and_l1_distance() -> None:
    same_top = compare(PRIMARY, np.array([0.2, 0.6, 0.2]))
    assert same_top.top1_agree
    assert same_top.l1 == pytest.approx(0.2)
    other_top = compare(PRIMARY, np.array([0.8, 0.1, 0.1]))
    assert other_top == Comparison(top1_agree=False, l1=pytest.approx(1.4))
    assert compare(PRIMARY, PRIMARY) == Comparison(True, 0.0)
    assert compare(PRIMARY.reshape(1, 3), PRIMARY).l1 == 0.0  # a batch of one is one image


def test_compare_refuses_different_class_counts() -> None:
    with pytest.raises(ValueError, match="cannot compare 3 classes with 4"):
        compare(PRIMARY, np.full(4, 0.25))


def test_an_answer_is_compared_and_recorded() -> None:
    model = fresh_model()

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=4)
        shadow = np.array([0.6, 0.3, 0.1], dtype=np.float32)
        assert runner.submit(model, 1, PRIMARY, answering(shadow, 2), fraction=1.0)
        await runner.drain()
        await runner.close()

    run(body)
    labels = {"model": model, "primary_version": "1", "shadow_version": "2"}
    assert sample("gateway_shadow_comparisons_total", **labels, top1="disagree") == 1
    assert sample("gateway_shadow_comparisons_total", **labels, top1="agree") == 0
    assert sample("gateway_shadow_l1_distance_count", **labels) == 1
    assert sample("gateway_shadow_l1_distance_sum", **labels) == pytest.approx(1.0)


def test_the_fraction_decides_with_the_draw() -> None:
    model = fresh_model()
    called: list[int] = []

    async def body() -> None:
        async def call() -> tuple[np.ndarray, int]:
            called.append(1)
            return PRIMARY, 2

        runner = ShadowRunner(max_in_flight=4)
        assert not runner.submit(model, 1, PRIMARY, call, fraction=0.1, draw=0.1)
        assert not runner.submit(model, 1, PRIMARY, call, fraction=0.0, draw=0.0)
        assert runner.submit(model, 1, PRIMARY, call, fraction=0.1, draw=0.0999)
        await runner.drain()
        await runner.close()

    run(body)
    assert called == [1]
    assert skipped(model, "busy") == 0


def test_submit_returns_at_once_while_the_shadow_is_still_running() -> None:
    model = fresh_model()

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=4)
        release = asyncio.Event()
        assert runner.submit(model, 1, PRIMARY, waiting_for(release), fraction=1.0)
        assert runner.in_flight == 1  # the primary goes on; the shadow has not answered
        release.set()
        await runner.drain()
        assert runner.in_flight == 0
        await runner.close()

    run(body)
    labels = {"model": model, "primary_version": "1", "shadow_version": "2"}
    assert sample("gateway_shadow_comparisons_total", **labels, top1="agree") == 1


def test_a_full_runner_skips_and_counts_busy() -> None:
    model = fresh_model()

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=2)
        release = asyncio.Event()
        assert runner.submit(model, 1, PRIMARY, waiting_for(release), fraction=1.0)
        assert runner.submit(model, 1, PRIMARY, waiting_for(release), fraction=1.0)
        assert not runner.submit(model, 1, PRIMARY, waiting_for(release), fraction=1.0)
        assert runner.in_flight == 2
        release.set()
        await runner.drain()
        assert runner.submit(model, 1, PRIMARY, answering(PRIMARY, 2), fraction=1.0)
        await runner.drain()
        await runner.close()

    run(body)
    assert skipped(model, "busy") == 1
    labels = {"model": model, "primary_version": "1", "shadow_version": "2"}
    assert sample("gateway_shadow_comparisons_total", **labels, top1="agree") == 3


def test_a_failing_shadow_is_counted_and_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = fresh_model()

    async def failing() -> tuple[np.ndarray, int]:
        raise RuntimeError("version 2 is still loading")

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=4)
        assert runner.submit(model, 1, PRIMARY, failing, fraction=1.0)
        await runner.drain()
        await runner.close()

    with caplog.at_level(logging.DEBUG, logger="gateway.shadow"):
        run(body)
    assert skipped(model, "error") == 1
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert caplog.records[0].exc_info is not None  # the cause is there for whoever looks


def test_a_shadow_that_never_answers_times_out() -> None:
    model = fresh_model()

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=1, timeout_seconds=0.01)
        assert runner.submit(model, 1, PRIMARY, waiting_for(asyncio.Event()), fraction=1.0)
        await runner.drain()
        assert runner.in_flight == 0  # its slot is free again
        await runner.close()

    run(body)
    assert skipped(model, "timeout") == 1


def test_an_answer_of_another_shape_is_skipped_as_incomparable() -> None:
    model = fresh_model()

    async def body() -> None:
        runner = ShadowRunner(max_in_flight=4)
        assert runner.submit(model, 1, PRIMARY, answering(np.full(4, 0.25), 2), fraction=1.0)
        await runner.drain()
        await runner.close()

    run(body)
    assert skipped(model, "incomparable") == 1


def test_close_cancels_running_shadows_and_refuses_new_ones() -> None:
    model = fresh_model()
    cancelled = asyncio.Event()

    async def body() -> None:
        started = asyncio.Event()

        async def call() -> tuple[np.ndarray, int]:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return PRIMARY, 2

        runner = ShadowRunner(max_in_flight=4)
        assert runner.submit(model, 1, PRIMARY, call, fraction=1.0)
        await started.wait()
        await runner.close()
        assert runner.in_flight == 0
        assert not runner.submit(model, 1, PRIMARY, answering(PRIMARY, 2), fraction=1.0)

    run(body)
    assert cancelled.is_set()
    assert skipped(model, "error") == 0  # shutting down is not a shadow failure


def test_max_in_flight_must_allow_one_call() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShadowRunner(max_in_flight=0)
