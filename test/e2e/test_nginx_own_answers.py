"""What Debian's nginx answers by itself with deploy/nginx/nginx.conf, and what it passes on.

With no replica to take a request (all refused, then all marked down by
max_fails), nginx answers a 503 problem document with Retry-After instead of
its HTML 502; a gateway's own 502 and 504 still reach the client unchanged.
One address stalling a few hundred uploads holds at most `limit_conn` of them
open: its next request is refused with a 429 document, while a client at
another address (127.0.0.2, which Linux routes to lo like all of 127/8) is
served as usual.
"""

import http.client
import selectors
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nginx_config import directives, uncommented
from nginx_front import gateway_replicas, logged, nginx_front, running_front, upstreams_tried
from processes import Process, free_port, set_faults

REPLICAS = 2
# A few hundred stalled uploads from one address: several times the limit, well under the slots.
STALLED = 200
OTHER_CLIENT = "127.0.0.2"
# The gateway gives up on TF Serving after this, answering its own 504.
UPSTREAM_TIMEOUT_SECONDS = 1.5
ANSWER_WAIT_SECONDS = 10.0
PROBLEM = "application/problem+json"


def per_address_limit() -> int:
    (limit,) = directives(uncommented(), "limit_conn")
    return int(limit.split()[1])


def predict(url: str, image: bytes, request_id: str, **client: str) -> httpx.Response:
    """POST /predict with `request_id`; `client` goes to the transport (local_address)."""
    transport = httpx.HTTPTransport(**client)  # type: ignore[arg-type]
    files = {"file": ("cat.jpg", image)}
    with httpx.Client(transport=transport, timeout=60) as http:
        return http.post(f"{url}/predict", files=files, headers={"X-Request-ID": request_id})


def assert_nginx_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert (body["status"], body["code"], body["success"]) == (status, code, False)
    assert response.headers["X-Request-ID"]


@pytest.fixture(scope="module")
def replicas(double: Process, model_root: Path, logs: Path) -> Iterator[list[Process]]:
    """Gateways that give up on TF Serving after UPSTREAM_TIMEOUT_SECONDS (their own 504)."""
    timeout = str(UPSTREAM_TIMEOUT_SECONDS)
    log_prefix = str(logs / "nginx-answers")
    with gateway_replicas(
        double, model_root, log_prefix, REPLICAS, TF_SERVING_TIMEOUT_SECONDS=timeout
    ) as processes:
        yield processes


@pytest.fixture(scope="module")
def front(replicas: list[Process], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with running_front(replicas, tmp_path_factory.mktemp("nginx-answers")) as process:
        yield process


@pytest.fixture
def faulty_double(double: Process) -> Iterator[Process]:
    """The session's double, its faults cleared afterwards whatever the test did."""
    yield double
    httpx.delete(f"{double.control_url}/faults").raise_for_status()


def test_no_replica_left_is_a_503_problem_not_an_html_502(tmp_path: Path, cat_jpeg: bytes) -> None:
    # Three replicas that are gone: nothing listens on their ports.
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    front = nginx_front(dead, tmp_path / "nginx").start(timeout=30)
    try:
        # Each refused attempt counts against max_fails=3: after three requests
        # every replica is marked down and the fourth finds no live upstream.
        posts = [predict(front.url, cat_jpeg, f"dead-{n}") for n in range(4)]
        ready = httpx.get(f"{front.url}/health/ready", headers={"X-Request-ID": "dead-ready"})
    finally:
        front.stop()
    for n, response in enumerate(posts):
        assert_nginx_problem(response, 503, "no_replica_available")
        assert response.headers["X-Request-ID"] == f"dead-{n}"
    assert_nginx_problem(ready, 503, "no_replica_available")
    entries = {e["request_id"]: e for e in logged(front, "dead-", 5)}
    assert upstreams_tried(entries["dead-0"]) == dead
    assert entries["dead-0"]["upstream_status"] == "502, 502, 502"
    assert upstreams_tried(entries["dead-3"]) == ["gateway_replicas"]
    assert all(e["status"] == 503 for e in entries.values())


def test_a_gateways_own_502_and_504_pass_through_unchanged(
    front: Process, replicas: list[Process], faulty_double: Process, cat_jpeg: bytes
) -> None:
    set_faults(faulty_double, error={"status": 500, "message": "injected: model broke"})
    through = predict(front.url, cat_jpeg, "own-502")
    direct = predict(replicas[0].url, cat_jpeg, "direct-502")
    set_faults(faulty_double, delay_ms=int(UPSTREAM_TIMEOUT_SECONDS * 2000))
    slow = predict(front.url, cat_jpeg, "own-504")

    assert through.status_code == 502
    assert through.headers["content-type"] == PROBLEM
    assert through.json() == direct.json()
    assert through.json()["code"] == "model_error"
    assert "injected: model broke" in through.json()["detail"]
    assert "Retry-After" not in through.headers
    assert slow.status_code == 504
    assert slow.headers["content-type"] == PROBLEM
    assert slow.json()["code"] == "model_timeout"
    # One replica each: 502 and 504 are not retried, and nginx did not replace them.
    entries = {e["request_id"]: e for e in logged(front, "own-", 2)}
    assert entries["own-502"]["upstream_status"] == "502"
    assert entries["own-504"]["upstream_status"] == "504"


def stall_upload(port: int) -> socket.socket:
    """A connection from 127.0.0.1 that sent an upload's headers and first bytes, then stopped."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT_SECONDS)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: nginx\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    return sock


def answer_on(sock: socket.socket) -> tuple[int, str, bytes]:
    """The status, Content-Type and body nginx sent on `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.getheader("Content-Type", ""), response.read()


def test_stalled_uploads_from_one_address_do_not_stop_another(
    front: Process, cat_jpeg: bytes
) -> None:
    limit = per_address_limit()
    port = int(front.url.rsplit(":", 1)[1])
    stalled = [stall_upload(port) for _ in range(STALLED)]
    try:
        refused: list[tuple[int, str, bytes]] = []
        waiting = {sock.fileno(): sock for sock in stalled}
        with selectors.DefaultSelector() as selector:
            for sock in stalled:
                selector.register(sock, selectors.EVENT_READ)
            # Those past the limit are answered at once; the first `limit` wait for their body.
            while len(refused) < STALLED - limit:
                ready = selector.select(timeout=ANSWER_WAIT_SECONDS)
                assert ready, f"{len(refused)} of {STALLED} stalled uploads answered"
                for key, _ in ready:
                    answered = waiting.pop(key.fd)
                    selector.unregister(answered)
                    refused.append(answer_on(answered))
            held = list(waiting.values())
            # One more byte each: client_body_timeout counts from the last one.
            for sock in held:
                sock.sendall(b"x")
            other = predict(front.url, cat_jpeg, "other-address", local_address=OTHER_CLIENT)
            same = predict(front.url, cat_jpeg, "same-address")
            # By now every refusal has arrived: exactly `limit` uploads were held.
            assert selector.select(timeout=0) == []
        assert len(held) == limit
        assert {(status, kind) for status, kind, _ in refused} == {(429, PROBLEM)}
        assert all(b'"code":"too_many_connections"' in body for _, _, body in refused)
        assert other.status_code == 200, other.text[:300]
        assert len(other.json()["predictions"]) == 5
        assert_nginx_problem(same, 429, "too_many_connections")
    finally:
        for sock in stalled:
            sock.close()
    (entry,) = logged(front, "other-address", 1)
    assert entry["status"] == 200
