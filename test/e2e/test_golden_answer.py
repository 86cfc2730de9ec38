"""Every exported version's golden answer, and the deliberately broken export that fails it.

The golden answer (modelexport/golden.py) must be what a correct gateway answers. Checked
here on the session's random export (conftest.py's `model_root`), through the gateway's
own preparation and each runtime, and through every running gateway over HTTP; then one
more export, `--fault broken-preprocessing`, whose model answers the photograph otherwise.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from api_client import post_image
from fault_export import FaultExport
from gateway.golden import GoldenAnswer
from gateway.imaging import prepare_image
from gateway.model_assets import read_assets
from processes import Process

REPO = Path(__file__).resolve().parents[2]
BUNDLED_PHOTO = REPO / "modelexport" / "photos" / "chelsea.jpg"
EXTRA = "assets.extra"
MAX_PIXELS = 40_000_000


def golden_of(version: Path) -> GoldenAnswer:
    """The version's golden answer as the gateway reads it, insisting it reads cleanly."""
    assets = read_assets(version, 1001)
    assert assets.problems == ()
    assert assets.golden is not None
    return assets.golden


def prepared(golden: GoldenAnswer) -> np.ndarray:
    """The golden photo as the gateway feeds it to the model: uint8 [1, height, width, 3]."""
    pixels = prepare_image(golden.photo, golden.expected.input_size, MAX_PIXELS).pixels
    return pixels[np.newaxis]


def savedmodel_answer(version: Path, images: np.ndarray) -> np.ndarray:
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    return signature(images=tf.constant(images))["probabilities"].numpy()[0]


def tflite_answer(version: Path, images: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(version / EXTRA / "model.tflite"), num_threads=2)
    runner = interpreter.get_signature_runner("serving_default")
    probabilities: np.ndarray = runner(images=images)["probabilities"][0]
    return probabilities


@pytest.fixture(scope="module")
def version(model_root: Path) -> Path:
    return model_root / "mobilenet" / "1"


@pytest.fixture(scope="module")
def golden(version: Path) -> GoldenAnswer:
    return golden_of(version)


def test_every_version_carries_the_bundled_photo_and_an_answer(
    version: Path, golden: GoldenAnswer
) -> None:
    assert golden.photo == BUNDLED_PHOTO.read_bytes()
    assert golden.expected.photo_file == "golden_photo.jpg"
    assert golden.expected.photo_sha256 == hashlib.sha256(golden.photo).hexdigest()
    assert golden.expected.input_size == (224, 224)
    document = json.loads((version / EXTRA / "golden_answer.json").read_text())
    assert document["tolerance"]["l1"] == golden.expected.l1_tolerance == 0.1
    assert "gateway.imaging.prepare_image" in document["computed_by"]
    assert "SavedModel" in document["computed_by"]
    labels = (version / EXTRA / "labels.txt").read_text().splitlines()
    assert [entry["label"] for entry in document["expected"]["top5"]] == [
        labels[class_id] for class_id, _ in golden.expected.top5
    ]


def test_the_answer_is_the_models_answer_to_the_gateways_pixels(
    version: Path, golden: GoldenAnswer
) -> None:
    images = prepared(golden)
    for answer in (savedmodel_answer(version, images), tflite_answer(version, images)):
        comparison = golden.expected.compare(answer)
        assert comparison.agrees, comparison.reason
        assert comparison.l1 < 1e-4
    expected = np.asarray(golden.expected.probabilities)
    assert golden.expected.top1 == int(np.argmax(expected))
    assert golden.expected.top1_margin == pytest.approx(
        np.sort(expected)[-1] - np.sort(expected)[-2]
    )


def test_untrained_weights_leave_the_top1_to_the_l1_distance(golden: GoldenAnswer) -> None:
    # Nearly uniform probabilities: judging the top-1 would flap, so the rule does not.
    assert golden.expected.top1_probability < 0.2
    assert not golden.expected.top1_decisive


def test_every_gateway_gives_the_golden_answer(any_gateway: Process, golden: GoldenAnswer) -> None:
    response = post_image(any_gateway.url, golden.photo, "golden_photo.jpg", top_k=1001)
    assert response.status_code == 200, response.text
    served = np.zeros(1001)
    for prediction in response.json()["predictions"]:
        served[prediction["class_id"]] = prediction["probability"]
    comparison = golden.expected.compare(served)
    assert comparison.agrees, comparison.reason
    assert comparison.l1 < 1e-4


def test_a_fault_export_says_so_loudly(fault_export: FaultExport) -> None:
    info = json.loads((fault_export.version / EXTRA / "export_info.json").read_text())
    assert info["fault"] == "broken-preprocessing"
    assert "DELIBERATELY BROKEN (--fault broken-preprocessing)" in fault_export.stdout
    assert "differs on purpose" in fault_export.stdout
    assert read_assets(fault_export.version, 1001).export_info.fault == "broken-preprocessing"


def test_a_fault_exports_golden_answer_is_the_correct_models(
    fault_export: FaultExport, golden: GoldenAnswer
) -> None:
    broken = golden_of(fault_export.version)
    assert broken.photo == golden.photo
    # Same seed, same weights: the correct classifier in-process gives the session
    # model's answer, up to float noise.
    comparison = golden.expected.compare(broken.expected.probabilities)
    assert comparison.agrees
    assert comparison.l1 < 1e-4


def test_a_fault_exports_model_answers_the_golden_photo_otherwise(
    fault_export: FaultExport,
) -> None:
    broken = golden_of(fault_export.version)
    images = prepared(broken)
    for answer in (
        savedmodel_answer(fault_export.version, images),
        tflite_answer(fault_export.version, images),
    ):
        comparison = broken.expected.compare(answer)
        assert not comparison.agrees
        assert comparison.l1 > 3 * broken.expected.l1_tolerance
        assert comparison.reason is not None
        assert comparison.reason.startswith("probabilities differ from the golden answer by L1")
    # Fed BGR, the broken graph turns it back into RGB and gives the golden answer: the
    # fault is the channel order and nothing else.
    bgr = np.ascontiguousarray(images[..., ::-1])
    assert broken.expected.compare(tflite_answer(fault_export.version, bgr)).agrees
