"""The original API's fields and JSON types, in-process: what no backend can change.

test/e2e/test_original_contract.py holds the contract per real backend and
transport; these run the same checker on the app alone, including the
unhealthy answers that end-to-end need a gateway started without a model server.
"""

import httpx
import pytest

from api_client import post_image_in_process
from fake_backend import FakeBackend
from test_original_contract import assert_contract

pytestmark = pytest.mark.anyio


async def test_index(client: httpx.AsyncClient) -> None:
    body = assert_contract("GET /", await client.get("/"))
    assert body["model"] == "mobilenet"


async def test_health(client: httpx.AsyncClient) -> None:
    body = assert_contract("GET /health", await client.get("/health"))
    (entry,) = body["model"]["model_version_status"]
    assert entry == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


@pytest.mark.parametrize(
    ("state", "tf_serving"), [("UNREACHABLE", "disconnected"), ("LOADING", "connected")]
)
async def test_health_unhealthy(
    client: httpx.AsyncClient, backend: FakeBackend, state: str, tf_serving: str
) -> None:
    backend.ready, backend.unready_state = False, state
    body = assert_contract("GET /health unhealthy", await client.get("/health"))
    assert body["tf_serving"] == tf_serving
    assert body["error"] == f"version 1 is {state}"


async def test_predict(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    response = await post_image_in_process(client, cat_jpeg, "cat.jpg")
    body = assert_contract("POST /predict", response)
    assert body["original_size"] == "451x300"
    assert body["model"] == {**body["model"], "name": "mobilenet", "version": "1"}


async def test_metrics(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    assert (await post_image_in_process(client, cat_jpeg)).status_code == 200
    body = assert_contract("GET /metrics", await client.get("/metrics"))
    assert (body["model"], body["model_version"]) == ("mobilenet", "1")


async def test_model_metadata(client: httpx.AsyncClient) -> None:
    body = assert_contract("GET /model", await client.get("/model"))
    assert body["model_spec"] == {"name": "mobilenet", "signature_name": "", "version": "1"}
