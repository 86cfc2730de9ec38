"""gateway_model_ready follows the backend's status() between probes, with no /health call."""

import asyncio
from pathlib import Path

import httpx
import pytest

from api_client import in_process
from fake_backend import FakeBackend, fake_settings, write_model_files

pytestmark = pytest.mark.anyio


async def gauge(client: httpx.AsyncClient) -> str:
    text = (await client.get("/metrics/prometheus")).text
    return next(line for line in text.splitlines() if line.startswith("gateway_model_ready "))


async def gauge_becomes(client: httpx.AsyncClient, line: str, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while (await gauge(client)) != line:
        assert asyncio.get_running_loop().time() < deadline, await gauge(client)
        await asyncio.sleep(0.01)


async def test_the_readiness_gauge_is_refreshed_in_the_background(tmp_path: Path) -> None:
    backend = FakeBackend()
    settings = fake_settings(write_model_files(tmp_path), status_poll_seconds=0.02)
    async with in_process(settings, backend) as client:
        await gauge_becomes(client, "gateway_model_ready 1.0")
        backend.ready = False
        await gauge_becomes(client, "gateway_model_ready 0.0")
        backend.ready = True
        await gauge_becomes(client, "gateway_model_ready 1.0")
