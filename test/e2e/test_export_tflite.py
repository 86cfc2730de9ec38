"""The TensorFlow Lite copy export_model.py writes into each version (modelexport/tflite.py)."""

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from export_cli import run_cli
from modelexport.errors import VerificationFailed
from modelexport.tflite import compare_outputs, held_native_stderr

CAT = Path(__file__).resolve().parents[1] / "cat.jpg"
TOLERANCE = 1e-4
# MobileNetV2's 3.5 million float32 weights; an unfrozen conversion is about 190 KB.
MIN_FROZEN_BYTES = 12_000_000


@dataclass(frozen=True)
class Export:
    version: Path
    stdout: str
    stderr: str


def export_random(models: Path, *flags: str) -> Export:
    """Run export_model.py --source random into models, insist it succeeded, return its output."""
    # Without TF_CPP_MIN_LOG_LEVEL the CLI applies its own default, as for a user.
    done = run_cli(
        "--source",
        "random",
        "--model-dir",
        models,
        *flags,
        hide=frozenset({"MODEL_SOURCE", "TF_CPP_MIN_LOG_LEVEL"}),
    )
    assert done.returncode == 0, done.stderr
    return Export(models / "mobilenet" / "1", done.stdout, done.stderr)


def read_info(version: Path) -> dict[str, object]:
    """The version's export_info.json."""
    return json.loads((version / "assets.extra" / "export_info.json").read_text())


def top5(probabilities: np.ndarray) -> np.ndarray:
    """Each row's five most probable class ids, most probable first."""
    return np.argsort(-probabilities, axis=-1, kind="stable")[:, :5]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """One default random export, TensorFlow Lite copy included."""
    return export_random(tmp_path_factory.mktemp("tflite"))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The cat photo, its mirror image and two seeded noise images: uint8 [4, 224, 224, 3]."""
    with Image.open(CAT) as image:
        resized = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    cat = np.asarray(resized, dtype=np.uint8)
    noise = np.random.default_rng(2024).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    return np.stack([cat, cat[:, ::-1], *noise])


@pytest.fixture(scope="module")
def expected(exported: Export, images: np.ndarray) -> np.ndarray:
    """What the SavedModel itself returns for the images."""
    signature = tf.saved_model.load(str(exported.version)).signatures["serving_default"]
    return signature(images=tf.constant(images))["probabilities"].numpy()


def load_tflite(version: Path) -> Interpreter:
    return Interpreter(model_path=str(version / "assets.extra" / "model.tflite"), num_threads=2)


def test_version_carries_a_frozen_tflite_copy(exported: Export) -> None:
    path = exported.version / "assets.extra" / "model.tflite"
    assert path.stat().st_size > MIN_FROZEN_BYTES
    assert [p.name for p in exported.version.parent.iterdir()] == ["1"]
    out = exported.stdout
    assert re.search(r"tflite:\s+assets\.extra/model\.tflite \(\d+\.\d MB, float32\)", out)
    assert re.search(r"same top-5 as the SavedModel, max abs diff \d\.\de-\d\d", out)
    # The converter's and XNNPACK's native log lines are held back after a good conversion.
    assert "tf_tfl_flatbuffer_helpers" not in exported.stderr
    assert "XNNPACK" not in exported.stderr


def test_export_info_records_the_tflite_copy(exported: Export) -> None:
    tflite = read_info(exported.version)["tflite"]
    assert isinstance(tflite, dict)
    assert tflite.keys() == {"file", "bytes", "max_abs_diff_vs_savedmodel", "converter"}
    assert tflite["file"] == "model.tflite"
    assert tflite["bytes"] == (exported.version / "assets.extra" / "model.tflite").stat().st_size
    assert 0 <= tflite["max_abs_diff_vs_savedmodel"] <= TOLERANCE
    assert tflite["converter"] == "tf.lite from_concrete_functions, float32"


def test_tflite_signature_follows_the_contract(exported: Export) -> None:
    interpreter = load_tflite(exported.version)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["images"], "outputs": ["probabilities"]}
    }
    runner = interpreter.get_signature_runner("serving_default")
    images = runner.get_input_details()["images"]
    probabilities = runner.get_output_details()["probabilities"]
    assert images["dtype"] == np.uint8
    assert images["shape_signature"].tolist() == [-1, 224, 224, 3]
    assert probabilities["dtype"] == np.float32
    assert probabilities["shape_signature"].tolist() == [-1, 1001]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_tflite_matches_the_savedmodel(
    batch_size: int, exported: Export, images: np.ndarray, expected: np.ndarray
) -> None:
    # Distinct rankings per image, so agreement is not agreement on a constant.
    assert len({tuple(row) for row in top5(expected)}) == len(images)
    runner = load_tflite(exported.version).get_signature_runner("serving_default")
    actual = np.concatenate(
        [
            runner(images=images[start : start + batch_size])["probabilities"]
            for start in range(0, len(images), batch_size)
        ]
    )
    assert actual.shape == (4, 1001)
    np.testing.assert_array_equal(top5(actual), top5(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_no_tflite_writes_none(tmp_path: Path) -> None:
    export = export_random(tmp_path, "--no-tflite")
    assert (export.version / "saved_model.pb").is_file()
    assert not (export.version / "assets.extra" / "model.tflite").exists()
    assert read_info(export.version)["tflite"] is None
    assert "tflite:    skipped (--no-tflite)" in export.stdout
    # The golden answer is still written, checked against the SavedModel alone.
    golden = json.loads((export.version / "assets.extra" / "golden_answer.json").read_text())
    assert golden["l1_at_export"] == {"SavedModel": 0.0}
    assert re.search(r"SavedModel agrees: L1 0\.0e\+00\n  assets:", export.stdout)


def softmax_rows(seed: int) -> np.ndarray:
    """Two rows of 1001 probabilities with well separated top classes."""
    logits = np.random.default_rng(seed).normal(0.0, 2.0, (2, 1001))
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_check_accepts_float_rounding() -> None:
    expected = softmax_rows(1)
    assert compare_outputs(expected, expected + 5e-5) == pytest.approx(5e-5, rel=1e-2)


def swap_top_two(probabilities: np.ndarray) -> np.ndarray:
    first, second = top5(probabilities)[0, :2]
    swapped = probabilities.copy()
    swapped[0, [first, second]] = swapped[0, [second, first]]
    return swapped


def nudge_least_likely(probabilities: np.ndarray) -> np.ndarray:
    nudged = probabilities.copy()
    nudged[0, np.argmin(nudged[0])] += 3e-4
    return nudged


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        (lambda p: np.full_like(p, np.nan), "non-finite"),
        (swap_top_two, "top 5"),
        (nudge_least_likely, r"differ .* by up to 3\.0\de-04"),
        (lambda p: p[:1], "shape"),
    ],
)
def test_check_rejects_drift(drift: Callable[[np.ndarray], np.ndarray], message: str) -> None:
    expected = softmax_rows(2)
    with pytest.raises(VerificationFailed, match=message):
        compare_outputs(expected, drift(expected))


def write_to_fd2_then_fail(text: bytes) -> None:
    with held_native_stderr():
        os.write(2, text)
        raise RuntimeError("conversion failed")


def test_held_stderr_is_replayed_only_on_failure(capfd: pytest.CaptureFixture[str]) -> None:
    with held_native_stderr():
        os.write(2, b"noise\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError, match="conversion failed"):
        write_to_fd2_then_fail(b"clue\n")
    assert capfd.readouterr().err == "clue\n"
