"""`python -m gateway` with the arguments KServe gives a custom transformer serves as usual.

KServe appends `--model_name NAME --predictor_host HOST --http_port 8080` to the
container's args (gateway/command_line.py); here HOST is the TF Serving double's
REST address and the port a free one. The environment names another server and
another port, which the arguments must override.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_client import post_image
from processes import MODEL_NAME, Process, answers, free_port, gateway


@pytest.fixture(scope="module")
def kserve_gateway(double: Process, model_root: Path, logs: Path) -> Iterator[Process]:
    front = gateway(
        logs / "gateway-kserve.log",
        MODEL_BASE_PATH=str(model_root),
        # Overridden by the arguments: nothing listens there.
        TF_SERVING_URL="http://127.0.0.1:9",
        TF_SERVING_TRANSPORT="grpc",
    )
    port = free_port()
    front.args += [
        "--model_name",
        MODEL_NAME,
        "--predictor_host",
        double.url.removeprefix("http://"),
        "--http_port",
        str(port),
    ]
    front.url = f"http://127.0.0.1:{port}"
    front.ready = answers(f"{front.url}/health/ready", 200)
    yield front.start()
    front.stop()


def test_readiness_and_the_index_describe_the_predictor_over_rest(kserve_gateway: Process) -> None:
    ready = httpx.get(f"{kserve_gateway.url}/health/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["served_model"]["name"] == MODEL_NAME
    index = httpx.get(f"{kserve_gateway.url}/", timeout=10).json()
    described = (index["backend"], index["transport"], index["model"])
    assert described == ("tfserving", "rest", MODEL_NAME)
    assert httpx.get(f"{kserve_gateway.url}/health/live", timeout=10).status_code == 200


def test_a_prediction_goes_through_the_predictor_host(
    kserve_gateway: Process, double: Process, cat_jpeg: bytes
) -> None:
    before = httpx.get(f"{double.control_url}/stats", timeout=10).json()["predict_requests"]
    response = post_image(kserve_gateway.url, cat_jpeg)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["model"]["name"] == MODEL_NAME
    assert len(body["predictions"]) == 5
    after = httpx.get(f"{double.control_url}/stats", timeout=10).json()["predict_requests"]
    assert after == before + 1


def test_the_port_argument_wins_over_port(kserve_gateway: Process) -> None:
    environment_port = kserve_gateway.env["PORT"]  # where PORT alone would have put it
    assert kserve_gateway.url != f"http://127.0.0.1:{environment_port}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{environment_port}/health/live", timeout=5)
