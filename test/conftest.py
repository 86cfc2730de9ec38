"""Session fixtures: a model exported by export_model.py, the TF Serving double, gateways."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.library_settings import apply_library_settings
from processes import ROOT, Process, answers, child_env, gateway, gateway_for, tfserving_double

# efficientnet_model_dir: real ImageNet weights; fault_export: a deliberately broken version.
pytest_plugins = ["real_weights", "fault_export"]

CAT_JPEG = ROOT / "test" / "cat.jpg"


@pytest.fixture(scope="session", autouse=True)
def library_settings() -> None:
    """Tests that call the pipeline directly run it as the gateway does once started."""
    apply_library_settings()


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/ folder holding version 1 of `mobilenet`, exported offline (untrained weights)."""
    root = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "export_model.py", "--source", "random", "--model-dir", str(root)],
        cwd=ROOT,
        env=child_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where child processes write their output (shown when they fail to start)."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def double(model_root: Path, logs: Path) -> Iterator[Process]:
    """The TF Serving double serving the exported model, shared by the happy-path tests."""
    process = tfserving_double(model_root / "mobilenet", logs / "double.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def tfserving_gateway(double: Process, model_root: Path, logs: Path) -> Iterator[Process]:
    """The gateway in TF Serving mode, predicting over gRPC (the default transport)."""
    process = gateway_for(double, model_root, logs / "gateway-tfserving.log")
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


@pytest.fixture(scope="session")
def tfserving_rest_gateway(double: Process, model_root: Path, logs: Path) -> Iterator[Process]:
    """The gateway in TF Serving mode, predicting over REST."""
    process = gateway_for(
        double, model_root, logs / "gateway-tfserving-rest.log", TF_SERVING_TRANSPORT="rest"
    )
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


@pytest.fixture(scope="session")
def embedded_gateway(model_root: Path, logs: Path) -> Iterator[Process]:
    """The gateway running the same model in-process."""
    process = gateway(
        logs / "gateway-embedded.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(model_root),
    )
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


@pytest.fixture(params=["tfserving", "tfserving_rest", "embedded"])
def any_gateway(request: pytest.FixtureRequest) -> Process:
    """Each test using this runs once per backend and transport: the API must not depend on it."""
    process: Process = request.getfixturevalue(f"{request.param}_gateway")
    return process


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """A real cat photograph (see test/IMAGES.md)."""
    return CAT_JPEG.read_bytes()
