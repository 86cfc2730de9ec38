"""The in-process app the test_app_* modules drive: a fake backend behind the real app."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api_client import in_process
from fake_backend import FakeBackend, fake_settings, write_model_files


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the gateway is asyncio code


@pytest.fixture
def backend() -> FakeBackend:
    """Ready, serving version 1; a test may change it while the app runs."""
    return FakeBackend()


@pytest.fixture
async def client(tmp_path: Path, backend: FakeBackend) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, the model files in a temporary folder."""
    async with in_process(fake_settings(write_model_files(tmp_path)), backend) as client:
        yield client
