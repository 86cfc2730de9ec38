"""The stack the suite talks to: a gateway in front of TF Serving, reached over HTTP only.

`STACK_GATEWAY_URL` names a running gateway (the stack workflow sets it to the
compose stack's http://127.0.0.1:8000, in front of real TF Serving), with
`STACK_API_KEY` when its API keys are on. Unset, as in `make test`, the session
starts the same stack here the way docker-compose.yml does: the TF Serving
double reading deploy/tfserving/models.config (its `/models/<name>` base paths
moved to the session's exports: mobilenet with untrained weights,
efficientnet_lite0 with real ones), and a gateway predicting over gRPC that
reads the same file, with an API key on. The tests see a URL and a key and
nothing else, so whatever they assert holds against either.
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import httpx
import pytest
from google.protobuf import text_format

from gateway.tfserving.protos.model_server_config_pb2 import ModelServerConfig
from processes import ROOT, wait_until
from routing_helpers import ServedModel, start_served, write_config

COMPOSE_MODELS_CONFIG = ROOT / "deploy" / "tfserving" / "models.config"
LOCAL_API_KEY = "stack-suite-key"
# Compose waits up to 600 s for both healthchecks; here the double loads two small
# versions and the gateway replays their golden answers.
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class StackTarget:
    """Where the gateway under test answers, and the API key it wants (None: keys off)."""

    url: str
    api_key: str | None


@pytest.fixture(scope="session")
def compose_models() -> tuple[ServedModel, ...]:
    """What deploy/tfserving/models.config serves, in its order: names, versions, labels."""
    config = text_format.Parse(
        COMPOSE_MODELS_CONFIG.read_text(encoding="utf-8"), ModelServerConfig()
    )
    return tuple(
        ServedModel(
            entry.name,
            Path(entry.base_path),
            tuple(entry.model_version_policy.specific.versions),
            dict(entry.version_labels),
        )
        for entry in config.model_config_list.config
    )


def local_exports(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The session's exported model folders, by the name models.config serves them under."""
    return {
        "mobilenet": request.getfixturevalue("model_root") / "mobilenet",
        "efficientnet_lite0": request.getfixturevalue("efficientnet_model_dir"),
    }


def relocated(
    models: tuple[ServedModel, ...], exports: dict[str, Path], root: Path
) -> tuple[ServedModel, ...]:
    """Copy every listed version under `root/<name>/` and point each base path there."""
    moved = []
    for model in models:
        if model.name not in exports:
            pytest.fail(f"models.config serves {model.name!r}, which this session never exports")
        # Compose mounts the host's models/ at /models: keep the folder name, move the root.
        base_path = root / PurePosixPath(model.base_path.as_posix()).name
        # No `specific` policy: TF Serving serves the newest version, so one is enough.
        for version in model.versions or (1,):
            shutil.copytree(exports[model.name] / "1", base_path / str(version))
        moved.append(replace(model, base_path=base_path))
    return tuple(moved)


@pytest.fixture(scope="session")
def stack_target(
    request: pytest.FixtureRequest,
    compose_models: tuple[ServedModel, ...],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StackTarget]:
    """STACK_GATEWAY_URL's gateway, or the local stack started (and stopped) for the session."""
    url = os.environ.get("STACK_GATEWAY_URL", "").rstrip("/")
    if url:
        yield StackTarget(url, os.environ.get("STACK_API_KEY") or None)
        return
    root = tmp_path_factory.mktemp("stack")
    models = relocated(compose_models, local_exports(request), root / "models")
    config = root / "models.config"
    write_config(config, *models)
    logs: Path = request.getfixturevalue("logs")
    # The double's own --model_name is the first model; both read every model from config.
    double, front = start_served(models[0].base_path, config, logs, "stack", API_KEYS=LOCAL_API_KEY)
    try:
        yield StackTarget(front.url, LOCAL_API_KEY)
    finally:
        front.stop()
        double.stop()


def stack_ready(client: httpx.Client) -> bool:
    """Ready as compose's `--wait` means it, and every version the gateway lists AVAILABLE."""
    try:
        if client.get("/health/ready").status_code != 200:
            return False
        models = client.get("/models").json()["models"]
    except httpx.HTTPError:
        return False
    return all(v["state"] == "AVAILABLE" for model in models for v in model["versions"])


@pytest.fixture(scope="session")
def stack(stack_target: StackTarget) -> Iterator[httpx.Client]:
    """A keep-alive client to the ready gateway, sending the API key when there is one."""
    headers = {"X-API-Key": stack_target.api_key} if stack_target.api_key else {}
    with httpx.Client(base_url=stack_target.url, headers=headers, timeout=60) as client:
        wait_until(
            lambda: stack_ready(client),
            timeout=READY_TIMEOUT_S,
            what=f"the gateway at {stack_target.url} to be ready with every version AVAILABLE",
        )
        yield client


@pytest.fixture(scope="session")
def default_model(stack: httpx.Client) -> str:
    """The model a request naming none gets (the gateway's MODEL_NAME)."""
    name: str = stack.get("/models").json()["default_model"]
    return name
