"""A draining app: not ready, new predictions refused with 503, admitted ones answered.

The real app in-process with a fake backend; the drain is begun as the server's
signal handler begins it (gateway/shutdown.py), and test/e2e/test_graceful_shutdown.py
sends the real SIGTERM to a real process.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api_client import post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.app import create_app
from gateway.drain import Drain, drain_of

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(tmp_path: Path, backend: FakeBackend) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running."""
    built = create_app(fake_settings(write_model_files(tmp_path)), backend, backend.open_lane)
    async with built.router.lifespan_context(built):
        yield built


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def outcomes(client: httpx.AsyncClient) -> dict[str, int]:
    counts: dict[str, int] = (await client.get("/metrics")).json()["requests_by_outcome"]
    return counts


async def test_readiness_turns_503_at_once_and_liveness_stays_200(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    drain_of(app).begin()
    for path in ("/health/ready", "/health"):
        response = await client.get(path)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["ready"] is False
        assert body["gateway"] == "shutting_down"
        assert "shutting down" in body["error"]
        assert response.headers["Retry-After"] == "1"
    live = await client.get("/health/live")
    assert live.status_code == 200
    assert live.json()["status"] == "alive"


async def test_a_new_prediction_is_refused_with_retry_after_and_counted(
    app: FastAPI, client: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    before = await outcomes(client)
    drain_of(app).begin()
    refused = await post_image_in_process(client, cat_jpeg)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    # The client's retry opens a new connection, which a load balancer sends elsewhere.
    assert refused.headers["Connection"] == "close"
    body = refused.json()
    assert body["code"] == "shutting_down"
    assert "shutting down" in body["detail"]
    after = await outcomes(client)
    assert after.get("shutting_down", 0) - before.get("shutting_down", 0) == 1
    # Refused at the door: nothing reached the model, nothing is left in flight.
    assert drain_of(app).in_flight == 0


async def test_a_prediction_admitted_before_the_drain_is_answered_and_then_the_drain_is_idle(
    app: FastAPI, client: httpx.AsyncClient, backend: FakeBackend, cat_jpeg: bytes
) -> None:
    backend.predict_gate = asyncio.Event()
    admitted = asyncio.create_task(post_image_in_process(client, cat_jpeg))
    await backend.predicting.wait()  # admitted, queued, and in the model call
    drain = drain_of(app)
    assert drain.begin() is True
    assert drain.in_flight_at_start == 1
    assert drain.begin() is False  # a second signal does not restart it
    assert (await post_image_in_process(client, cat_jpeg)).status_code == 503
    idle = asyncio.create_task(drain.wait_idle(timeout_seconds=30.0))
    await asyncio.sleep(0)
    assert not idle.done()  # the admitted one still holds the drain
    backend.predict_gate.set()
    answer = await admitted
    assert answer.status_code == 200
    assert answer.json()["success"] is True
    assert await idle is True
    assert drain.in_flight == 0


async def test_the_drain_gives_up_after_its_timeout() -> None:
    drain = Drain()
    drain.admit()
    drain.begin()
    assert await drain.wait_idle(timeout_seconds=0.05) is False
    assert drain.in_flight == 1
    drain.release()
    assert await drain.wait_idle(timeout_seconds=0.05) is True


async def test_each_app_has_its_own_drain(tmp_path: Path, backend: FakeBackend) -> None:
    settings = fake_settings(write_model_files(tmp_path))
    first, second = create_app(settings, backend), create_app(settings, backend)
    drain_of(first).begin()
    assert drain_of(first) is drain_of(first)
    assert drain_of(second).draining is False
