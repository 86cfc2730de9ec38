"""A version's int8 files are input: a float copy under the int8 name, or a broken int8
golden answer, must not be served as int8 nor take down a gateway that does not use it.

Each test serves a hard-linked copy of the session's EfficientNet-Lite0 version (real
int8 copy, its own golden answer) with one file replaced, so the session export is
never touched.
"""

import os
import shutil
from pathlib import Path

import httpx

from api_client import post_image
from processes import Process, answers, gateway, wait_until


def tampered_copy(efficientnet_model_dir: Path, root: Path) -> Path:
    """root/<model>/1, hard links to the session's files; replace files by unlinking first."""
    target = root / efficientnet_model_dir.name / "1"
    shutil.copytree(efficientnet_model_dir / "1", target, copy_function=os.link)
    return target / "assets.extra"


def start(logs: Path, name: str, root: Path, model: str, precision: str) -> Process:
    process = gateway(
        logs / f"gateway-{name}.log",
        INFERENCE_BACKEND="embedded",
        EMBEDDED_PRECISION=precision,
        MODEL_BASE_PATH=str(root),
        MODEL_NAME=model,
    )
    process.ready = answers(f"{process.url}/health/live", 200)
    return process.start()


def test_a_float_copy_named_model_int8_is_not_served_as_int8(
    efficientnet_model_dir: Path, tmp_path: Path, logs: Path, cat_jpeg: bytes
) -> None:
    extra = tampered_copy(efficientnet_model_dir, tmp_path)
    (extra / "model_int8.tflite").unlink()
    shutil.copyfile(extra / "model.tflite", extra / "model_int8.tflite")
    process = start(logs, "int8-float-copy", tmp_path, efficientnet_model_dir.name, "int8")
    try:
        url = f"{process.url}/health"
        wait_until(lambda: "model_int8.tflite" in httpx.get(url, timeout=5).text, what="why")
        assert httpx.get(url, timeout=5).status_code == 503
        refused = post_image(process.url, cat_jpeg, top_k=1)
        assert refused.status_code == 503, refused.text  # never an answer saying int8
    finally:
        process.stop()


def test_a_broken_int8_golden_answer_leaves_a_float_gateway_ready(
    efficientnet_model_dir: Path, tmp_path: Path, logs: Path
) -> None:
    extra = tampered_copy(efficientnet_model_dir, tmp_path)
    (extra / "golden_answer_int8.json").unlink()
    (extra / "golden_answer_int8.json").write_text("{not json")
    process = start(
        logs, "float-broken-int8-golden", tmp_path, efficientnet_model_dir.name, "float32"
    )
    try:
        url = f"{process.url}/health"

        def checked() -> bool:
            checks = httpx.get(url, timeout=5).json().get("golden_checks") or []
            return bool(checks) and "first check" not in checks[0]["detail"]

        wait_until(checked, what="the first golden check")
        health = httpx.get(url, timeout=5)
        assert health.status_code == 200, health.text
        assert [c["passed"] for c in health.json()["golden_checks"]] == [True]
    finally:
        process.stop()
