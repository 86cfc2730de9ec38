"""The gateway's declared dependencies alone are enough to serve, without TensorFlow.

The gateway image installs gateway/requirements.lock and nothing else (TF Serving
backend); the embedded extra adds LiteRT for a version's TensorFlow Lite copy.
"""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from api_client import post_image
from processes import ROOT, Process, answers, gateway


def fresh_python(env_dir: Path, *install: str) -> str:
    """Make a virtual environment, pip install `install` into it, and return its python."""
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *install],
        check=True,
        timeout=900,
    )
    return python


def imports(python: str, module: str) -> bool:
    """Whether `python` can import `module`."""
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def gateway_only_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The gateway image's environment: the lock, installed as gateway/Dockerfile does."""
    lock = ROOT / "gateway" / "requirements.lock"
    return fresh_python(
        tmp_path_factory.mktemp("gateway-venv"), "--require-hashes", "--no-deps", "-r", str(lock)
    )


@pytest.fixture(scope="module")
def embedded_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An environment with the project's embedded extra and nothing more."""
    # Editable: a plain install would build into the checkout's build/.
    return fresh_python(tmp_path_factory.mktemp("embedded-venv"), "-e", f"{ROOT}[embedded]")


@pytest.mark.slow
def test_the_gateway_venv_has_neither_tensorflow_nor_litert(gateway_only_python: str) -> None:
    assert sys.executable != gateway_only_python
    assert imports(gateway_only_python, "fastapi")
    assert not imports(gateway_only_python, "tensorflow")
    assert not imports(gateway_only_python, "ai_edge_litert")


@pytest.mark.slow
def test_it_serves_predictions_through_tf_serving(
    gateway_only_python: str, double: Process, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    assert_classifies_the_cat(
        gateway(
            logs / "gateway-only-venv.log",
            python=gateway_only_python,
            TF_SERVING_URL=f"{double.url}/v1/models/mobilenet:predict",
            TF_SERVING_GRPC_TARGET=double.grpc_target,
            MODEL_BASE_PATH=str(model_root),
        ),
        cat_jpeg,
    )


@pytest.mark.slow
def test_the_embedded_venv_has_litert_but_no_tensorflow(embedded_python: str) -> None:
    assert imports(embedded_python, "ai_edge_litert.interpreter")
    assert not imports(embedded_python, "tensorflow")


@pytest.mark.slow
def test_it_serves_predictions_from_the_tflite_copy(
    embedded_python: str, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    assert_classifies_the_cat(
        gateway(
            logs / "embedded-venv.log",
            python=embedded_python,
            INFERENCE_BACKEND="embedded",
            EMBEDDED_RUNTIME="tflite",
            MODEL_BASE_PATH=str(model_root),
        ),
        cat_jpeg,
    )


def assert_classifies_the_cat(process: Process, cat_jpeg: bytes) -> None:
    """Start the gateway from its own environment, once ready post the cat, expect a label."""
    process.ready = answers(f"{process.url}/health", 200)
    process.start()
    try:
        response = post_image(process.url, cat_jpeg, filename="cat.jpg")
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"]
    finally:
        process.stop()
