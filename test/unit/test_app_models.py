"""GET /models and POST /predict ?model, ?version, ?label through the in-process app.

MODEL_CONFIG_FILE serves two models: mobilenet (versions 1 and 2, labels stable
and canary) and resnet (version 4); every lane's backend is a FakeBackend.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import MODEL_NAME, UNTRAINED, FakeBackend, fake_settings, write_model_files

pytestmark = pytest.mark.anyio

PHOTO = (Path(__file__).parents[1] / "cat.jpg").read_bytes()
CONFIG = """model_config_list {
  config {
    name: "mobilenet" base_path: "/models/mobilenet" model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "resnet" base_path: "/models/resnet" model_platform: "tensorflow" }
}
"""


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(version=2)


@pytest.fixture
async def client(tmp_path: Path, backend: FakeBackend) -> AsyncIterator[httpx.AsyncClient]:
    write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 2)
    (tmp_path / "resnet" / "4").mkdir(parents=True)
    config = tmp_path / "models.config"
    config.write_text(CONFIG)
    settings = fake_settings(tmp_path, model_config_file=config)
    async with in_process(settings, backend) as client:
        yield client


async def predict(client: httpx.AsyncClient, **params: int | str) -> httpx.Response:
    return await post_image_in_process(client, PHOTO, "cat.jpg", **params)


def problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    detail: str = body["detail"]
    return detail


async def test_without_a_choice_the_stable_label_answers(client: httpx.AsyncClient) -> None:
    response = await predict(client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"]["name"], body["model"]["version"]) == (MODEL_NAME, "1")
    assert body["model"]["label"] == "stable"
    assert body["routing"] == {"chosen_by": "default", "target": "mobilenet label 'stable'"}
    assert response.headers["X-Model-Version"] == "1"


async def test_a_model_without_labels_defaults_to_its_newest_version(
    client: httpx.AsyncClient,
) -> None:
    response = await predict(client, model="resnet")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "label" not in body["model"]
    assert body["routing"] == {"chosen_by": "default", "target": "resnet"}


async def test_a_version_is_answered_by_that_version(client: httpx.AsyncClient) -> None:
    response = await predict(client, version=1)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == "1"
    assert response.headers["X-Model-Version"] == "1"
    assert body["routing"] == {"chosen_by": "request", "target": "mobilenet version 1"}


@pytest.mark.parametrize(("label", "version"), [("stable", "1"), ("canary", "2")])
async def test_a_label_is_answered_by_the_version_it_names(
    client: httpx.AsyncClient, label: str, version: str
) -> None:
    response = await predict(client, label=label)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"]["version"], body["model"]["label"]) == (version, label)
    assert body["routing"] == {"chosen_by": "request", "target": f"mobilenet label {label!r}"}


async def test_another_model_is_answered_by_its_own_lane(client: httpx.AsyncClient) -> None:
    response = await predict(client, model="resnet")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"]["name"], body["model"]["version"]) == ("resnet", "4")


async def test_a_model_without_a_version_shares_its_newest_versions_lane(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    """In-process a lane is a loaded model: one version is loaded once, as labels do."""
    assert (await predict(client, model="resnet", version=4)).status_code == 200
    assert (await predict(client, model="resnet")).status_code == 200
    resnet_lanes = [target for target, _ in backend.lane_backends if target.model == "resnet"]
    assert len(resnet_lanes) == 1, f"version 4 loaded by {len(resnet_lanes)} lanes: {resnet_lanes}"


async def test_an_unknown_model_is_404_naming_the_models(client: httpx.AsyncClient) -> None:
    detail = problem(await predict(client, model="inception"), 404, "unknown_model")
    assert detail == "Model 'inception' is not served here; served models: mobilenet, resnet."


async def test_an_unknown_version_is_404_naming_the_versions(client: httpx.AsyncClient) -> None:
    detail = problem(await predict(client, version=7), 404, "unknown_version")
    assert detail == "Model 'mobilenet' has no version 7 served; served versions: 1, 2."


async def test_an_unknown_label_is_404_naming_the_labels(client: httpx.AsyncClient) -> None:
    detail = problem(await predict(client, label="beta"), 404, "unknown_version")
    assert detail == "Model 'mobilenet' has no version label 'beta'; its labels: canary, stable."


async def test_a_version_and_a_label_together_are_refused(client: httpx.AsyncClient) -> None:
    detail = problem(await predict(client, version=1, label="stable"), 422, "invalid_request")
    assert detail == "Give ?version= or ?label=, not both."


@pytest.mark.parametrize(
    "params",
    [{"label": "a/b"}, {"model": "../etc"}, {"version": 0}, {"version": "one"}],
)
async def test_malformed_choices_are_422(
    client: httpx.AsyncClient, params: dict[str, int | str]
) -> None:
    response = await predict(client, **params)
    assert response.status_code == 422, response.text
    assert response.json()["status"] == 422


async def test_models_lists_every_model_version_state_and_label(
    client: httpx.AsyncClient,
) -> None:
    for params in ({"version": 1}, {"version": 2}, {"model": "resnet"}):
        assert (await predict(client, **params)).status_code == 200  # every lane open
    response = await client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert (body["default_model"], body["models_from"]) == (MODEL_NAME, "MODEL_CONFIG_FILE")
    assert "config_error" not in body
    mobilenet, resnet = body["models"]
    assert {key: mobilenet[key] for key in ("name", "default", "version_policy", "labels")} == {
        "name": MODEL_NAME,
        "default": True,
        "version_policy": "all versions",
        "labels": {"stable": 1, "canary": 2},
    }
    assert [(v["version"], v["state"], v["labels"]) for v in mobilenet["versions"]] == [
        (2, "AVAILABLE", ["canary"]),
        (1, "AVAILABLE", ["stable"]),
    ]
    newest = mobilenet["versions"][0]
    assert (newest["trained"], newest["weights_source"]) == (False, UNTRAINED["source"])
    assert newest["signature"] == {
        "name": "serving_default",
        "inputs": {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 1001]}},
    }
    assert {key: resnet[key] for key in ("name", "default", "version_policy", "labels")} == {
        "name": "resnet",
        "default": False,
        "version_policy": "the latest 1 version(s)",
        "labels": {},
    }
    assert [(v["version"], v["state"]) for v in resnet["versions"]] == [(4, "AVAILABLE")]
    # resnet's folder has no labels or provenance: known as unknown, not an error.
    assert resnet["versions"][0]["trained"] is None


async def test_models_without_a_config_file_is_model_name_alone(
    tmp_path: Path,
) -> None:
    write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 3)
    async with in_process(fake_settings(tmp_path), FakeBackend(version=3)) as client:
        body = (await client.get("/models")).json()
    assert (body["default_model"], body["models_from"]) == (MODEL_NAME, "MODEL_NAME")
    [only] = body["models"]
    assert (only["name"], only["version_policy"], only["labels"]) == (
        MODEL_NAME,
        "the latest 1 version(s)",
        {},
    )
    assert [(v["version"], v["state"]) for v in only["versions"]] == [(3, "AVAILABLE")]


async def test_models_reports_a_config_file_that_was_not_applied(tmp_path: Path) -> None:
    write_model_files(tmp_path, 1)
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "mobilenet" base_path: "/m" } }')
    settings = fake_settings(tmp_path, model_config_file=config, model_config_poll_seconds=0.01)
    async with in_process(settings, FakeBackend()) as client:
        config.write_text("model_config_list { config { name: ")
        body = (await client.get("/models")).json()
        for _ in range(1000):  # the fleet's watcher re-reads the file every 10 ms
            if "config_error" in body:
                break
            await asyncio.sleep(0.01)
            body = (await client.get("/models")).json()
    assert body["config_error"].startswith("MODEL_CONFIG_FILE was not applied (not a text-format")
    assert body["config_error"].endswith("the last one read stays")
    assert [model["name"] for model in body["models"]] == [MODEL_NAME]
