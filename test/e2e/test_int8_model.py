"""The int8 copy of real weights: written, integer throughout, as right as the float copy, served.

The session's EfficientNet-Lite0 export (test/real_weights.py) runs with
`--quantize int8`; the exporter has already refused it unless its top-1 agreed with
the float copy often enough. Here the claims are checked again from outside: the
file's tensors, the agreement recomputed over the same photographs, and a gateway
with EMBEDDED_PRECISION=int8 answering the cat right, saying int8, and passing its
golden check; a version without the copy is refused by name instead of served in float.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from api_client import post_image
from modelexport.calibration import evaluation_images
from modelexport.quantize import MIN_TOP1_AGREEMENT
from processes import Process, answers, gateway, wait_until

EGYPTIAN_CAT = 286


@pytest.fixture(scope="module")
def extra(efficientnet_model_dir: Path) -> Path:
    return efficientnet_model_dir / "1" / "assets.extra"


def top1_of(path: Path, batch: np.ndarray) -> np.ndarray:
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    best: np.ndarray = np.argmax(runner(images=batch)["probabilities"], axis=1)
    return best


def test_export_info_records_the_int8_copy_and_its_agreement(extra: Path) -> None:
    info = json.loads((extra / "export_info.json").read_text())
    int8 = info["tflite_int8"]
    assert int8["file"] == "model_int8.tflite"
    assert int8["bytes"] == (extra / "model_int8.tflite").stat().st_size
    # A quarter of the float copy's size: int8 weights instead of float32.
    assert int8["bytes"] < (extra / "model.tflite").stat().st_size / 3
    assert int8["evaluation_images"] >= 100
    assert int8["calibration_images"] >= 100
    assert MIN_TOP1_AGREEMENT <= int8["top1_agreement_vs_float"] <= 1.0


def test_every_tensor_inside_is_integer(extra: Path) -> None:
    interpreter = Interpreter(model_path=str(extra / "model_int8.tflite"))
    dtypes = [np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()]
    # The uint8 input and its cast before it is quantised; the dequantised logits the
    # float softmax reads, and the probabilities out.
    assert dtypes.count("float32") == 3
    assert dtypes.count("uint8") == 1
    assert dtypes.count("int8") > 100
    runner = interpreter.get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["dtype"] == np.uint8
    assert runner.get_output_details()["probabilities"]["dtype"] == np.float32


def test_top1_agreement_recomputed_matches_the_recorded_figure(extra: Path) -> None:
    judged = evaluation_images()
    batch = np.stack([image.pixels for image in judged])
    float_top1 = top1_of(extra / "model.tflite", batch)
    int8_top1 = top1_of(extra / "model_int8.tflite", batch)
    agreement = float(np.mean(float_top1 == int8_top1))
    info = json.loads((extra / "export_info.json").read_text())
    assert agreement == pytest.approx(info["tflite_int8"]["top1_agreement_vs_float"], abs=1e-4)
    # The photographs ImageNet knows well are not where int8 differs.
    for image, want, got in zip(judged, float_top1, int8_top1, strict=True):
        if image.photo.name in ("chelsea.png", "coffee.png") and image.view == "whole":
            assert want == got, image.photo.name


@pytest.fixture(scope="module")
def int8_gateway(efficientnet_model_dir: Path, logs: Path) -> Iterator[Process]:
    process = gateway(
        logs / "gateway-int8.log",
        INFERENCE_BACKEND="embedded",
        EMBEDDED_PRECISION="int8",
        MODEL_BASE_PATH=str(efficientnet_model_dir.parent),
        MODEL_NAME=efficientnet_model_dir.name,
    )
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


def test_the_int8_gateway_says_int8_and_answers_the_cat(
    int8_gateway: Process, cat_jpeg: bytes
) -> None:
    response = post_image(int8_gateway.url, cat_jpeg, top_k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["precision"] == "int8"
    assert body["model"]["backend"] == "embedded"
    assert body["predictions"][0]["class_id"] == EGYPTIAN_CAT
    described = httpx.get(f"{int8_gateway.url}/model", timeout=10).json()
    assert (described["runtime"], described["precision"]) == ("tflite", "int8")


def test_the_int8_gateway_passes_its_own_golden_check(int8_gateway: Process) -> None:
    health = httpx.get(f"{int8_gateway.url}/health", timeout=10)
    assert health.status_code == 200, health.text
    checks = health.json()["golden_checks"]
    assert [check["passed"] for check in checks] == [True], checks
    assert "matches" in checks[0]["detail"]


def test_a_float_gateway_says_float32(tfserving_gateway: Process, cat_jpeg: bytes) -> None:
    response = post_image(tfserving_gateway.url, cat_jpeg, top_k=1)
    assert response.status_code == 200, response.text
    assert response.json()["model"]["precision"] == "float32"


def test_a_version_without_the_int8_copy_is_refused_by_name(
    model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    """The untrained session model has no model_int8.tflite: not ready, and /health says why."""
    process = gateway(
        logs / "gateway-int8-missing.log",
        INFERENCE_BACKEND="embedded",
        EMBEDDED_PRECISION="int8",
        MODEL_BASE_PATH=str(model_root),
    )
    process.ready = answers(f"{process.url}/health/live", 200)
    process.start()
    try:
        url = f"{process.url}/health"

        def says_why() -> bool:
            return "model_int8.tflite" in httpx.get(url, timeout=5).text

        wait_until(says_why, what="/health to name the missing int8 copy")
        health = httpx.get(url, timeout=5)
        assert health.status_code == 503
        assert "--quantize int8" in health.text
        refused = post_image(process.url, cat_jpeg, top_k=1)
        assert refused.status_code == 503, refused.text
    finally:
        process.stop()
