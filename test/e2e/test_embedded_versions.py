"""The embedded backend follows new versions the way TF Serving's latest policy does."""

import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from api_client import post_image
from processes import answers, gateway, wait_until


def copy_version(model_dir: Path, source: int, target: int) -> None:
    """Publish a version atomically, as export_model.py does: copy aside, then rename."""
    staging = model_dir / f".tmp-{target}"
    shutil.copytree(model_dir / str(source), staging)
    staging.rename(model_dir / str(target))


class SteadyLoad:
    """One client posting the cat without pause, recording statuses and answering versions."""

    def __init__(self, url: str, image: bytes) -> None:
        self._url, self._image = url, image
        self.statuses: list[int] = []
        self.versions: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            response = post_image(self._url, self._image)
            self.statuses.append(response.status_code)
            if response.status_code == 200:
                self.versions.add(int(response.json()["model"]["version"]))


def test_a_new_version_is_swapped_in_under_load_without_failures(
    model_root: Path, logs: Path, tmp_path: Path, cat_jpeg: bytes
) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_root / "mobilenet" / "1", models / "mobilenet" / "1")
    front = gateway(
        logs / "embedded-versions.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(models),
        STATUS_POLL_SECONDS="0.5",
    )
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    load = SteadyLoad(front.url, cat_jpeg)

    load.start()
    try:
        copy_version(models / "mobilenet", 1, 2)
        wait_until(lambda: httpx.get(f"{front.url}/model").json()["version"] == 2)
        shutil.rmtree(models / "mobilenet" / "1")
        time.sleep(1.5)
    finally:
        load.stop()
        front.stop()
    assert load.statuses
    assert set(load.statuses) == {200}
    assert load.versions == {1, 2}


def test_a_version_incomplete_when_first_seen_is_loaded_once_complete(
    model_root: Path, logs: Path, tmp_path: Path, cat_jpeg: bytes
) -> None:
    """A non-atomic copy: version 2 fails to load, version 1 keeps serving, then 2 takes over."""
    models = tmp_path / "models" / "mobilenet"
    shutil.copytree(model_root / "mobilenet" / "1", models / "1")
    front = gateway(
        logs / "embedded-retry.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(models.parent),
        STATUS_POLL_SECONDS="0.5",
        EMBEDDED_LOAD_RETRY_SECONDS="0.2",
        EMBEDDED_LOAD_RETRY_MAX_SECONDS="1",
    )
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    load = SteadyLoad(front.url, cat_jpeg)

    def health() -> dict[str, Any]:
        response = httpx.get(f"{front.url}/health")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    tflite = Path("assets.extra") / "model.tflite"
    complete = (models / "1" / tflite).read_bytes()
    load.start()
    try:
        shutil.copytree(models / "1", models / ".tmp-2")
        (models / ".tmp-2" / tflite).write_bytes(complete[: len(complete) // 2])
        (models / ".tmp-2").rename(models / "2")  # seen with half its model written
        failed = "version 2 could not be loaded"
        wait_until(lambda: failed in health().get("detail", ""), what="the failure in /health")
        attempt = re.compile(r"\(attempt (\d+)\)")
        wait_until(
            lambda: int(attempt.findall(health()["detail"])[-1]) >= 3, what="retries of version 2"
        )
        body = health()
        assert body["status"] == "healthy"
        assert body["served_model"]["version"] == 1
        assert "version 1 keeps serving" in body["detail"]
        assert str(tmp_path) not in body["detail"]
        broken, serving = body["model"]["model_version_status"]
        assert (broken["version"], broken["state"]) == ("2", "END")
        assert broken["status"]["error_code"] == "UNKNOWN"
        assert broken["status"]["error_message"].startswith(failed)
        assert serving == {
            "version": "1",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        assert load.versions == {1}
        # As TF Serving keeps it, version 1 is still served: asked for by number, and
        # listed beside the failed version 2 with its reason.
        pinned = post_image(front.url, cat_jpeg, version=1)
        assert pinned.status_code == 200, pinned.text
        assert int(pinned.json()["model"]["version"]) == 1
        (listed,) = httpx.get(f"{front.url}/models").json()["models"]
        states = [(item["version"], item["state"]) for item in listed["versions"]]
        assert states == [(2, "END"), (1, "AVAILABLE")]
        assert listed["versions"][0]["error"].startswith(failed)

        (models / "2" / tflite).write_bytes(complete)  # the copy completes, in place
        wait_until(lambda: httpx.get(f"{front.url}/model").json()["version"] == 2)
        body = health()
        assert "detail" not in body
        (entry,) = body["model"]["model_version_status"]
        assert (entry["version"], entry["state"]) == ("2", "AVAILABLE")
        time.sleep(0.5)
    finally:
        load.stop()
        front.stop()
    assert load.statuses
    assert set(load.statuses) == {200}
    assert load.versions == {1, 2}


def test_it_waits_for_a_first_version_then_turns_ready(
    model_root: Path, logs: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    (models / "mobilenet").mkdir(parents=True)
    front = gateway(
        logs / "embedded-empty.log",
        INFERENCE_BACKEND="embedded",
        MODEL_BASE_PATH=str(models),
        STATUS_POLL_SECONDS="0.5",
    ).start()
    try:
        health = httpx.get(f"{front.url}/health")
        assert health.status_code == 503
        assert "export_model.py" in health.json()["detail"]
        shutil.copytree(model_root / "mobilenet" / "1", models / "mobilenet" / ".tmp-3")
        (models / "mobilenet" / ".tmp-3").rename(models / "mobilenet" / "3")
        wait_until(lambda: httpx.get(f"{front.url}/health").status_code == 200)
        assert httpx.get(f"{front.url}/model").json()["version"] == 3
    finally:
        front.stop()
