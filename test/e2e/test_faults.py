"""Upstream faults, survived: each failure of TF Serving maps to the right status, then heals.

Each test here gets its own double and gateway, since they stop and break them.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_client import post_image
from processes import (
    Process,
    answers,
    gateway_for,
    set_faults,
    tfserving_double,
    wait_until,
)


@pytest.fixture(params=["grpc", "rest"])
def pair(
    model_root: Path, logs: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Process, Process]]:
    """A fresh double and a gateway (gRPC or REST transport) with a 1.5 s upstream deadline."""
    name = request.node.name
    double = tfserving_double(model_root / "mobilenet", logs / f"{name}-double.log").start()
    front = gateway_for(
        double,
        model_root,
        logs / f"{name}-gateway.log",
        TF_SERVING_TRANSPORT=request.param,
        TF_SERVING_TIMEOUT_SECONDS="1.5",
        STATUS_POLL_SECONDS="0.5",
    )
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    yield double, front
    front.stop()
    double.stop()


def test_tf_serving_error_is_a_502_with_its_message(
    pair: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    double, front = pair
    set_faults(double, error={"status": 500, "message": "Attempting to use uninitialized value"})
    response = post_image(front.url, cat_jpeg)
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "model_error"
    assert "Attempting to use uninitialized value" in body["detail"]
    assert "127.0.0.1" not in body["detail"]


def test_slow_tf_serving_is_a_504(pair: tuple[Process, Process], cat_jpeg: bytes) -> None:
    double, front = pair
    set_faults(double, delay_ms=4000)
    started = time.monotonic()
    response = post_image(front.url, cat_jpeg)
    assert response.status_code == 504
    assert response.json()["code"] == "model_timeout"
    assert time.monotonic() - started < 3.5


def test_dropped_connection_is_a_5xx_with_a_message(
    pair: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    double, front = pair
    set_faults(double, reset_connections=True)
    response = post_image(front.url, cat_jpeg)
    # REST sees the socket close mid-request (502); gRPC sees UNAVAILABLE (503, retry).
    assert (response.status_code, response.json()["code"]) in {
        (502, "model_error"),
        (503, "model_unavailable"),
    }
    assert response.json()["detail"]


def test_stopped_tf_serving_is_a_503_and_the_gateway_recovers(
    pair: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    double, front = pair
    double.stop()
    response = post_image(front.url, cat_jpeg)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["code"] == "model_unavailable"
    health = httpx.get(f"{front.url}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert httpx.get(f"{front.url}/health/live").status_code == 200

    double.start()
    wait_until(lambda: httpx.get(f"{front.url}/health").status_code == 200)
    assert post_image(front.url, cat_jpeg).status_code == 200


def test_gateway_starts_before_tf_serving_and_becomes_ready(
    model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    double = tfserving_double(model_root / "mobilenet", logs / "late-double.log")
    front = gateway_for(
        double, model_root, logs / "early-gateway.log", STATUS_POLL_SECONDS="0.5"
    ).start()
    try:
        assert httpx.get(f"{front.url}/health").status_code == 503
        assert post_image(front.url, cat_jpeg).status_code == 503
        double.start()
        wait_until(lambda: httpx.get(f"{front.url}/health").status_code == 200)
        assert post_image(front.url, cat_jpeg).status_code == 200
    finally:
        front.stop()
        double.stop()


def test_tf_serving_restarted_mid_load_costs_only_documented_errors(
    pair: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    double, front = pair
    outcomes: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = post_image(front.url, cat_jpeg)
            code = "" if response.status_code == 200 else response.json()["code"]
            outcomes.append((time.monotonic(), response.status_code, code))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        double.stop()
        time.sleep(1.0)
        double.start()
        wait_until(lambda: httpx.get(f"{front.url}/health").status_code == 200)
        recovered = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = {(status, code) for _, status, code in outcomes if status != 200}
    assert failures <= {(503, "model_unavailable"), (502, "model_error")}
    assert failures, "the outage should have been visible"
    after = [status for at, status, _ in outcomes if at > recovered + 0.5]
    assert after
    assert set(after) == {200}
