"""gateway/requirements.txt alone is enough to serve: the gateway image installs nothing else."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from api_client import post_image
from processes import ROOT, Process, answers, gateway


@pytest.fixture(scope="module")
def gateway_only_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh virtual environment with gateway/requirements.txt and nothing more."""
    env_dir = tmp_path_factory.mktemp("gateway-venv")
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
            str(ROOT / "gateway" / "requirements.txt"),
        ],
        check=True,
        timeout=900,
    )
    return python


@pytest.mark.slow
def test_the_gateway_venv_has_no_tensorflow(gateway_only_python: str) -> None:
    probe = subprocess.run(
        [gateway_only_python, "-c", "import tensorflow"], capture_output=True, check=False
    )
    assert probe.returncode != 0
    assert sys.executable != gateway_only_python


@pytest.mark.slow
def test_it_serves_predictions_through_tf_serving(
    gateway_only_python: str, double: Process, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    process = gateway(
        logs / "gateway-only-venv.log",
        python=gateway_only_python,
        TF_SERVING_URL=f"{double.url}/v1/models/mobilenet:predict",
        TF_SERVING_GRPC_TARGET=double.grpc_target,
        MODEL_BASE_PATH=str(model_root),
    )
    process.ready = answers(f"{process.url}/health", 200)
    process.start()
    try:
        response = post_image(process.url, cat_jpeg, filename="cat.jpg")
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"]
    finally:
        process.stop()
