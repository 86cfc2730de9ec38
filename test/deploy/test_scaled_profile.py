"""The `scaled` compose profile without Docker: the replicas, nginx, and nginx.conf against both.

test/e2e/test_nginx_replicas.py runs deploy/nginx/nginx.conf with Debian's
nginx; these checks hold the compose side to it: the replicas are the
gateway's own definition, nginx mounts that file and publishes the port it
listens on, and the config's limits follow the gateway's settings.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import PayloadTooLarge
from gateway.limits import FORM_OVERHEAD_BYTES
from gateway.problems import problem_response
from gateway.settings import Settings
from nginx_config import directives, fixed_answer, seconds, uncommented
from nginx_front import CONFIG
from test_deployment_files import (
    COMPOSE_FILE,
    GATEWAY,
    GATEWAY_PORT,
    healthcheck_argv,
    mounts_of,
    port_bindings,
    read_compose,
    tmpfs_bytes,
)

REPLICA = "gateway-replica"
NGINX = "nginx"
PROFILE = "scaled"
# `resolve` in an open source upstream's server line arrived in nginx 1.27.3.
RESOLVE_SINCE = (1, 27, 3)
# What the replica service changes on purpose; everything else is the gateway's.
REPLICA_OWN_KEYS = {"ports", "profiles", "deploy"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    services: dict[str, Any] = read_compose()["services"]
    return services


@pytest.fixture(scope="module")
def config() -> str:
    """nginx.conf without comments."""
    return uncommented()


def test_replicas_are_the_gateway_without_its_port(services: dict[str, Any]) -> None:
    gateway, replica = services[GATEWAY], services[REPLICA]
    assert replica["profiles"] == [PROFILE]
    assert replica["deploy"]["replicas"] >= 2
    assert port_bindings(replica) == set()
    assert replica["deploy"]["resources"] == gateway["deploy"]["resources"]
    shared = set(gateway) | set(replica)
    for key in shared - REPLICA_OWN_KEYS:
        assert replica.get(key) == gateway.get(key), f"{key} differs between gateway and replicas"
    # The unscaled stack stays as it was: the gateway belongs to no profile.
    assert "profiles" not in gateway


def test_nginx_runs_the_shipped_config_unprivileged(services: dict[str, Any]) -> None:
    nginx = services[NGINX]
    assert nginx["profiles"] == [PROFILE]
    repository, _, tag = nginx["image"].partition(":")
    assert repository == "nginx"
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-alpine", tag)
    assert match, f"nginx:{tag} is not an exact release"
    assert tuple(map(int, match.groups())) >= RESOLVE_SINCE
    entrypoint = nginx["entrypoint"]
    conf_in_container = entrypoint[entrypoint.index("-c") + 1]
    mounted = {target: (source, ro) for source, target, ro in mounts_of(nginx)}
    folder = str(Path(conf_in_container).parent)
    source, read_only = mounted[folder]
    assert read_only
    assert (COMPOSE_FILE.parent / source / Path(conf_in_container).name).resolve() == CONFIG
    uid = str(nginx["user"]).partition(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert nginx["read_only"] is True
    assert nginx["cap_drop"] == ["ALL"]
    assert tmpfs_bytes(nginx, "/tmp") > 0


def test_nginx_writes_only_under_its_tmpfs(config: str) -> None:
    written = directives(config, "pid") + [
        argument
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        for argument in directives(config, f"{name}_temp_path")
    ]
    assert len(written) == 6
    assert all(path.startswith("/tmp/") for path in written), written
    assert directives(config, "user") == []


def test_nginx_publishes_what_it_listens_on_and_checks_its_own_health(
    services: dict[str, Any], config: str
) -> None:
    nginx = services[NGINX]
    (listen,) = directives(config, "listen")
    port = int(listen)
    assert {(host_port, target) for _, host_port, target in port_bindings(nginx)} == {(port, port)}
    health = " ".join(healthcheck_argv(nginx))
    assert f"127.0.0.1:{port}/nginx-health" in health
    assert re.search(r"location\s*=\s*/nginx-health\s*\{[^}]*return\s+200", config)
    assert nginx["depends_on"] == {REPLICA: {"condition": "service_healthy"}}


def test_upstream_is_the_replica_service(config: str) -> None:
    (server,) = [s for s in directives(config, "server") if not s.startswith("{")]
    address, *parameters = server.split()
    assert address == f"{REPLICA}:{GATEWAY_PORT}"
    assert "resolve" in parameters
    assert any(p.startswith("max_fails=") for p in parameters)
    assert any(p.startswith("fail_timeout=") for p in parameters)
    assert re.search(r"(?m)^\s*zone\s+\w+\s+\w+;", config), "resolve needs a shared zone"
    assert directives(config, "resolver")


def test_nginx_limits_follow_the_gateway_settings(config: str) -> None:
    max_upload_bytes = Settings.model_fields["max_upload_bytes"].default
    request_timeout = Settings.model_fields["request_timeout_seconds"].default
    (body,) = directives(config, "client_max_body_size")
    assert body.endswith("k")
    assert int(body[:-1]) * 1024 == max_upload_bytes + FORM_OVERHEAD_BYTES
    # The gateway answers its own 504 before nginx gives up on it.
    (read_timeout,) = directives(config, "proxy_read_timeout")
    assert seconds(read_timeout) > request_timeout
    assert directives(config, "proxy_request_buffering") == ["on"]


def test_only_the_prediction_endpoints_are_retried_as_a_post(config: str) -> None:
    for path in ("/predict", "/predict/batch"):
        found = re.search(rf"location\s*=\s*{re.escape(path)}\s*\{{([^}}]*)\}}", config)
        assert found, path
        (retry,) = directives(found.group(1), "proxy_next_upstream")
        assert set(retry.split()) == {"error", "timeout", "http_503", "non_idempotent"}
    everywhere = directives(config, "proxy_next_upstream")
    assert sum("non_idempotent" in line for line in everywhere) == 2


def test_gateways_outlast_their_drain_before_compose_kills_them(
    services: dict[str, Any],
) -> None:
    drain = Settings.model_fields["shutdown_timeout_seconds"].default
    for name in (GATEWAY, REPLICA):
        grace = services[name]["stop_grace_period"]
        assert seconds(grace) > drain, f"{name}: stop_grace_period {grace} <= {drain} s"


def test_nginx_refuses_a_large_upload_with_the_gateways_own_problem(config: str) -> None:
    assert "413 @payload_too_large" in directives(config, "error_page")
    answer = fixed_answer(config, "@payload_too_large")
    assert answer.status == 413
    max_upload_bytes = Settings.model_fields["max_upload_bytes"].default
    gateway_answer = problem_response(PayloadTooLarge.over(max_upload_bytes))
    assert answer.body == json.loads(bytes(gateway_answer.body))
    assert answer.media_type == gateway_answer.media_type
