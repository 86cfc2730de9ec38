"""The embedded runtimes agree with each other on the exported model."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from gateway.runtimes import TFLITE_FILE, LiteRuntime, TensorFlowRuntime, load_runtime

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def version_dir(model_root: Path) -> Path:
    return model_root / "mobilenet" / "1"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    cat = np.asarray(Image.open(ROOT / "cat.jpg").convert("RGB").resize((224, 224)))
    noise = np.random.default_rng(5).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    return np.concatenate([cat[None], noise])


def test_auto_prefers_tflite_when_the_version_carries_it(version_dir: Path) -> None:
    assert (version_dir / TFLITE_FILE).is_file()
    assert load_runtime(version_dir, "auto", threads=2, copies=1).name == "tflite"
    assert load_runtime(version_dir, "tensorflow", threads=2, copies=1).name == "tensorflow"


def test_both_runtimes_read_the_same_signature(version_dir: Path) -> None:
    lite = LiteRuntime(version_dir / TFLITE_FILE, threads=2, copies=1)
    full = TensorFlowRuntime(version_dir)
    assert lite.tensors == full.tensors
    assert lite.tensors.image_size == (224, 224)
    assert lite.tensors.num_classes == 1001


def test_tflite_matches_tensorflow_on_batches(version_dir: Path, images: np.ndarray) -> None:
    lite = LiteRuntime(version_dir / TFLITE_FILE, threads=2, copies=2)
    full = TensorFlowRuntime(version_dir)
    for batch in (images[:1], images):
        expected, got = full.run(batch), lite.run(batch)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
        for row in range(batch.shape[0]):
            top_expected = np.argsort(-expected[row], kind="stable")[:5]
            top_got = np.argsort(-got[row], kind="stable")[:5]
            assert list(top_got) == list(top_expected)


def tflite_calls() -> dict[str, float]:
    """The gateway_tflite_calls counter, by interpreter kind."""
    return {
        kind: REGISTRY.get_sample_value("gateway_tflite_calls_total", {"interpreter": kind}) or 0.0
        for kind in ("wide", "narrow")
    }


def calls_since(before: dict[str, float]) -> dict[str, float]:
    now = tflite_calls()
    return {kind: now[kind] - before[kind] for kind in now}


def test_a_lone_call_gets_all_threads_and_overlapping_calls_get_a_copy_each(
    version_dir: Path, images: np.ndarray
) -> None:
    lite = LiteRuntime(version_dir / TFLITE_FILE, threads=2, copies=2)
    before = tflite_calls()
    alone = [lite.run(images[row : row + 1]) for row in range(4)]
    assert calls_since(before) == {"wide": 4, "narrow": 0}

    start = threading.Barrier(8)

    def overlapping(row: int) -> np.ndarray:
        start.wait()
        return lite.run(images[row % 4 : row % 4 + 1])

    before = tflite_calls()
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(overlapping, range(8)))
    assert calls_since(before)["narrow"] >= 7  # at most one of them found the runtime idle
    for row, scores in enumerate(together):
        np.testing.assert_allclose(scores, alone[row % 4], atol=1e-5)


def test_without_spare_threads_there_is_no_wide_interpreter(version_dir: Path) -> None:
    lite = LiteRuntime(version_dir / TFLITE_FILE, threads=1, copies=2)
    lite.warm((1,))
    before = tflite_calls()
    lite.run(np.zeros((1, 224, 224, 3), dtype=np.uint8))
    assert calls_since(before) == {"wide": 0, "narrow": 1}
