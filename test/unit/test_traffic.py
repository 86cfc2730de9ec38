"""Which target a request goes to (request, split, default; sticky), and what its answer records."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from api_client import in_process, post_image_in_process
from fake_backend import MODEL_NAME, FakeBackend, fake_settings, write_model_files
from gateway.model_config import ModelEntry, ModelSet
from gateway.target import Target
from gateway.traffic import Traffic
from gateway.traffic_split import choose, parse_routing

PHOTO = (Path(__file__).parents[1] / "cat.jpg").read_bytes()
SPLIT = {
    "models": {
        MODEL_NAME: {
            "split": [{"label": "stable", "weight": 50}, {"label": "canary", "weight": 50}],
            "sticky_header": "X-User",
        },
        "resnet": {"split": [{"version": 3, "weight": 1}]},
    }
}
ALL_VERSIONS = """model_config_list { config {
  name: "mobilenet" base_path: "/models/mobilenet" model_version_policy { all {} }
  version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }
} }"""


def model_set(**labels: int) -> ModelSet:
    """mobilenet (with `labels`) and resnet, as a config file would list them."""
    mobilenet = ModelEntry(MODEL_NAME, Path("models/mobilenet"), labels=labels)
    resnet = ModelEntry("resnet", Path("models/resnet"))
    return ModelSet({MODEL_NAME: mobilenet, "resnet": resnet}, "MODEL_CONFIG_FILE")


MODELS = model_set()


def traffic_with(root: Path, routing: object) -> Traffic:
    path = root / "routing.json"
    path.write_text(json.dumps(routing))
    return Traffic(fake_settings(root, routing_file=path))


def test_a_request_that_names_a_version_or_label_gets_it(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, SPLIT)
    for asked in (Target(MODEL_NAME, version=7), Target(MODEL_NAME, label="canary")):
        routed = traffic.route(asked, {"X-User": "alice"}, MODELS)
        assert (routed.target, routed.chosen_by) == (asked, "request")


def test_a_model_without_a_split_goes_to_its_default(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, {"models": {}})
    routed = traffic.route(Target(MODEL_NAME), {"X-User": "alice"}, MODELS)
    assert (routed.target, routed.chosen_by) == (Target(MODEL_NAME), "default")


def test_the_default_of_a_model_with_a_stable_label_is_that_label(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, {"models": {}})
    routed = traffic.route(Target(MODEL_NAME), {}, model_set(stable=1, canary=2))
    assert (routed.target, routed.chosen_by) == (Target(MODEL_NAME, label="stable"), "default")
    # A model without one: its default lane (the newest version its policy serves).
    assert traffic.route(Target("resnet"), {}, MODELS).target == Target("resnet")


def test_each_model_follows_its_own_split(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, SPLIT)
    routed = traffic.route(Target("resnet"), {}, MODELS)
    assert (routed.target, routed.chosen_by) == (Target("resnet", version=3), "split")
    assert traffic.route(Target("inception"), {}, MODELS).chosen_by == "default"


def test_the_split_is_sticky_by_the_header_it_names(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, SPLIT)
    split = traffic.routing.current().split_for(MODEL_NAME)
    assert split is not None
    chosen = {}
    for user in (f"user-{n}" for n in range(200)):
        first = traffic.route(Target(MODEL_NAME), {"X-User": user}, MODELS)
        again = [traffic.route(Target(MODEL_NAME), {"X-User": user}, MODELS) for _ in range(5)]
        assert {routed.target for routed in again} == {first.target}
        assert first.target == choose(split, user)  # the same point in every replica
        assert first.chosen_by == "split"
        chosen[user] = first.target.label
    assert set(chosen.values()) == {"stable", "canary"}  # 50/50: 200 users land on both


def test_without_the_sticky_header_requests_spread(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, SPLIT)
    labels = {traffic.route(Target(MODEL_NAME), {}, MODELS).target.label for _ in range(200)}
    assert labels == {"stable", "canary"}


def test_a_broken_routing_file_keeps_the_last_good_split(tmp_path: Path) -> None:
    traffic = traffic_with(tmp_path, SPLIT)
    (tmp_path / "routing.json").write_text('{"models": {"mobilenet": {"split": "all"}}}')
    routed = traffic.route(Target("resnet"), {}, MODELS)
    assert routed.target == Target("resnet", version=3)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 2)
    config = tmp_path / "models.config"
    config.write_text(ALL_VERSIONS)
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(SPLIT))
    settings = fake_settings(tmp_path, model_config_file=config, routing_file=routing)
    async with in_process(settings, FakeBackend(version=2)) as client:
        yield client


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.anyio
async def test_a_split_request_answers_from_the_chosen_label_and_is_counted(
    client: httpx.AsyncClient,
) -> None:
    split = parse_routing(json.dumps(SPLIT)).split_for(MODEL_NAME)
    assert split is not None
    user = "user-7"
    expected = choose(split, user)
    version = "1" if expected.label == "stable" else "2"
    labels = {"model": MODEL_NAME, "version": version, "label": str(expected.label)}
    before = count("gateway_predictions_total", **labels)
    response = await client.post(
        "/predict", files={"file": ("cat.jpg", PHOTO)}, headers={"X-User": user}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["routing"] == {"chosen_by": "split", "target": expected.describe()}
    assert (body["model"]["version"], body["model"]["label"]) == (version, expected.label)
    assert count("gateway_predictions_total", **labels) == before + 1


@pytest.mark.anyio
async def test_a_shadowed_request_is_compared_and_its_answer_unchanged(tmp_path: Path) -> None:
    write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 2)
    config = tmp_path / "models.config"
    config.write_text(ALL_VERSIONS)
    routing = tmp_path / "routing.json"
    shadow = {"models": {MODEL_NAME: {"shadow": {"version": 2, "fraction": 1}}}}
    routing.write_text(json.dumps(shadow))
    labels = {
        "model": MODEL_NAME,
        "primary_version": "1",
        "shadow_version": "2",
        "top1": "agree",
    }
    before = count("gateway_shadow_comparisons_total", **labels)
    settings = fake_settings(tmp_path, model_config_file=config, routing_file=routing)
    async with in_process(settings, FakeBackend(version=2)) as client:
        response = await post_image_in_process(client, PHOTO, "cat.jpg")
        assert response.status_code == 200, response.text
        # The default is the stable label (version 1); the copy goes to version 2.
        assert response.json()["routing"] == {
            "chosen_by": "default",
            "target": "mobilenet label 'stable'",
        }
        assert response.json()["model"]["version"] == "1"
        deadline = asyncio.get_running_loop().time() + 10.0
        while count("gateway_shadow_comparisons_total", **labels) == before:
            assert asyncio.get_running_loop().time() < deadline, "no shadow comparison"
            await asyncio.sleep(0.01)  # the shadow runs in the background, unobservable
    assert count("gateway_shadow_comparisons_total", **labels) == before + 1


@pytest.mark.anyio
async def test_a_split_naming_what_is_not_served_falls_back_to_the_default(
    tmp_path: Path,
) -> None:
    write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 2)
    config = tmp_path / "models.config"
    config.write_text(ALL_VERSIONS)
    routing = tmp_path / "routing.json"
    routing.write_text(
        json.dumps({"models": {MODEL_NAME: {"split": [{"version": 9, "weight": 1}]}}})
    )
    settings = fake_settings(tmp_path, model_config_file=config, routing_file=routing)
    async with in_process(settings, FakeBackend(version=2)) as client:
        response = await post_image_in_process(client, PHOTO, "cat.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["routing"] == {
        "chosen_by": "split-fallback",
        "target": "mobilenet label 'stable'",
        "detail": "Model 'mobilenet' has no version 9 served; served versions: 1, 2.",
    }
    assert body["model"]["version"] == "1"
