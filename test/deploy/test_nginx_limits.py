"""nginx's own answers and its guards against slow clients, read from deploy/nginx/nginx.conf.

What nginx answers by itself (no replica could take a request, one client
holding too many requests) must read like the gateway's problem documents, and
its connection limits must fit the compose service that runs it.
test/e2e/test_nginx_own_answers.py runs the same file to show the behaviour.
"""

from typing import Any

import pytest

from bench.replicas import CONCURRENCY
from gateway.errors import GatewayError, ShuttingDown
from gateway.problems import PROBLEM_MEDIA_TYPE, Problem
from nginx_config import FixedAnswer, directives, fixed_answer, seconds, uncommented
from test_deployment_files import docker_bytes, read_compose

NGINX = "nginx"
# The longest a stalled client may keep a connection between two reads or writes.
SLOW_CLIENT_SECONDS = 10.0


@pytest.fixture(scope="module")
def config() -> str:
    return uncommented()


@pytest.fixture(scope="module")
def nginx_service() -> dict[str, Any]:
    service: dict[str, Any] = read_compose()["services"][NGINX]
    return service


def gateway_codes() -> set[str]:
    """Every `code` the gateway's own errors carry."""
    codes, pending = set(), [GatewayError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def assert_problem_document(answer: FixedAnswer, status: int, code: str) -> None:
    """`answer` has the gateway's problem shape, says `code`, and asks to retry after 1 s."""
    assert answer.status == status
    # The gateway's fields, no more and no fewer.
    assert set(answer.body) == set(Problem.model_fields)
    problem = Problem.model_validate(answer.body)
    assert (problem.status, problem.code, problem.success) == (status, code, False)
    assert answer.body["type"] == f"urn:ml-inference-pipeline:problem:{code}"
    assert answer.media_type == PROBLEM_MEDIA_TYPE
    # Not a gateway code: a client (and the accounting) can tell nginx's answer apart.
    assert code not in gateway_codes()
    assert answer.headers["Retry-After"] == str(ShuttingDown.retry_after_seconds)
    assert answer.headers["X-Request-ID"] == "$forwarded_request_id"


def test_nginx_own_502_and_504_are_a_503_problem_and_a_gateways_pass_through(
    config: str,
) -> None:
    assert "502 504 =503 @no_replica_available" in directives(config, "error_page")
    # error_page sees a replica's own 502/504 only with interception on.
    assert directives(config, "proxy_intercept_errors") == ["off"]
    answer = fixed_answer(config, "@no_replica_available")
    assert_problem_document(answer, 503, "no_replica_available")


def test_one_address_has_a_bounded_number_of_requests_in_progress(config: str) -> None:
    (zone,) = directives(config, "limit_conn_zone")
    key, name = zone.split()[:2]
    assert key == "$binary_remote_addr"
    (limit,) = directives(config, "limit_conn")
    zone_name, count = limit.split()
    assert name == f"zone={zone_name}:1m"
    # The repository's own load (bench/replicas.py) goes through from one address.
    assert int(count) >= 2 * CONCURRENCY
    assert directives(config, "limit_conn_status") == ["429"]
    assert "429 @too_many_connections" in directives(config, "error_page")
    answer = fixed_answer(config, "@too_many_connections")
    assert_problem_document(answer, 429, "too_many_connections")
    assert f" {count} requests in progress" in answer.body["detail"]


def test_stalled_clients_are_cut_off(config: str) -> None:
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        (timeout,) = directives(config, name)
        assert 0 < seconds(timeout) <= SLOW_CLIENT_SECONDS, f"{name} {timeout}"
    assert directives(config, "reset_timedout_connection") == ["on"]


def test_connection_slots_fit_the_descriptors_and_memory_of_the_container(
    config: str, nginx_service: dict[str, Any]
) -> None:
    (connections,) = map(int, directives(config, "worker_connections"))
    (descriptors,) = map(int, directives(config, "worker_rlimit_nofile"))
    # A proxied request holds two connections, plus a temp file for a large body.
    assert descriptors >= 2 * connections
    nofile = nginx_service["ulimits"]["nofile"]
    # An unprivileged nginx cannot raise its hard limit: the container must.
    assert nofile["soft"] >= descriptors
    assert nofile["hard"] >= descriptors
    # Every slot reading a body holds client_body_buffer_size from its first byte.
    (buffer,) = directives(config, "client_body_buffer_size")
    buffer_bytes = docker_bytes(buffer)  # nginx's k is 1024, as compose's
    memory = docker_bytes(nginx_service["deploy"]["resources"]["limits"]["memory"])
    assert connections * buffer_bytes <= memory
