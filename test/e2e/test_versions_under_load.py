"""A new model version rolled out under load: TF Serving switches, the gateway follows."""

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from processes import Process, answers, gateway_for, tfserving_double

CLIENTS = 3
# TF Serving's flag is an int32 of seconds, so the double cannot poll faster than 1 s.
POLL_SECONDS = "1"


@pytest.fixture(params=["grpc", "rest"])
def rollout(
    model_root: Path, logs: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Process, Process]]:
    """A copy of the models folder, a double polling it every second, a gateway in front."""
    model_dir = tmp_path / "models" / "mobilenet"
    shutil.copytree(model_root / "mobilenet" / "1", model_dir / "1")
    name = request.node.name
    double = tfserving_double(
        model_dir, logs / f"{name}-double.log", file_system_poll_wait_seconds=POLL_SECONDS
    ).start()
    front = gateway_for(
        double,
        tmp_path / "models",
        logs / f"{name}-gateway.log",
        TF_SERVING_TRANSPORT=request.param,
        STATUS_POLL_SECONDS="0.5",
    )
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    yield model_dir, double, front
    front.stop()
    double.stop()


def publish(model_dir: Path, source: int, target: int) -> None:
    """Copy a version aside and rename it into place, as export_model.py writes one."""
    staging = model_dir / f".tmp-{target}"
    shutil.copytree(model_dir / str(source), staging)
    staging.rename(model_dir / str(target))


def served_version(front: Process) -> int | None:
    response = httpx.get(f"{front.url}/model", timeout=10)
    version: int | None = response.json().get("version") if response.status_code == 200 else None
    return version


def wait_for_version(front: Process, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_version(front) == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"version {version} not served within {timeout} s")


def test_a_new_version_rolls_out_under_load_without_a_failed_request(
    rollout: tuple[Path, Process, Process], cat_jpeg: bytes
) -> None:
    model_dir, _, front = rollout
    stop = threading.Event()
    failures: list[tuple[int, str]] = []
    versions_by_client: list[list[int]] = [[] for _ in range(CLIENTS)]

    def load(seen: list[int]) -> None:
        with httpx.Client(base_url=front.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/predict", files={"file": ("cat.jpg", cat_jpeg)})
                if response.status_code != 200 or len(response.json()["predictions"]) != 5:
                    failures.append((response.status_code, response.text))
                    continue
                seen.append(int(response.json()["model"]["version"]))

    clients = [threading.Thread(target=load, args=(seen,)) for seen in versions_by_client]
    for client in clients:
        client.start()
    try:
        time.sleep(1.0)
        publish(model_dir, 1, 2)
        wait_for_version(front, 2)
        shutil.rmtree(model_dir / "1")
        time.sleep(2 * float(POLL_SECONDS) + 1.0)  # the double notices the deletion
        assert served_version(front) == 2
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)

    print(f"\nanswers by version, per client: {[Counter(seen) for seen in versions_by_client]}")
    assert failures == []
    for seen in versions_by_client:
        assert seen, "a client got no answer at all"
        assert seen[0] == 1
        assert seen[-1] == 2
        # Once a client has been answered by version 2, version 1 never answers it again.
        assert seen == sorted(seen)
