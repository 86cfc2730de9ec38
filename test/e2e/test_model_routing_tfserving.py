"""Several models, versions and labels from one model config file, served by TF Serving.

The TF Serving double reads the same ModelServerConfig as the gateway
(`--model_config_file` and MODEL_CONFIG_FILE): mobilenet versions 1 to 3 with
labels stable=1 and canary=2, and EfficientNet-Lite0 with real weights. Each
check runs over gRPC and over REST (TF_SERVING_TRANSPORT): the version that
answers must be the one asked for, whichever transport carries the request.
The in-process twin is test_model_routing_embedded.py.
"""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from processes import Process, answers, gateway_for, wait_until
from routing_helpers import (
    MOBILENET,
    ServedModel,
    predict,
    start_served,
    version_states,
    wait_for_states,
    write_config,
)

LITE = "efficientnet_lite0"
EVERY_VERSION = {
    (MOBILENET, 3): "AVAILABLE",
    (MOBILENET, 2): "AVAILABLE",
    (MOBILENET, 1): "AVAILABLE",
    (LITE, 1): "AVAILABLE",
}


def served_models(models: Path, canary: int) -> tuple[ServedModel, ServedModel]:
    mobilenet = ServedModel(
        MOBILENET, models / MOBILENET, (1, 2, 3), {"stable": 1, "canary": canary}
    )
    return mobilenet, ServedModel(LITE, models / LITE)


@pytest.fixture(scope="module")
def config(
    model_root: Path, efficientnet_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """mobilenet 1-4 on disk (4 outside the policy: not served), EfficientNet-Lite0 1."""
    models = tmp_path_factory.mktemp("routing-tfs") / "models"
    for version in (1, 2, 3, 4):
        shutil.copytree(model_root / MOBILENET / "1", models / MOBILENET / str(version))
    shutil.copytree(efficientnet_model_dir / "1", models / LITE / "1")
    path = models.parent / "models.config"
    write_config(path, *served_models(models, canary=2))
    return path


@pytest.fixture(scope="module")
def served(config: Path, logs: Path) -> Iterator[tuple[Process, Process]]:
    """The double and a gRPC gateway; the REST gateway below shares the double."""
    double, front = start_served(config.parent / "models" / MOBILENET, config, logs, "routing")
    yield double, front
    front.stop()
    double.stop()


@pytest.fixture(scope="module", params=["grpc", "rest"])
def front(
    request: pytest.FixtureRequest, served: tuple[Process, Process], config: Path, logs: Path
) -> Iterator[httpx.Client]:
    """A keep-alive client to a gateway predicting over `request.param`, every version up."""
    double, grpc_front = served
    process = grpc_front
    if request.param == "rest":
        process = gateway_for(
            double,
            config.parent / "models",
            logs / "routing-gateway-rest.log",
            TF_SERVING_TRANSPORT="rest",
            MODEL_CONFIG_FILE=str(config),
            MODEL_CONFIG_POLL_SECONDS="0.2",
            STATUS_POLL_SECONDS="0.2",
        )
        process.ready = answers(f"{process.url}/health/live", 200)
        process.start()
    with httpx.Client(base_url=process.url, timeout=60) as client:
        try:
            wait_for_states(client, EVERY_VERSION)
            yield client
        finally:
            if process is not grpc_front:
                process.stop()


def test_models_lists_every_model_version_state_label_and_signature(
    front: httpx.Client,
) -> None:
    body = front.get("/models").json()
    assert body["default_model"] == MOBILENET
    assert body["models_from"] == "MODEL_CONFIG_FILE"
    by_name = {model["name"]: model for model in body["models"]}
    assert list(by_name) == [MOBILENET, LITE]
    mobilenet = by_name[MOBILENET]
    assert mobilenet["labels"] == {"stable": 1, "canary": 2}
    assert [v["version"] for v in mobilenet["versions"]] == [3, 2, 1]  # 4 is not in the policy
    assert {v["version"]: v["labels"] for v in mobilenet["versions"]} == {
        3: [],
        2: ["canary"],
        1: ["stable"],
    }
    for version in mobilenet["versions"]:
        assert version["state"] == "AVAILABLE"
        assert version["weights"] == "untrained"
        # From TF Serving's metadata: the signature the version really serves.
        assert version["signature"]["inputs"] == {
            "images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}
        }
        assert version["signature"]["outputs"] == {
            "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
        }
    (lite,) = by_name[LITE]["versions"]
    assert (lite["version"], lite["state"], lite["labels"]) == (1, "AVAILABLE", [])
    assert lite["weights"] == "trained"
    assert lite["weights_source"] == "efficientnet-lite0"
    assert lite["signature"]["outputs"] == {
        "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
    }


def test_health_model_and_metrics_describe_the_stable_version_not_the_newest(
    front: httpx.Client,
) -> None:
    # Requests naming nothing are answered by `stable` (1); version 3 is newer.
    health = front.get("/health").json()
    assert health["served_model"]["version"] == 1
    # /metrics asks nobody: it names the version the lane's watcher has learned.
    wait_until(
        lambda: front.get("/metrics").json()["model_version"] == "1",
        timeout=10,
        what="/metrics to name the stable version",
    )
    assert front.get("/model").json()["model_spec"]["version"] == "1"


@pytest.mark.parametrize(
    ("params", "model", "version", "label", "chosen_by"),
    [
        # Naming nothing, without a split: the stable label (docs/rollouts.md, section 1),
        # not TF Serving's newest version, so a version added to the policy gets no
        # traffic before a label or the split sends it some.
        ({}, MOBILENET, 1, "stable", "default"),
        ({"version": 3}, MOBILENET, 3, None, "request"),
        ({"version": 2}, MOBILENET, 2, None, "request"),
        ({"label": "stable"}, MOBILENET, 1, "stable", "request"),
        ({"label": "canary"}, MOBILENET, 2, "canary", "request"),
        # A model without labels: TF Serving's default, its newest (here only) version.
        ({"model": LITE}, LITE, 1, None, "default"),
        ({"model": LITE, "version": 1}, LITE, 1, None, "request"),
    ],
)
def test_a_request_is_answered_by_the_model_and_version_it_names(
    front: httpx.Client,
    cat_jpeg: bytes,
    params: dict[str, int | str],
    model: str,
    version: int,
    label: str | None,
    chosen_by: str,
) -> None:
    response = predict(front, cat_jpeg, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"]["name"], body["model"]["version"]) == (model, str(version))
    assert response.headers["X-Model-Version"] == str(version)
    assert body["model"]["backend"] == "tfserving"
    assert body["model"].get("label") == label
    assert body["routing"]["chosen_by"] == chosen_by
    if model == LITE:
        assert body["predictions"][0]["class_id"] == 286  # Egyptian cat: real weights answered


@pytest.mark.parametrize(
    ("params", "code", "names"),
    [
        ({"model": "resnet"}, "unknown_model", [MOBILENET, LITE]),
        ({"version": 4}, "unknown_version", ["1, 2, 3"]),
        ({"version": 9}, "unknown_version", ["1, 2, 3"]),
        ({"label": "beta"}, "unknown_version", ["canary", "stable"]),
        ({"model": LITE, "version": 2}, "unknown_version", ["served versions: 1."]),
        ({"model": LITE, "label": "stable"}, "unknown_version", ["none"]),
    ],
)
def test_what_is_not_served_is_a_404_naming_what_is(
    front: httpx.Client,
    cat_jpeg: bytes,
    params: dict[str, int | str],
    code: str,
    names: list[str],
) -> None:
    response = predict(front, cat_jpeg, **params)
    assert response.status_code == 404, response.text
    problem = response.json()
    assert problem["code"] == code
    for name in names:
        assert name in problem["detail"]


def test_a_label_moved_in_the_config_file_is_followed_without_a_restart(
    front: httpx.Client, config: Path, served: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    models = config.parent / "models"
    double, _ = served

    def canary_answers(version: int) -> bool:
        return predict(front, cat_jpeg, label="canary").json()["model"]["version"] == str(version)

    try:
        write_config(config, *served_models(models, canary=3))
        wait_until(lambda: canary_answers(3), timeout=15, what="the canary label on version 3")
        assert {v: s for (m, v), s in version_states(front).items() if m == MOBILENET} == {
            3: "AVAILABLE",
            2: "AVAILABLE",
            1: "AVAILABLE",
        }
        labels = front.get("/models").json()["models"][0]["labels"]
        assert labels == {"stable": 1, "canary": 3}
        # TF Serving moves a label only onto an AVAILABLE version: version 4 is not
        # served, so this config is refused whole and the label stays where it was.
        refusals = _refusals(double)
        write_config(config, *served_models(models, canary=4))
        wait_until(lambda: _refusals(double) > refusals, timeout=15, what="the config refused")
        assert canary_answers(3)
    finally:
        write_config(config, *served_models(models, canary=2))
    wait_until(lambda: canary_answers(2), timeout=15, what="the canary label back on version 2")


def _refusals(double: Process) -> int:
    """How many times the double has logged refusing a reloaded config."""
    log = double.log_path.read_text(errors="replace")
    return len(re.findall(r"failed to ReloadConfig", log))
