"""Checks of the deployment files that need no Docker engine.

docker-compose.yml, gateway/Dockerfile and deploy/tfserving/batching.pbtxt are
validated against their schema and linter, checked against each other and the
pinned requirements, and the TF Serving healthcheck is run against a stand-in
server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "gateway" / "Dockerfile"
DOCKERIGNORE = ROOT / "gateway" / ".dockerignore"
GATEWAY_REQUIREMENTS = ROOT / "gateway" / "requirements.txt"
EXPORT_REQUIREMENTS = ROOT / "requirements-export.txt"
BATCHING_FILE = ROOT / "deploy" / "tfserving" / "batching.pbtxt"
TOOLS_DIR = Path(sys.executable).parent

TF_SERVING = "tensorflow-serving"
GATEWAY = "gateway"
NETWORK = "ml-network"
# Fixed by the image's entrypoint (--port=8500 --rest_api_port=8501).
TF_SERVING_GRPC_PORT = 8500
TF_SERVING_REST_PORT = 8501
GATEWAY_PORT = 8000

# Flags of tensorflow_serving/model_servers/main.cc this deployment may pass.
# The server only logs an unknown flag and starts anyway, so a typo would go
# unnoticed. --port, --rest_api_port, --model_name and --model_base_path are
# left out on purpose: the entrypoint sets them and the healthchecks rely on them.
TF_SERVING_FLAGS = frozenset(
    {
        "allow_version_labels_for_unavailable_models",
        "batching_parameters_file",
        "enable_batching",
        "enable_grpc_healthcheck_service",
        "enable_model_warmup",
        "enable_per_model_batching_parameters",
        "enable_profiler",
        "enable_serialization_as_tensor_content",
        "file_system_poll_wait_seconds",
        "flush_filesystem_caches",
        "grpc_max_threads",
        "load_retry_interval_micros",
        "max_num_load_retries",
        "model_config_file",
        "model_config_file_poll_wait_seconds",
        "monitoring_config_file",
        "num_load_threads",
        "rest_api_enable_cors_support",
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "saved_model_tags",
        "tensorflow_inter_op_parallelism",
        "tensorflow_intra_op_parallelism",
        "tensorflow_session_parallelism",
    }
)

# BatchingParameters fields (servables/tensorflow/session_bundle_config.proto):
# wrapper messages written `name { value: V }`, and plain fields `name: V`.
BATCHING_WRAPPED_FIELDS = frozenset(
    {
        "batch_timeout_micros",
        "enable_large_batch_splitting",
        "max_batch_size",
        "max_enqueued_batches",
        "max_execution_batch_size",
        "num_batch_threads",
        "thread_pool_name",
    }
)
BATCHING_PLAIN_FIELDS = frozenset({"allowed_batch_sizes", "pad_variable_length_inputs"})

HEALTHCHECK_TARGET = re.compile(r"/dev/tcp/(?:127\.0\.0\.1|localhost)/" + str(TF_SERVING_REST_PORT))
TENSORFLOW_FAMILY = re.compile(r"^(tensorflow|keras|tf[-_])", re.IGNORECASE)


def read_compose() -> dict[str, Any]:
    """Parse docker-compose.yml with a YAML 1.2 safe loader."""
    document = YAML(typ="safe", pure=True).load(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment, whether written as a map or a list."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """Return (host, container) pairs from short or long port syntax."""
    pairs = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        *_, host, container = str(entry).split("/")[0].split(":")
        pairs.add((int(host), int(container)))
    return pairs


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Return (source, target, read_only) for each volume, short or long syntax."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((entry["source"], entry["target"], bool(entry.get("read_only"))))
            continue
        source, target, *mode = entry.split(":")
        mounts.append((source, target, "ro" in ",".join(mode).split(",")))
    return mounts


def host_path_of(service: dict[str, Any], container_path: str) -> Path:
    """Map a file path inside a container to the bind-mounted host path."""
    inside = PurePosixPath(container_path)
    for source, target, _ in mounts_of(service):
        if inside.is_relative_to(target):
            return (COMPOSE_FILE.parent / source / inside.relative_to(target)).resolve()
    raise AssertionError(f"{container_path} is not under any mount of the service")


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    """Return the healthcheck's argv as written in the file, `$$` escapes included."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *argv = test
    assert kind in {"CMD", "CMD-SHELL"}, f"healthcheck kind {kind!r} never probes anything"
    return ["sh", "-c", argv[0]] if kind == "CMD-SHELL" else argv


def unescape_compose(text: str) -> str:
    """Undo compose interpolation escapes, refusing any `$` compose would substitute."""
    assert "$" not in text.replace("$$", ""), (
        f"unescaped $ in {text!r}: compose would fill it from the host's environment"
    )
    return text.replace("$$", "$")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs with continuation lines joined."""
    instructions = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_arguments(keyword: str) -> list[str]:
    """Return the arguments of every instruction named keyword, in order."""
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def requirement_lines(path: Path) -> list[str]:
    """Return a requirements file's lines without comments or blanks."""
    lines = (
        line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
    )
    return [line for line in lines if line]


def pinned_tensorflow_version() -> str:
    """Return the version after `tensorflow==` in requirements-export.txt."""
    for line in requirement_lines(EXPORT_REQUIREMENTS):
        name, _, version = line.partition("==")
        if name.strip().lower() == "tensorflow":
            return version.strip()
    raise AssertionError("requirements-export.txt pins no tensorflow==")


def read_batching_parameters() -> dict[str, list[str]]:
    """Parse the flat BatchingParameters text proto, failing on anything else."""
    text = re.sub(r"#[^\n]*", "", BATCHING_FILE.read_text(encoding="utf-8"))
    fields: dict[str, list[str]] = {}
    field = re.compile(r"\s*(?:(\w+)\s*\{\s*value\s*:\s*([^\s{}]+)\s*\}|(\w+)\s*:\s*([^\s{}]+))")
    position = 0
    while text[position:].strip():
        match = field.match(text, position)
        assert match, f"cannot parse batching.pbtxt near {text[position : position + 40]!r}"
        if match.group(1):
            name, value = match.group(1), match.group(2)
            assert name in BATCHING_WRAPPED_FIELDS, f"unknown wrapped field {name}"
        else:
            name, value = match.group(3), match.group(4)
            assert name in BATCHING_PLAIN_FIELDS, f"unknown field {name}"
        fields.setdefault(name, []).append(value)
        position = match.end()
    return fields


def run_tool(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run a console script installed next to this interpreter, from the repo root."""
    executable = TOOLS_DIR / name
    assert executable.exists(), f"{name} is missing: install requirements-dev.txt"
    return subprocess.run(
        [str(executable), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose()


@pytest.fixture(scope="module")
def tf_serving(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"][TF_SERVING]


@pytest.fixture(scope="module")
def gateway(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"][GATEWAY]


def test_compose_file_matches_the_compose_spec() -> None:
    result = run_tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_dockerfile_passes_hadolint() -> None:
    result = run_tool("hadolint", str(DOCKERFILE))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_compose_file_has_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_tf_serving_image_is_pinned_to_the_export_tensorflow(tf_serving: dict[str, Any]) -> None:
    repository, _, tag = tf_serving["image"].partition(":")
    assert repository == "tensorflow/serving"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"tag {tag!r} is not a pinned CPU release"
    exported_with = pinned_tensorflow_version()
    assert tag.split(".")[:2] == exported_with.split(".")[:2], (
        f"tensorflow/serving:{tag} cannot be trusted with models exported by "
        f"tensorflow=={exported_with}"
    )


def test_tf_serving_asks_for_the_only_platform_it_ships(tf_serving: dict[str, Any]) -> None:
    assert tf_serving["platform"] == "linux/amd64"


@pytest.mark.parametrize(
    ("service_name", "port"),
    [
        (GATEWAY, GATEWAY_PORT),
        (TF_SERVING, TF_SERVING_REST_PORT),
        (TF_SERVING, TF_SERVING_GRPC_PORT),
    ],
)
def test_port_is_published_unchanged(compose: dict[str, Any], service_name: str, port: int) -> None:
    assert (port, port) in published_ports(compose["services"][service_name])


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_service_is_on_the_bridge_network(compose: dict[str, Any], service_name: str) -> None:
    assert NETWORK in compose["services"][service_name]["networks"]
    assert compose["networks"][NETWORK]["driver"] == "bridge"


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_models_are_mounted_read_only_at_model_base_path(
    compose: dict[str, Any], service_name: str
) -> None:
    service = compose["services"][service_name]
    base_path = environment_of(service)["MODEL_BASE_PATH"]
    mounted = {target: (source, read_only) for source, target, read_only in mounts_of(service)}
    assert base_path in mounted, f"nothing is mounted at MODEL_BASE_PATH={base_path}"
    source, read_only = mounted[base_path]
    assert (COMPOSE_FILE.parent / source).resolve() == ROOT / "models"
    assert read_only


def test_both_services_serve_the_same_model_name(
    tf_serving: dict[str, Any], gateway: dict[str, Any]
) -> None:
    assert environment_of(gateway)["MODEL_NAME"] == environment_of(tf_serving)["MODEL_NAME"]


def test_gateway_waits_for_a_healthy_tf_serving(gateway: dict[str, Any]) -> None:
    assert gateway["depends_on"][TF_SERVING]["condition"] == "service_healthy"


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_service_has_a_healthcheck_and_restarts(compose: dict[str, Any], service_name: str) -> None:
    service = compose["services"][service_name]
    assert not service["healthcheck"].get("disable", False)
    assert healthcheck_argv(service)
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}


def test_tf_serving_healthcheck_requires_the_model_available(tf_serving: dict[str, Any]) -> None:
    script = " ".join(unescape_compose(part) for part in healthcheck_argv(tf_serving))
    model_name = environment_of(tf_serving)["MODEL_NAME"]
    assert "AVAILABLE" in script
    assert "/v1/models/" in script
    assert any(ref in script for ref in ("${MODEL_NAME}", "$MODEL_NAME", f"/models/{model_name}"))


def test_tf_serving_start_period_allows_for_the_model_load(tf_serving: dict[str, Any]) -> None:
    start_period = tf_serving["healthcheck"]["start_period"]
    match = re.fullmatch(r"(\d+)(s|m)", start_period)
    assert match, f"unexpected duration {start_period!r}"
    seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
    assert seconds >= 60


def test_gateway_predict_url_targets_tf_serving_rest(
    tf_serving: dict[str, Any], gateway: dict[str, Any]
) -> None:
    url = urlsplit(environment_of(gateway)["TF_SERVING_URL"])
    model_name = environment_of(tf_serving)["MODEL_NAME"]
    assert (url.scheme, url.hostname, url.port) == ("http", TF_SERVING, TF_SERVING_REST_PORT)
    assert url.path == f"/v1/models/{model_name}:predict"
    assert not url.query, "TF Serving treats a query string as part of the path"


def test_gateway_uses_tf_serving_backend(gateway: dict[str, Any]) -> None:
    assert environment_of(gateway)["INFERENCE_BACKEND"] == "tfserving"


def test_gateway_healthcheck_asks_readiness(gateway: dict[str, Any]) -> None:
    script = " ".join(healthcheck_argv(gateway))
    assert f":{GATEWAY_PORT}/health/ready" in script


def test_gateway_runs_read_only_without_privileges(gateway: dict[str, Any]) -> None:
    assert gateway["read_only"] is True
    assert "/tmp" in [entry.split(":")[0] for entry in gateway["tmpfs"]]
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]


def test_gateway_image_tag_is_the_project_version(gateway: dict[str, Any]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert gateway["image"].rpartition(":")[2] == project["version"]
    assert (COMPOSE_FILE.parent / gateway["build"]).resolve() == DOCKERFILE.parent


def test_tf_serving_flags_are_spelled_as_the_server_knows_them(tf_serving: dict[str, Any]) -> None:
    for argument in tf_serving["command"]:
        match = re.fullmatch(r"--(\w+)=(\S+)", argument)
        assert match, f"{argument!r} is not --name=value"
        assert match.group(1) in TF_SERVING_FLAGS, f"unknown or entrypoint-owned flag {argument}"


def test_tf_serving_batching_file_is_enabled_and_mounted(tf_serving: dict[str, Any]) -> None:
    flags = dict(argument.removeprefix("--").split("=", 1) for argument in tf_serving["command"])
    # The parameters file without --enable_batching stops the server at start-up.
    assert flags["enable_batching"] == "true"
    assert host_path_of(tf_serving, flags["batching_parameters_file"]) == BATCHING_FILE


def status_body(*states: str) -> str:
    """Render a model status reply the way TF Serving does, highest version first."""
    # A failed version stays listed as END with its error code, and the code
    # UNAVAILABLE contains the word a careless grep looks for.
    failed = {"error_code": "UNAVAILABLE", "error_message": "servable did not become available"}
    versions = [
        {
            "version": str(len(states) - index),
            "state": state,
            "status": failed if state == "END" else {"error_code": "OK", "error_message": ""},
        }
        for index, state in enumerate(states)
    ]
    return json.dumps({"model_version_status": versions}, indent=1)


@pytest.fixture
def stand_in_tf_serving(
    tf_serving: dict[str, Any],
) -> Iterator[Callable[[int, str], tuple[int, list[str]]]]:
    """Start stand-in servers answering the model status path; yield a starter."""
    status_path = f"/v1/models/{environment_of(tf_serving)['MODEL_NAME']}"
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(status: int, body: str) -> tuple[int, list[str]]:
        requested: list[str] = []

        class StatusHandler(http.server.BaseHTTPRequestHandler):
            # Like libevent: an HTTP/1.1 request keeps the connection open.
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                requested.append(self.path)
                found = self.path == status_path
                payload = (body if found else '{ "error": "Malformed request" }').encode()
                self.send_response(status if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server.server_address[1], requested

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def run_tf_serving_healthcheck(tf_serving: dict[str, Any], port: int) -> int:
    """Run the compose healthcheck with bash here, pointed at 127.0.0.1:port."""
    argv = [unescape_compose(part) for part in healthcheck_argv(tf_serving)]
    targets = sum(len(HEALTHCHECK_TARGET.findall(part)) for part in argv)
    assert targets == 1, "the healthcheck should open exactly one /dev/tcp connection to 8501"
    argv = [HEALTHCHECK_TARGET.sub(f"/dev/tcp/127.0.0.1/{port}", part) for part in argv]
    container_env = {"PATH": os.environ["PATH"], **environment_of(tf_serving)}
    return subprocess.run(argv, env=container_env, capture_output=True, timeout=5).returncode


@pytest.mark.parametrize(
    ("states", "healthy"),
    [
        pytest.param(("AVAILABLE",), True, id="available"),
        pytest.param(("LOADING", "AVAILABLE"), True, id="new-loading-old-available"),
        pytest.param(("LOADING",), False, id="loading"),
        pytest.param(("START",), False, id="start"),
        pytest.param(("END",), False, id="end-with-unavailable-error"),
        pytest.param(("UNLOADING",), False, id="unloading"),
    ],
)
def test_tf_serving_healthcheck_passes_only_with_an_available_version(
    tf_serving: dict[str, Any],
    stand_in_tf_serving: Callable[[int, str], tuple[int, list[str]]],
    states: tuple[str, ...],
    healthy: bool,
) -> None:
    port, requested = stand_in_tf_serving(200, status_body(*states))
    returncode = run_tf_serving_healthcheck(tf_serving, port)
    assert requested == [f"/v1/models/{environment_of(tf_serving)['MODEL_NAME']}"]
    assert (returncode == 0) is healthy, f"exit {returncode} for states {states}"


def test_tf_serving_healthcheck_fails_for_an_unknown_model(
    tf_serving: dict[str, Any],
    stand_in_tf_serving: Callable[[int, str], tuple[int, list[str]]],
) -> None:
    port, _ = stand_in_tf_serving(404, '{ "error": "Could not find any versions of model" }')
    assert run_tf_serving_healthcheck(tf_serving, port) != 0


def test_tf_serving_healthcheck_fails_while_the_port_is_closed(tf_serving: dict[str, Any]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert run_tf_serving_healthcheck(tf_serving, closed_port) != 0


def test_dockerfile_base_image_pins_the_project_python() -> None:
    (base,) = dockerfile_arguments("FROM")
    repository, _, tag = base.partition(":")
    assert repository == "python"
    match = re.fullmatch(r"(\d+\.\d+)\.\d+-slim-\w+", tag)
    assert match, f"python:{tag} is not a pinned slim patch release"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert match.group(1) == pyproject["tool"]["mypy"]["python_version"]


def test_dockerfile_runs_as_a_fixed_non_root_uid() -> None:
    user = dockerfile_arguments("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), "a numeric UID lets runAsNonRoot verify it"
    assert int(uid) != 0


def test_dockerfile_healthcheck_asks_liveness() -> None:
    (healthcheck,) = dockerfile_arguments("HEALTHCHECK")
    assert "CMD" in healthcheck.split()
    assert "/health/live" in healthcheck


def test_dockerfile_starts_the_gateway_module_from_workdir() -> None:
    assert json.loads(dockerfile_arguments("CMD")[-1]) == ["python", "-m", "gateway"]
    workdir = PurePosixPath(dockerfile_arguments("WORKDIR")[-1])
    destinations = {
        workdir / PurePosixPath(arguments.split()[-1])
        for arguments in dockerfile_arguments("COPY")
        if arguments.split()[0] == "."
    }
    assert destinations == {workdir / "gateway"}
    assert dockerfile_arguments("EXPOSE") == [str(GATEWAY_PORT)]


def test_dockerfile_installs_only_the_requirements_file() -> None:
    installs = [run for run in dockerfile_arguments("RUN") if "pip install" in run]
    assert installs, "the image installs no dependencies"
    for run in installs:
        options = run.split("pip install", 1)[1].split("&&")[0].split()
        assert "--no-cache-dir" in options
        assert [option for option in options if option != "--no-cache-dir"] == [
            "-r",
            "requirements.txt",
        ]


def test_gateway_requirements_are_pinned_and_free_of_tensorflow() -> None:
    lines = requirement_lines(GATEWAY_REQUIREMENTS)
    assert lines
    for line in lines:
        name, separator, version = line.partition("==")
        assert separator, f"{line!r} is not pinned with =="
        assert version, f"{line!r} is not pinned with =="
        assert not TENSORFLOW_FAMILY.match(name.strip()), f"{line!r} belongs in the export image"


def test_dockerignore_keeps_sources_and_requirements() -> None:
    patterns = [line.strip().lstrip("/") for line in requirement_lines(DOCKERIGNORE)]
    kept = [GATEWAY_REQUIREMENTS, *DOCKERFILE.parent.rglob("*.py")]
    for path in kept:
        relative = path.relative_to(DOCKERFILE.parent).as_posix()
        if "__pycache__" in relative:
            continue
        excluded = [pattern for pattern in patterns if fnmatch(relative, pattern)]
        assert not excluded, f"{relative} is excluded from the build context by {excluded}"


def test_batching_parameters_are_positive_integers() -> None:
    fields = read_batching_parameters()
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        (value,) = fields[name]
        assert value.isdigit(), f"{name}: {value!r}"
        assert int(value) > 0, f"{name}: {value!r}"
    (timeout,) = fields["batch_timeout_micros"]
    assert timeout.isdigit()


def test_batching_allowed_sizes_end_at_max_batch_size() -> None:
    fields = read_batching_parameters()
    allowed = [int(size) for size in fields.get("allowed_batch_sizes", [])]
    if allowed:
        assert allowed == sorted(set(allowed)), "allowed_batch_sizes must increase"
        assert allowed[-1] == int(fields["max_batch_size"][0])
