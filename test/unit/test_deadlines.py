"""Deadlines and disconnects stop the work they bound."""

import asyncio

import pytest

from gateway.deadlines import request_timeout, run_bounded
from gateway.errors import ClientClosedRequest, DeadlineExceeded, InvalidRequest


def test_the_header_can_shorten_but_not_extend_the_deadline() -> None:
    assert request_timeout({}, 30.0) == 30.0
    assert request_timeout({"x-request-timeout": "2.5"}, 30.0) == 2.5
    assert request_timeout({"x-request-timeout": "600"}, 30.0) == 30.0


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_meaningless_timeout_header_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="X-Request-Timeout"):
        request_timeout({"x-request-timeout": value}, 30.0)


async def never_disconnects() -> dict[str, str]:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


async def disconnects_soon() -> dict[str, str]:
    await asyncio.sleep(0.02)
    return {"type": "http.disconnect"}


def test_work_past_its_deadline_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded):
            await run_bounded(slow(), never_disconnects, 0.05)
        assert cancelled.is_set()

    asyncio.run(scenario())


def test_work_is_cancelled_when_the_client_leaves() -> None:
    async def scenario() -> None:
        with pytest.raises(ClientClosedRequest):
            await run_bounded(asyncio.sleep(10), disconnects_soon, 5.0)

    asyncio.run(scenario())


def test_finished_work_returns_its_result() -> None:
    async def quick() -> int:
        return 42

    assert asyncio.run(run_bounded(quick(), never_disconnects, 1.0)) == 42
