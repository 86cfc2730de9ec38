"""GET and PUT /admin/routing through the in-process app: keys, validation, the file, the effect."""

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import MODEL_NAME, FakeBackend, fake_settings, write_model_files

pytestmark = pytest.mark.anyio

KEY = "admin-key-1"
PHOTO = (Path(__file__).parents[1] / "cat.jpg").read_bytes()
ALL_VERSIONS = (
    'model_config_list { config { name: "mobilenet" base_path: "/models/mobilenet" '
    "model_version_policy { all {} } } }"
)
CANARY = {
    "models": {
        MODEL_NAME: {
            "split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
            "sticky_header": "X-User",
        }
    }
}


def served(root: Path) -> Path:
    """Versions 1 and 2 of mobilenet, both served (policy all)."""
    write_model_files(root, 1)
    write_model_files(root, 2)
    config = root / "models.config"
    config.write_text(ALL_VERSIONS)
    return config


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with API keys and a ROUTING_FILE; the client sends the key."""
    settings = fake_settings(
        tmp_path,
        api_keys=KEY,
        routing_file=tmp_path / "routing.json",
        model_config_file=served(tmp_path),
    )
    async with in_process(settings, FakeBackend(version=2)) as client:
        client.headers["X-API-Key"] = KEY
        yield client


def problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    detail: str = body["detail"]
    return detail


async def test_without_api_keys_the_admin_endpoints_are_403(tmp_path: Path) -> None:
    settings = fake_settings(write_model_files(tmp_path), routing_file=tmp_path / "routing.json")
    async with in_process(settings, FakeBackend()) as client:
        detail = problem(await client.get("/admin/routing"), 403, "admin_disabled")
        assert detail == "Set API_KEYS (or API_KEYS_FILE) to use the admin endpoints."
        problem(await client.put("/admin/routing", json=CANARY), 403, "admin_disabled")
    assert not (tmp_path / "routing.json").exists()


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer x"}])
async def test_without_a_valid_key_the_admin_endpoints_are_401(
    admin: httpx.AsyncClient, tmp_path: Path, headers: dict[str, str]
) -> None:
    del admin.headers["X-API-Key"]
    problem(await admin.get("/admin/routing", headers=headers), 401, "unauthorized")
    problem(await admin.put("/admin/routing", json=CANARY, headers=headers), 401, "unauthorized")
    assert not (tmp_path / "routing.json").exists()


async def test_a_bearer_key_is_accepted_too(admin: httpx.AsyncClient) -> None:
    del admin.headers["X-API-Key"]
    response = await admin.get("/admin/routing", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200


async def test_get_shows_the_routing_in_force_and_the_file_by_name(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = (await admin.get("/admin/routing")).json()
    assert body["routing"] == {"models": {}}
    assert body["routing_file"] == "routing.json"  # the name, never the server's path
    assert str(tmp_path) not in json.dumps(body)


async def test_put_replaces_the_routing_and_writes_the_file_atomically(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    path.write_text('{"models": {}}\n')
    path.chmod(0o640)
    before = path.stat().st_ino
    response = await admin.put("/admin/routing", json=CANARY)
    assert response.status_code == 200, response.text
    assert response.json()["routing"] == CANARY
    assert json.loads(path.read_text()) == CANARY
    after = path.stat()
    assert after.st_ino != before  # renamed over the old file, never rewritten in place
    assert after.st_mode & 0o777 == 0o640  # whoever could read it still can
    assert sorted(os.listdir(tmp_path)) == [
        "mobilenet",
        "models.config",
        "routing.json",
    ]
    shown = (await admin.get("/admin/routing")).json()
    assert shown["routing"] == CANARY
    assert "routing_file_error" not in shown


async def test_the_routing_put_takes_force_at_once(admin: httpx.AsyncClient) -> None:
    everyone_to_1 = {"models": {MODEL_NAME: {"split": [{"version": 1, "weight": 1}]}}}
    assert (await admin.put("/admin/routing", json=everyone_to_1)).status_code == 200
    response = await post_image_in_process(admin, PHOTO, "cat.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["routing"] == {"chosen_by": "split", "target": "mobilenet version 1"}
    assert body["model"]["version"] == "1"


async def test_an_invalid_routing_is_422_naming_each_problem_and_changes_nothing(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    assert (await admin.put("/admin/routing", json=CANARY)).status_code == 200
    broken = {
        "models": {
            MODEL_NAME: {
                "split": [{"version": 1, "wieght": 10}],
                "sticky_header": "not a header",
            }
        }
    }
    detail = problem(await admin.put("/admin/routing", json=broken), 422, "invalid_request")
    assert detail.startswith("The routing was not changed: ")
    assert "unknown key 'wieght' at models.mobilenet.split[0]" in detail
    assert "models.mobilenet.split[0].weight" in detail  # missing
    assert "models.mobilenet.sticky_header: not an HTTP header name" in detail
    assert (await admin.get("/admin/routing")).json()["routing"] == CANARY
    assert json.loads((tmp_path / "routing.json").read_text()) == CANARY


@pytest.mark.parametrize("body", [b"[]", b'"models"', b"{not json"])
async def test_a_body_that_is_not_a_json_object_is_422(
    admin: httpx.AsyncClient, body: bytes
) -> None:
    response = await admin.put(
        "/admin/routing", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await admin.get("/admin/routing")).json()["routing"] == {"models": {}}


async def test_a_routing_that_cannot_be_written_is_500_without_the_servers_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.json"
    path.mkdir()  # a folder where the file should be: the rename over it fails
    settings = fake_settings(
        tmp_path, api_keys=KEY, routing_file=path, model_config_file=served(tmp_path)
    )
    async with in_process(settings, FakeBackend(version=2)) as client:
        client.headers["X-API-Key"] = KEY
        response = await client.put("/admin/routing", json=CANARY)
        detail = problem(response, 500, "routing_not_saved")
        assert detail.startswith("The routing was not changed: ")
        assert str(tmp_path) not in response.text
        assert (await client.get("/admin/routing")).json()["routing"] == {"models": {}}
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
    os.rmdir(path)


async def test_a_routing_naming_models_not_served_is_422(admin: httpx.AsyncClient) -> None:
    routing = {"models": {"x\nCRITICAL forged": {}, MODEL_NAME: {}}}
    detail = problem(await admin.put("/admin/routing", json=routing), 422, "invalid_request")
    assert "models not served here" in detail
    assert (await admin.get("/admin/routing")).json()["routing"] == {"models": {}}


async def test_a_routing_larger_than_the_file_may_be_is_422(admin: httpx.AsyncClient) -> None:
    huge = {"models": {MODEL_NAME: {"split": [{"version": 2, "weight": 1}] * 60_000}}}
    detail = problem(await admin.put("/admin/routing", json=huge), 422, "invalid_request")
    assert "larger than" in detail


async def test_duplicate_keys_are_refused_as_the_file_reader_refuses_them(
    admin: httpx.AsyncClient,
) -> None:
    body = '{"models": {"' + MODEL_NAME + '": {}}, "models": {}}'
    response = await admin.put(
        "/admin/routing", content=body, headers={"Content-Type": "application/json"}
    )
    problem(response, 422, "invalid_request")
