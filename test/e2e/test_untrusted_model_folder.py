"""Files in the model folder are input: broken ones degrade answers, never break them.

Real gateways (embedded, and TF Serving mode against the double) read a copy of
the exported version whose labels.txt and export_info.json the tests corrupt,
then fix, while the gateway keeps running.
"""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_client import post_image
from processes import MODEL_NAME, Process, gateway, gateway_for, wait_until

LABELS = "assets.extra/labels.txt"
EXPORT_INFO = "assets.extra/export_info.json"


@pytest.fixture(params=["embedded", "tfserving"])
def version_dir(
    request: pytest.FixtureRequest, model_root: Path, logs: Path, tmp_path: Path
) -> Iterator[tuple[Process, Path]]:
    """A gateway whose MODEL_BASE_PATH is a copy of version 1, and that copy's folder."""
    root = tmp_path / "models"
    folder = root / MODEL_NAME / "1"
    shutil.copytree(model_root / MODEL_NAME / "1", folder)
    log = logs / f"untrusted-{request.param}.log"
    if request.param == "embedded":
        front = gateway(log, INFERENCE_BACKEND="embedded", MODEL_BASE_PATH=str(root))
    else:  # TF Serving serves the intact original; the gateway reads the copy's assets
        front = gateway_for(request.getfixturevalue("double"), root, log)
    yield front, folder
    front.stop()


def replace_file(path: Path, data: bytes) -> None:
    """Swap a file's content in one rename, as a deployment tool would."""
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    os.replace(staged, path)


def model_files(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/health", timeout=10.0)
    assert response.status_code == 200, response.text
    files: dict[str, Any] = response.json()["model_files"]
    return files


def test_broken_assets_degrade_every_answer_until_fixed(
    version_dir: tuple[Process, Path], cat_jpeg: bytes, tmp_path: Path
) -> None:
    front, folder = version_dir
    labels, info = (folder / LABELS).read_bytes(), (folder / EXPORT_INFO).read_bytes()
    lines = labels.splitlines(keepends=True)
    latin1 = b"".join(lines[:283]) + b"tiger cat, caf\xe9 breed\n" + b"".join(lines[284:])
    offset = len(b"".join(lines[:283])) + len(b"tiger cat, caf")
    depth = 100_000
    deep = b'{"trained": false, "source": "random", "x": ' + b"[" * depth + b"]" * depth + b"}"
    replace_file(folder / LABELS, latin1)
    replace_file(folder / EXPORT_INFO, deep)

    front.start()
    wait_until(lambda: httpx.get(f"{front.url}/health").status_code != 503, 120, "a loaded version")

    health = httpx.get(f"{front.url}/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "healthy"
    assert body["served_model"]["weights"] == "unknown"
    assert body["model_files"]["status"] == "degraded"
    labels_problem, info_problem = body["model_files"]["problems"]
    assert labels_problem == {"file": LABELS, "problem": f"not UTF-8: byte 0xe9 at offset {offset}"}
    assert info_problem["file"] == EXPORT_INFO
    assert info_problem["problem"].startswith("not valid JSON: depth limit exceeded")
    assert str(tmp_path) not in health.text
    assert httpx.get(f"{front.url}/health/ready").status_code == 200

    predicted = post_image(front.url, cat_jpeg, "cat.jpg", top_k=1001)
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert len(body["predictions"]) == 1001
    assert all(p["label"] == f"class_{p['class_id']}" for p in body["predictions"])
    assert body["labels_warning"].startswith("Class names are placeholders (class_N)")
    assert "not UTF-8" in body["labels_warning"]
    assert body["model_files"]["status"] == "degraded"
    assert body["model"]["weights"] == "unknown"
    assert body["note"] == "Class IDs correspond to ImageNet labels. Top prediction is first."

    described = httpx.get(f"{front.url}/model")
    assert described.status_code == 200, described.text
    body = described.json()
    assert body["labels_available"] is False
    assert [p["file"] for p in body["model_files"]["problems"]] == [LABELS, EXPORT_INFO]

    # One label short shifts every name after it; a number no JSON encoder can write back.
    replace_file(folder / LABELS, b"".join(lines[1:]))
    replace_file(folder / EXPORT_INFO, b'{"trained": false, "source": %d}' % 2**70)
    wait_until(
        lambda: (
            len(model_files(front.url)["problems"]) == 2
            and "1000 labels" in model_files(front.url)["problems"][0]["problem"]
        ),
        20,
        "the new problems reported",
    )
    assert model_files(front.url)["problems"][1] == {
        "file": EXPORT_INFO,
        "problem": "`source` is a number, not a string",
    }
    body = post_image(front.url, cat_jpeg, "cat.jpg", top_k=3).json()
    assert [p["label"] for p in body["predictions"]] == [
        f"class_{p['class_id']}" for p in body["predictions"]
    ]
    assert "1000 labels for the model's 1001 classes" in body["labels_warning"]
    assert body["model"]["weights"] == "untrained"
    assert "UNTRAINED" in body["warning"]
    assert httpx.get(f"{front.url}/model").json()["source"] is None

    replace_file(folder / LABELS, labels)
    replace_file(folder / EXPORT_INFO, info)
    wait_until(
        lambda: model_files(front.url) == {"status": "ok", "problems": []}, 20, "clean files"
    )
    body = post_image(front.url, cat_jpeg, "cat.jpg", top_k=1001).json()
    names = {p["class_id"]: p["label"] for p in body["predictions"]}
    assert (names[0], names[283]) == ("background", "tiger cat")
    assert "labels_warning" not in body
    assert "model_files" not in body
    assert body["model"]["weights_source"] == json.loads(info)["source"]
    body = httpx.get(f"{front.url}/model").json()
    assert body["labels_available"] is True
    assert body["model_files"] == {"status": "ok", "problems": []}
