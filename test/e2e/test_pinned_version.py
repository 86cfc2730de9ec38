"""TF_SERVING_URL naming a version or a label, end to end against the TF Serving double.

The double serves one version at a time (TF Serving's default `latest` policy)
and has no model config file, so no label exists in it: versions are tested
while they come and go, labels by the refusal TF Serving gives an unknown one.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processes import MODEL_NAME, Process, gateway, tfserving_double, wait_until


def pinned_gateway(
    double: Process, models: Path, selector: str, transport: str, log: Path
) -> Process:
    """A gateway whose TF_SERVING_URL is `.../v1/models/mobilenet{selector}:predict`."""
    return gateway(
        log,
        INFERENCE_BACKEND="tfserving",
        TF_SERVING_URL=f"{double.url}/v1/models/{MODEL_NAME}{selector}:predict",
        TF_SERVING_GRPC_TARGET=double.grpc_target,
        TF_SERVING_TRANSPORT=transport,
        MODEL_BASE_PATH=str(models),
        STATUS_POLL_SECONDS="0.5",
    )


def health(front: Process) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{front.url}/health", timeout=10)
    return response.status_code, response.json()


def health_once(front: Process, status_code: int, timeout: float) -> dict[str, Any]:
    """The /health body, once /health answers `status_code`."""
    wait_until(lambda: health(front)[0] == status_code, timeout, f"/health {status_code}")
    code, body = health(front)
    assert code == status_code, body
    return body


def predict(front: Process, image: bytes) -> tuple[int, dict[str, Any]]:
    response = httpx.post(f"{front.url}/predict", files={"file": ("cat.jpg", image)}, timeout=30)
    return response.status_code, response.json()


def publish(model_dir: Path, source: int, target: int) -> None:
    """Copy a version aside and rename it into place, as export_model.py writes one."""
    staging = model_dir / f".tmp-{target}"
    shutil.copytree(model_dir / str(source), staging)
    staging.rename(model_dir / str(target))


TRANSPORTS = ("grpc", "rest")


@pytest.fixture
def rollout(
    model_root: Path, logs: Path, tmp_path: Path
) -> Iterator[tuple[Path, dict[tuple[str, int], Process]]]:
    """A double over a copy of version 1, polling every second, and gateways in front of it.

    One gateway per transport and pinned version (1 and 2), keyed by (transport, version).
    """
    models = tmp_path / "models"
    shutil.copytree(model_root / MODEL_NAME / "1", models / MODEL_NAME / "1")
    double = tfserving_double(
        models / MODEL_NAME, logs / "pinned-double.log", file_system_poll_wait_seconds="1"
    ).start()
    fronts = {
        (transport, n): pinned_gateway(
            double, models, f"/versions/{n}", transport, logs / f"pinned-{transport}-{n}.log"
        )
        for transport in TRANSPORTS
        for n in (1, 2)
    }
    try:
        for front in fronts.values():
            front.start()
        yield models / MODEL_NAME, fronts
    finally:
        for front in fronts.values():
            front.stop()
        double.stop()


def test_a_pinned_version_is_served_alone_and_never_swapped_for_another(
    rollout: tuple[Path, dict[tuple[str, int], Process]], cat_jpeg: bytes
) -> None:
    model_dir, fronts = rollout

    for transport in TRANSPORTS:
        one, two = fronts[transport, 1], fronts[transport, 2]
        body = health_once(one, 200, timeout=30)
        assert body["served_model"]["version"] == 1
        # The status of the pinned version alone: GET /v1/models/mobilenet/versions/1.
        versions = [(s["version"], s["state"]) for s in body["model"]["model_version_status"]]
        assert versions == [("1", "AVAILABLE")]
        code, answer = predict(one, cat_jpeg)
        assert (code, answer["model"]["version"]) == (200, "1"), (transport, answer)

        code, body = health(two)
        assert code == 503, transport
        assert body["error"] == (
            "TF_SERVING_URL pins version 2: Could not find version 2 of model mobilenet"
        )
        code, answer = predict(two, cat_jpeg)
        assert (code, answer["code"]) == (503, "model_unavailable"), (transport, answer)

    # Version 2 arrives: the double loads it, then unloads version 1 (latest policy).
    publish(model_dir, 1, 2)

    for transport in TRANSPORTS:
        one, two = fronts[transport, 1], fronts[transport, 2]
        health_once(two, 200, timeout=90)
        code, answer = predict(two, cat_jpeg)
        assert (code, answer["model"]["version"]) == (200, "2"), (transport, answer)

        body = health_once(one, 503, timeout=30)
        assert body["error"] == "TF_SERVING_URL pins version 1: version 1 is END"
        code, answer = predict(one, cat_jpeg)
        # Version 2 could answer, but version 1 was asked for: no answer rather than another's.
        assert (code, answer["code"]) == (503, "model_unavailable"), (transport, answer)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_label_tf_serving_does_not_know_keeps_the_gateway_unready(
    double: Process, model_root: Path, logs: Path, transport: str, cat_jpeg: bytes
) -> None:
    front = pinned_gateway(
        double, model_root, "/labels/stable", transport, logs / f"label-{transport}.log"
    ).start()
    try:
        code, body = health(front)
        assert code == 503
        message = "TF_SERVING_URL pins label 'stable': Unrecognized servable version label: stable"
        assert body["error"] == message
        # Status ignores labels (docs/tf-serving-protocol.md §2.1): the model's own list.
        assert body["model"]["model_version_status"][0]["state"] == "AVAILABLE"
        code, answer = predict(front, cat_jpeg)
        assert (code, answer["code"]) == (503, "model_unavailable")
        assert message in answer["detail"]
    finally:
        front.stop()
