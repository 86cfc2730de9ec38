"""Several models, versions and labels from one model config file, served in-process."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_client import post_image
from processes import Process, answers, gateway, wait_until


def model_config(models: Path, canary: int) -> str:
    """Text-format ModelServerConfig, as TF Serving's --model_config_file reads it."""
    return f"""
model_config_list {{
  config {{
    name: "mobilenet"
    base_path: "{models / "mobilenet"}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 versions: 3 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: {canary} }}
  }}
  config {{
    name: "efficientnet_lite0"
    base_path: "{models / "efficientnet_lite0"}"
    model_platform: "tensorflow"
  }}
}}
"""


@pytest.fixture(scope="module")
def served(
    model_root: Path,
    efficientnet_model_dir: Path,
    logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Process, Path]]:
    """A gateway serving mobilenet 1-3 (labels stable=1, canary=2) and EfficientNet-Lite0."""
    models = tmp_path_factory.mktemp("routing") / "models"
    for version in (1, 2, 3, 4):  # 4 is on disk but not in the policy: not served
        shutil.copytree(model_root / "mobilenet" / "1", models / "mobilenet" / str(version))
    shutil.copytree(efficientnet_model_dir / "1", models / "efficientnet_lite0" / "1")
    config = models.parent / "models.config"
    config.write_text(model_config(models, canary=2))
    front = gateway(
        logs / "gateway-routing-embedded.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(models),
        MODEL_CONFIG_FILE=str(config),
        MODEL_CONFIG_POLL_SECONDS="0.2",
        STATUS_POLL_SECONDS="0.2",
    )
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    try:
        wait_until(lambda: all_available(front.url), timeout=60, what="every version loaded")
    except AssertionError:
        body = httpx.get(f"{front.url}/models").text
        front.stop()
        raise AssertionError(body + front.log_tail()) from None
    yield front, config
    front.stop()


def all_available(url: str) -> bool:
    body = httpx.get(f"{url}/models").json()
    states = [v["state"] for model in body["models"] for v in model["versions"]]
    return len(states) == 4 and set(states) == {"AVAILABLE"}


def test_models_lists_every_model_version_state_label_and_signature(
    served: tuple[Process, Path],
) -> None:
    front, _ = served
    body = httpx.get(f"{front.url}/models").json()
    assert body["default_model"] == "mobilenet"
    assert body["models_from"] == "MODEL_CONFIG_FILE"
    by_name = {model["name"]: model for model in body["models"]}
    assert list(by_name) == ["mobilenet", "efficientnet_lite0"]
    mobilenet = by_name["mobilenet"]
    assert mobilenet["labels"] == {"stable": 1, "canary": 2}
    assert [v["version"] for v in mobilenet["versions"]] == [3, 2, 1]
    assert {v["version"]: v["labels"] for v in mobilenet["versions"]} == {
        3: [],
        2: ["canary"],
        1: ["stable"],
    }
    for version in mobilenet["versions"]:
        assert version["weights"] == "untrained"
        assert version["signature"]["outputs"] == {
            "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
        }
    (lite,) = by_name["efficientnet_lite0"]["versions"]
    assert lite["weights"] == "trained"
    assert lite["weights_source"] == "efficientnet-lite0"


def test_health_model_and_metrics_describe_the_stable_version_not_the_newest(
    served: tuple[Process, Path],
) -> None:
    front, _ = served
    # Requests naming nothing are answered by `stable` (1); version 3 is newer.
    assert httpx.get(f"{front.url}/health").json()["served_model"]["version"] == 1
    assert httpx.get(f"{front.url}/metrics").json()["model_version"] == "1"
    assert httpx.get(f"{front.url}/model").json()["model_spec"]["version"] == "1"


@pytest.mark.parametrize(
    ("params", "model", "version"),
    [
        ({}, "mobilenet", "1"),  # naming nothing follows the `stable` label, not the newest
        ({"version": 2}, "mobilenet", "2"),
        ({"version": 1}, "mobilenet", "1"),
        ({"label": "stable"}, "mobilenet", "1"),
        ({"label": "canary"}, "mobilenet", "2"),
        ({"model": "efficientnet_lite0"}, "efficientnet_lite0", "1"),
    ],
)
def test_a_request_is_answered_by_the_model_and_version_it_names(
    served: tuple[Process, Path],
    cat_jpeg: bytes,
    params: dict[str, int | str],
    model: str,
    version: str,
) -> None:
    front, _ = served
    response = post_image(front.url, cat_jpeg, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"]["name"], body["model"]["version"]) == (model, version)
    if "label" in params:
        assert body["model"]["label"] == params["label"]
    if model == "efficientnet_lite0":
        assert body["predictions"][0]["class_id"] == 286  # Egyptian cat: real weights answered


@pytest.mark.parametrize(
    ("params", "code", "names"),
    [
        ({"model": "resnet"}, "unknown_model", ["mobilenet", "efficientnet_lite0"]),
        ({"version": 4}, "unknown_version", ["1, 2, 3"]),
        ({"version": 9}, "unknown_version", ["1, 2, 3"]),
        ({"label": "beta"}, "unknown_version", ["canary", "stable"]),
        ({"model": "efficientnet_lite0", "version": 2}, "unknown_version", ["1"]),
    ],
)
def test_what_is_not_served_is_a_404_naming_what_is(
    served: tuple[Process, Path],
    cat_jpeg: bytes,
    params: dict[str, int | str],
    code: str,
    names: list[str],
) -> None:
    front, _ = served
    response = post_image(front.url, cat_jpeg, **params)
    assert response.status_code == 404, response.text
    problem = response.json()
    assert problem["code"] == code
    for name in names:
        assert name in problem["detail"]


def test_a_version_and_a_label_together_are_refused(
    served: tuple[Process, Path], cat_jpeg: bytes
) -> None:
    front, _ = served
    response = post_image(front.url, cat_jpeg, version=1, label="stable")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_label_moved_in_the_config_file_is_followed_without_a_restart(
    served: tuple[Process, Path], cat_jpeg: bytes
) -> None:
    front, config = served
    models = config.parent / "models"
    config.write_text(model_config(models, canary=3))

    def canary_is_three() -> bool:
        return post_image(front.url, cat_jpeg, label="canary").json()["model"]["version"] == "3"

    try:
        wait_until(canary_is_three, timeout=10, what="the canary label to name version 3")
    finally:
        config.write_text(model_config(models, canary=2))
    wait_until(
        lambda: post_image(front.url, cat_jpeg, label="canary").json()["model"]["version"] == "2",
        timeout=10,
        what="the canary label back on version 2",
    )
