"""Fixtures every test module of the double shares: ports it picks, and HTTP clients.

Module-scoped ports, so each module's double and the clients that talk to it agree
on one port for the module's lifetime.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from processes import free_port


@pytest.fixture(scope="module")
def grpc_port() -> int:
    """A free port for the module's double to serve gRPC on (`--port`)."""
    return free_port()


@pytest.fixture(scope="module")
def control_port() -> int:
    """A free port for the double's fault-injection server (`--control_port`)."""
    return free_port()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.fixture
def control(control_port: int) -> Iterator[httpx.Client]:
    """The control server; every fault a test injected is cleared after it."""
    with httpx.Client(base_url=f"http://127.0.0.1:{control_port}", timeout=10) as http:
        yield http
        http.delete("/faults")
