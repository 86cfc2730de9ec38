"""Checks of the deployment files that need no Docker engine.

docker-compose.yml (with docker-compose.debug.yml), gateway/Dockerfile,
deploy/tfserving/ (batching.pbtxt, models.config, monitoring.config, parsed as
TF Serving parses them) are validated against their schema and linter, checked
against each other and the pinned requirements, and the TF Serving healthcheck
is run against a stand-in server on 127.0.0.1 (the GitHub workflows have
test_workflows.py). The memory formula of README.md's "Deployment security and
sizing" lives here too; test_kubernetes_manifests.py holds Kubernetes to it.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf import text_format
from ruamel.yaml import YAML

from gateway.limits import FORM_OVERHEAD_BYTES
from gateway.settings import Settings
from gateway.tfserving.protos.model_server_config_pb2 import ModelServerConfig
from gateway.tfserving.protos.monitoring_config_pb2 import MonitoringConfig
from modelexport.contract import CHANNELS, DEFAULT_MODEL_NAME, IMAGE_SIZE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEBUG_COMPOSE_FILE = ROOT / "docker-compose.debug.yml"
README = ROOT / "README.md"
DOCKERFILE = ROOT / "gateway" / "Dockerfile"
DOCKERIGNORE = ROOT / "gateway" / ".dockerignore"
GATEWAY_LOCK = ROOT / "gateway" / "requirements.lock"
EXPORT_REQUIREMENTS = ROOT / "requirements-export.txt"
BATCHING_FILE = ROOT / "deploy" / "tfserving" / "batching.pbtxt"
MODELS_CONFIG_FILE = ROOT / "deploy" / "tfserving" / "models.config"
MONITORING_CONFIG_FILE = ROOT / "deploy" / "tfserving" / "monitoring.config"
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

MIB = 1024 * 1024
# The memory formula of README.md, "Deployment security and sizing"; each
# constant is stated there (test_readme_states_the_sizing_constants).
# The gateway process at rest: 102 MiB measured idle in TF Serving mode, 120 MB
# under c=16 small uploads (README, Performance).
GATEWAY_BASE_MIB = 160
# Peak memory of one decode per pixel of the upload, measured with prepare_image:
# 37 B for a 32-bit grey TIFF, 28 for RGBA WebP, 20 for RGBA PNG, 5 for RGB PNG,
# under 1 for JPEG (decoded at reduced scale).
DECODE_BYTES_PER_PIXEL = 40
# tensorflow_model_server with one version loaded and warmed up: an upper bound
# from TensorFlow's Python runtime, 676 MiB with either model.
TF_SERVING_RUNTIME_MIB = 704
# A new version loads beside the one serving (SavedModels of 16 and 19 MB).
SECOND_VERSION_MIB = 32
# Activations per image of a batch: 11.3 MiB MobileNetV2, 9.0 EfficientNet-Lite0 at batch 32.
ACTIVATIONS_PER_IMAGE_MIB = 12
# One uint8 input image (docs/model-contract.md), queued or running.
MODEL_INPUT_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS
# A limit more than this factor above the formula is oversized, not sized.
LIMIT_HEADROOM = 1.25
# What compose fills `${NAME:-default}` with when NAME is unset.
COMPOSE_DEFAULT = re.compile(r"(?<!\$)\$\{(\w+):-([^}]*)\}")

HEALTHCHECK_TARGET = re.compile(r"/dev/tcp/(?:127\.0\.0\.1|localhost)/" + str(TF_SERVING_REST_PORT))


def read_compose() -> dict[str, Any]:
    """Parse docker-compose.yml with a YAML 1.2 safe loader."""
    document = YAML(typ="safe", pure=True).load(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment as the container gets it with the host's variables unset."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value)) for key, value in raw.items()}


def interpolate(text: str) -> str:
    """Fill `${NAME:-default}` as compose does with NAME unset; refuse any other `$`."""
    return unescape_compose(COMPOSE_DEFAULT.sub(lambda match: match.group(2), text))


def port_bindings(service: dict[str, Any]) -> set[tuple[str, int, int]]:
    """Return (host IP, host port, container port), IP "" for every interface."""
    bindings = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            bindings.add((entry.get("host_ip", ""), int(entry["published"]), int(entry["target"])))
            continue
        *address, host, container = str(entry).split("/")[0].split(":")
        bindings.add((":".join(address), int(host), int(container)))
    return bindings


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


def docker_bytes(text: str) -> int:
    """Parse a compose or tmpfs byte size (`4608m`, `16m`, `2g`): binary multiples."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", str(text).lower())
    assert match, f"unexpected byte size {text!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def tmpfs_bytes(service: dict[str, Any], target: str) -> int:
    """Return the size of the service's tmpfs at target, failing if it has none or no size."""
    for entry in service.get("tmpfs", []):
        path, _, options = entry.partition(":")
        if path == target:
            sizes = [
                value
                for key, _, value in (o.partition("=") for o in options.split(","))
                if key == "size"
            ]
            assert sizes, f"the tmpfs at {target} has no size: it may take the host's memory"
            return docker_bytes(sizes[-1])
    raise AssertionError(f"no tmpfs at {target}")


def compose_limits(service: dict[str, Any]) -> dict[str, Any]:
    """Return deploy.resources.limits, which compose applies outside swarm too."""
    limits = service.get("deploy", {}).get("resources", {}).get("limits")
    assert limits, "no deploy.resources.limits: the service may take the whole host"
    return dict(limits)


@dataclass(frozen=True)
class GatewaySizing:
    """The settings that bound the gateway's memory and /tmp, as a deployment sets them."""

    max_in_flight: int
    max_upload_bytes: int
    decode_memory_budget_mb: int

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> GatewaySizing:
        """Settings' defaults, overridden by the variables the deployment sets."""
        values = {}
        for name in ("max_in_flight", "max_upload_bytes", "decode_memory_budget_mb"):
            default = Settings.model_fields[name].default
            raw = env.get(name.upper())
            assert raw is not None or isinstance(default, int), (
                f"set {name.upper()} in the deployment: its default follows the machine"
            )
            values[name] = int(raw) if raw is not None else default
        return cls(**values)

    def uploads_bytes(self) -> int:
        """MAX_IN_FLIGHT uploads at their largest: held in memory, and spooled to /tmp."""
        return self.max_in_flight * (self.max_upload_bytes + FORM_OVERHEAD_BYTES)

    def decode_bytes(self) -> int:
        """Every decode at once: DECODE_MEMORY_BUDGET_MB, which admits each by its estimate.

        gateway/decode_budget.py weighs a decode from its header before it
        starts; test/e2e/test_memory_bounds.py holds the process to the budget.
        """
        return self.decode_memory_budget_mb * MIB

    def memory_bytes(self, tmp_in_memory: int) -> int:
        """The worst case the memory limit must hold; a memory-backed /tmp adds its size."""
        return GATEWAY_BASE_MIB * MIB + self.uploads_bytes() + self.decode_bytes() + tmp_in_memory


def tf_serving_memory_bytes(tmp_in_memory: int) -> int:
    """TF Serving's worst case: runtime, a second version, and every batch batching.pbtxt allows."""
    fields = read_batching_parameters()
    threads, batch, queued = (
        int(fields[name][0])
        for name in ("num_batch_threads", "max_batch_size", "max_enqueued_batches")
    )
    running = threads * batch * ACTIVATIONS_PER_IMAGE_MIB * MIB
    inputs = (threads + queued) * batch * MODEL_INPUT_BYTES
    fixed = (TF_SERVING_RUNTIME_MIB + SECOND_VERSION_MIB) * MIB
    return fixed + running + inputs + tmp_in_memory


def assert_sized(limit: float, floor: int) -> None:
    """A memory limit holds the formula's worst case without being far above it."""
    assert limit >= floor, f"limit {limit / MIB:.0f} MiB is below the formula's {floor / MIB:.0f}"
    assert limit < floor * LIMIT_HEADROOM, (
        f"limit {limit / MIB:.0f} MiB is far above the formula's {floor / MIB:.0f}: resize it"
    )


def readme_section(heading: str) -> str:
    """Return a README section, from its heading to the next one of its level or above."""
    level = len(heading.split(" ", 1)[0])
    lines: list[str] = []
    inside = fenced = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        marks = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < marks <= level and line[marks:].startswith(" "):
            if inside:
                break
            inside = line == heading
            continue
        if inside:
            lines.append(line)
    assert lines, f"README.md has no section {heading!r}"
    return "\n".join(lines)


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


def test_gateway_port_is_published_unchanged(gateway: dict[str, Any]) -> None:
    assert port_bindings(gateway) == {("", GATEWAY_PORT, GATEWAY_PORT)}


def test_tf_serving_publishes_no_host_port(tf_serving: dict[str, Any]) -> None:
    # Whoever reached a published 8500/8501 would skip the gateway's keys and limits.
    assert port_bindings(tf_serving) == set()


def test_debug_override_publishes_tf_serving_on_loopback_only() -> None:
    result = run_tool(
        "check-jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(COMPOSE_FILE),
        str(DEBUG_COMPOSE_FILE),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    override = YAML(typ="safe", pure=True).load(DEBUG_COMPOSE_FILE)
    assert set(override) == {"services"}
    assert set(override["services"]) == {TF_SERVING}
    assert port_bindings(override["services"][TF_SERVING]) == {
        ("127.0.0.1", port, port) for port in (TF_SERVING_GRPC_PORT, TF_SERVING_REST_PORT)
    }


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


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_model_name_comes_from_the_environment(compose: dict[str, Any], service_name: str) -> None:
    # `MODEL_NAME=efficientnet_lite0 docker compose up` serves the folder that
    # `export_model.py --source efficientnet-lite0` writes (the stack workflow does).
    raw = compose["services"][service_name]["environment"]["MODEL_NAME"]
    assert raw == f"${{MODEL_NAME:-{DEFAULT_MODEL_NAME}}}"


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
    environment = environment_of(gateway)
    url = urlsplit(environment["TF_SERVING_URL"])
    assert (url.scheme, url.hostname, url.port) == ("http", TF_SERVING, TF_SERVING_REST_PORT)
    assert not url.query, "TF Serving treats a query string as part of the path"
    settings = Settings(**{name.lower(): value for name, value in environment.items()})
    model_name = environment_of(tf_serving)["MODEL_NAME"]
    assert settings.tf_serving_url == (
        f"http://{TF_SERVING}:{TF_SERVING_REST_PORT}/v1/models/{model_name}:predict"
    )


def test_gateway_uses_tf_serving_backend(gateway: dict[str, Any]) -> None:
    assert environment_of(gateway)["INFERENCE_BACKEND"] == "tfserving"


def test_gateway_healthcheck_asks_readiness(gateway: dict[str, Any]) -> None:
    script = " ".join(healthcheck_argv(gateway))
    assert f":{GATEWAY_PORT}/health/ready" in script


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_service_runs_read_only_without_privileges(
    compose: dict[str, Any], service_name: str
) -> None:
    service = compose["services"][service_name]
    assert service["read_only"] is True
    assert tmpfs_bytes(service, "/tmp") > 0
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]


def test_tf_serving_runs_as_a_fixed_non_root_uid(tf_serving: dict[str, Any]) -> None:
    # The image has no USER: without this it runs as root.
    uid, separator, gid = str(tf_serving.get("user", "")).partition(":")
    assert uid.isdigit(), "a numeric UID, as the image has no user of its own"
    assert separator
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0


@pytest.mark.parametrize("service_name", [GATEWAY, TF_SERVING])
def test_memory_limit_covers_the_sizing_formula(compose: dict[str, Any], service_name: str) -> None:
    service = compose["services"][service_name]
    limits = compose_limits(service)
    assert float(limits["cpus"]) > 0
    # compose's tmpfs is memory, charged to the container.
    tmp = tmpfs_bytes(service, "/tmp")
    if service_name == GATEWAY:
        floor = GatewaySizing.from_environment(environment_of(service)).memory_bytes(tmp)
    else:
        floor = tf_serving_memory_bytes(tmp)
    assert_sized(docker_bytes(limits["memory"]), floor)


def test_gateway_preprocess_threads_follow_the_cpu_limit(gateway: dict[str, Any]) -> None:
    cpus = float(compose_limits(gateway)["cpus"])
    assert environment_of(gateway).get("PREPROCESS_THREADS") == str(math.ceil(cpus))


def test_tf_serving_batch_threads_follow_the_cpu_limit(tf_serving: dict[str, Any]) -> None:
    cpus = float(compose_limits(tf_serving)["cpus"])
    (threads,) = read_batching_parameters()["num_batch_threads"]
    assert int(threads) == math.ceil(cpus)


def test_gateway_tmp_holds_every_upload_in_flight(gateway: dict[str, Any]) -> None:
    sizing = GatewaySizing.from_environment(environment_of(gateway))
    assert tmpfs_bytes(gateway, "/tmp") >= sizing.uploads_bytes()


def test_readme_states_the_sizing_constants() -> None:
    section = readme_section("### Deployment security and sizing")
    for stated in (
        f"{GATEWAY_BASE_MIB} MiB",
        f"{DECODE_BYTES_PER_PIXEL} bytes",
        f"{TF_SERVING_RUNTIME_MIB} MiB",
        f"{SECOND_VERSION_MIB} MiB",
        f"{ACTIVATIONS_PER_IMAGE_MIB} MiB",
        f"{FORM_OVERHEAD_BYTES // 1024} KiB",
    ):
        assert stated in section, f"README's sizing formula does not state {stated!r}"
    for setting in ("MAX_IN_FLIGHT", "MAX_UPLOAD_BYTES", "MAX_IMAGE_PIXELS", "PREPROCESS_THREADS"):
        assert f"`{setting}`" in section


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
    flags = tf_serving_flags(tf_serving)
    # The parameters file without --enable_batching stops the server at start-up.
    assert flags["enable_batching"] == "true"
    assert host_path_of(tf_serving, flags["batching_parameters_file"]) == BATCHING_FILE


def tf_serving_flags(tf_serving: dict[str, Any]) -> dict[str, str]:
    """Return the service's --name=value flags as a mapping."""
    return dict(argument.removeprefix("--").split("=", 1) for argument in tf_serving["command"])


def read_models_config() -> ModelServerConfig:
    """Parse models.config as TF Serving does (ParseProtoTextFile<ModelServerConfig>)."""
    config = ModelServerConfig()
    text_format.Parse(MODELS_CONFIG_FILE.read_text(encoding="utf-8"), config)
    return config


def test_tf_serving_serves_the_model_config_file(tf_serving: dict[str, Any]) -> None:
    flags = tf_serving_flags(tf_serving)
    assert host_path_of(tf_serving, flags["model_config_file"]) == MODELS_CONFIG_FILE
    # Polled, so a new version or a moved label needs no restart; 0 reads it once.
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    # The start-up config carries labels before any version has loaded.
    assert flags["allow_version_labels_for_unavailable_models"] == "true"


def test_config_files_are_mounted_as_a_folder(
    tf_serving: dict[str, Any], gateway: dict[str, Any]
) -> None:
    # A single-file bind mount keeps the inode it started with: an editor's
    # save (write new, rename) would never reach TF Serving's poll.
    for service in (tf_serving, gateway):
        mounted = {target: (source, ro) for source, target, ro in mounts_of(service)}
        source, read_only = mounted["/config"]
        assert (COMPOSE_FILE.parent / source).resolve() == MODELS_CONFIG_FILE.parent
        assert read_only


def test_models_config_serves_both_models_with_stable_and_canary_labels() -> None:
    models = {config.name: config for config in read_models_config().model_config_list.config}
    assert set(models) == {"mobilenet", "efficientnet_lite0"}
    for name, config in models.items():
        assert config.base_path == f"/models/{name}"
        assert config.model_platform == "tensorflow"
        assert set(config.version_labels) == {"stable", "canary"}
        # `specific` keeps exactly these loaded: a labelled version must be one of them.
        kept = set(config.model_version_policy.specific.versions)
        assert set(config.version_labels.values()) <= kept, f"{name}: label on an unloaded version"


def test_tf_serving_models_are_under_the_model_mount(tf_serving: dict[str, Any]) -> None:
    for config in read_models_config().model_config_list.config:
        assert host_path_of(tf_serving, config.base_path) == ROOT / "models" / config.name


def test_gateway_reads_the_model_config_tf_serving_serves(
    tf_serving: dict[str, Any], gateway: dict[str, Any]
) -> None:
    config_file = environment_of(gateway)["MODEL_CONFIG_FILE"]
    assert host_path_of(gateway, config_file) == MODELS_CONFIG_FILE
    assert host_path_of(tf_serving, tf_serving_flags(tf_serving)["model_config_file"]) == (
        MODELS_CONFIG_FILE
    )
    served = {config.name for config in read_models_config().model_config_list.config}
    assert environment_of(gateway)["MODEL_NAME"] in served


def test_gateway_routing_file_is_off_unless_set(gateway: dict[str, Any]) -> None:
    # `ROUTING_FILE: ${ROUTING_FILE:-}`: unset on the host, the gateway must read no file.
    environment = environment_of(gateway)
    assert environment["ROUTING_FILE"] == ""
    settings = Settings(**{name.lower(): value for name, value in environment.items()})
    assert settings.routing_file is None, (
        f"ROUTING_FILE='' became {settings.routing_file!r}: empty must mean no routing file"
    )


def test_tf_serving_monitoring_config_enables_prometheus(tf_serving: dict[str, Any]) -> None:
    flags = tf_serving_flags(tf_serving)
    assert host_path_of(tf_serving, flags["monitoring_config_file"]) == MONITORING_CONFIG_FILE
    config = MonitoringConfig()
    text_format.Parse(MONITORING_CONFIG_FILE.read_text(encoding="utf-8"), config)
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


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
    assert json.loads(dockerfile_arguments("ENTRYPOINT")[-1]) == ["python", "-m", "gateway"]
    # No CMD: Kubernetes `args:` (KServe's --model_name, ...) are appended to the entrypoint.
    assert dockerfile_arguments("CMD") == []
    workdir = PurePosixPath(dockerfile_arguments("WORKDIR")[-1])
    destinations = {
        workdir / PurePosixPath(arguments.split()[-1])
        for arguments in dockerfile_arguments("COPY")
        if arguments.split()[0] == "."
    }
    assert destinations == {workdir / "gateway"}
    assert dockerfile_arguments("EXPOSE") == [str(GATEWAY_PORT)]


def test_dockerfile_installs_only_the_hashed_lock() -> None:
    # test_dependencies.py checks the lock itself: hashed, TensorFlow-free, in step.
    installs = [run for run in dockerfile_arguments("RUN") if "pip install" in run]
    assert installs, "the image installs no dependencies"
    for run in installs:
        options = run.split("pip install", 1)[1].split("&&")[0].split()
        assert sorted(option for option in options if option.startswith("--")) == [
            "--no-cache-dir",
            "--no-deps",
            "--require-hashes",
        ]
        assert [option for option in options if not option.startswith("--")] == [
            "-r",
            GATEWAY_LOCK.name,
        ]
    copied = [arguments.split()[0] for arguments in dockerfile_arguments("COPY")]
    assert GATEWAY_LOCK.name in copied


def test_dockerignore_keeps_sources_and_the_lock() -> None:
    patterns = [line.strip().lstrip("/") for line in requirement_lines(DOCKERIGNORE)]
    kept = [GATEWAY_LOCK, *DOCKERFILE.parent.rglob("*.py")]
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
