"""export_model.py end to end: run the CLI as a user would, then read back what it wrote."""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from export_cli import run_cli

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "test" / "cat.jpg"
LABELS = REPO / "modelexport" / "imagenet_labels.txt"
OFFLINE_OPTIONS = (
    "--source random",
    "--source keras-weights --weights FILE",
    "--handle /local/dir",
)


def export_ok(*args: str | Path, extra_env: dict[str, str] | None = None) -> str:
    """Run the CLI, insist that it succeeded, and return its standard output."""
    done = run_cli(*args, extra_env=extra_env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cat_batch() -> np.ndarray:
    """The test cat photo as a uint8 [1, 224, 224, 3] batch."""
    with Image.open(CAT) as image:
        resized = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)[np.newaxis]


def weights_of(version_dir: Path) -> list[np.ndarray]:
    """Every variable in a version's checkpoint, in a stable order."""
    reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    keys = sorted(k for k in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k)
    return [reader.get_tensor(k) for k in keys]


def predict(version_dir: Path, images: np.ndarray) -> np.ndarray:
    """Load a version with tf.saved_model.load and run serving_default on images."""
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(images=tf.constant(images))["probabilities"].numpy()


def read_info(version_dir: Path) -> dict[str, object]:
    """The version's export_info.json."""
    return json.loads((version_dir / "assets.extra" / "export_info.json").read_text())


def leftovers(model_root: Path) -> list[str]:
    """Temporary or retired folders an export should never leave behind."""
    return sorted(p.name for p in model_root.iterdir() if p.name.startswith((".tmp-", ".old-")))


@dataclass(frozen=True)
class RandomExports:
    root: Path
    first_stdout: str
    first_cat: np.ndarray
    second_cat: np.ndarray


@pytest.fixture(scope="module")
def random_exports(tmp_path_factory: pytest.TempPathFactory) -> RandomExports:
    """Two default-seed random exports into one model folder that holds decoys."""
    models = tmp_path_factory.mktemp("random")
    first_stdout = export_ok("--source", "random", "--model-dir", models)
    root = models / "mobilenet"
    (root / "v7").mkdir()
    (root / "tmp-12").mkdir()
    (root / "README").write_text("not a version\n")
    # The TFLite copy is test_export_tflite.py's subject: without it, an export here is
    # about half as long.
    export_ok("--source", "random", "--no-tflite", "--model-dir", models)
    return RandomExports(
        root=root,
        first_stdout=first_stdout,
        first_cat=predict(root / "1", cat_batch()),
        second_cat=predict(root / "2", cat_batch()),
    )


def test_random_export_writes_the_contract_layout(random_exports: RandomExports) -> None:
    version = random_exports.root / "1"
    for relative in (
        "saved_model.pb",
        "variables/variables.index",
        "assets.extra/labels.txt",
        "assets.extra/export_info.json",
        "assets.extra/tf_serving_warmup_requests",
        "assets.extra/golden_answer.json",
        "assets.extra/golden_photo.jpg",
    ):
        assert (version / relative).is_file(), relative
    out = random_exports.first_stdout
    assert str(version) in out
    assert "UNTRAINED" in out
    assert re.search(r"images\s+uint8\s+\[-1, 224, 224, 3\]", out)
    assert re.search(r"probabilities\s+float32\s+\[-1, 1001\]", out)
    assert "-> probabilities [2, 1001]" in out


def test_signature_is_uint8_images_to_1001_probabilities(random_exports: RandomExports) -> None:
    signature = tf.saved_model.load(str(random_exports.root / "1")).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8
    assert inputs["images"].shape.as_list() == [None, 224, 224, 3]
    assert list(outputs) == ["probabilities"]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, 1001]
    probabilities = random_exports.first_cat
    assert probabilities.shape == (1, 1001)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_labels_travel_with_the_version(random_exports: RandomExports) -> None:
    labels = (random_exports.root / "1" / "assets.extra" / "labels.txt").read_text().splitlines()
    assert len(labels) == 1001
    assert labels[:3] == ["background", "tench", "goldfish"]
    assert labels[-1] == "toilet tissue"
    assert labels == LABELS.read_text().splitlines()


def test_export_info_flags_untrained_random_weights(random_exports: RandomExports) -> None:
    info = read_info(random_exports.root / "1")
    assert info["model_name"] == "mobilenet"
    assert info["version"] == 1
    assert info["source"] == "random"
    assert info["source_detail"] == "seed=42"
    assert info["trained"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["exported_at"])
    assert info["tensorflow_version"] == tf.__version__
    assert info["signature_name"] == "serving_default"
    assert info["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}}
    assert info["outputs"] == {"probabilities": {"dtype": "float32", "shape": [-1, 1001]}}
    assert "torchvision" in info["labels_provenance"]
    assert info["fault"] is None


def test_warmup_file_holds_predict_requests(random_exports: RandomExports) -> None:
    path = random_exports.root / "1" / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert 1 <= len(records) <= 5
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "mobilenet"
        assert request.model_spec.signature_name == "serving_default"
        tensor = request.inputs["images"]
        assert tensor.dtype == tf.uint8.as_datatype_enum
        assert [d.size for d in tensor.tensor_shape.dim] == [1, 224, 224, 3]
        assert len(tensor.tensor_content) == 224 * 224 * 3
        assert tf.make_ndarray(tensor).shape == (1, 224, 224, 3)


def test_next_export_takes_the_next_number_and_leaves_no_temp(
    random_exports: RandomExports,
) -> None:
    root = random_exports.root
    assert sorted(p.name for p in root.iterdir()) == ["1", "2", "README", "tmp-12", "v7"]
    assert read_info(root / "2")["version"] == 2
    assert leftovers(root) == []


def test_same_seed_gives_the_same_model(random_exports: RandomExports) -> None:
    first, second = weights_of(random_exports.root / "1"), weights_of(random_exports.root / "2")
    assert len(first) == len(second) > 100
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    np.testing.assert_array_equal(random_exports.first_cat, random_exports.second_cat)


def test_existing_version_is_refused_without_force(random_exports: RandomExports) -> None:
    root = random_exports.root
    before = (root / "2" / "assets.extra" / "export_info.json").read_bytes()
    done = run_cli("--source", "random", "--model-dir", root.parent, "--version", "2")
    assert done.returncode == 1
    assert "already exists" in done.stderr
    assert "--force" in done.stderr
    assert "Traceback" not in done.stderr
    assert (root / "2" / "assets.extra" / "export_info.json").read_bytes() == before


def test_force_replaces_an_existing_version(random_exports: RandomExports) -> None:
    root = random_exports.root
    out = export_ok(
        *["--source", "random", "--no-tflite", "--version", "2", "--force", "--seed", "7"],
        "--model-dir",
        root.parent,
    )
    assert "replaced" in out
    assert read_info(root / "2")["source_detail"] == "seed=7"
    first, replaced = weights_of(root / "1"), weights_of(root / "2")
    assert not all(np.array_equal(a, b) for a, b in zip(first, replaced, strict=True))
    assert leftovers(root) == []


@pytest.fixture(scope="module")
def keras_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A Keras-2 format MobileNetV2 1000-class weights file (random) and its logits for the cat."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = tf_keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), weights=None, classes=1000, classifier_activation=None
    )
    scaled = cat_batch().astype(np.float32) / 127.5 - 1.0
    # An untrained MobileNetV2's activations shrink to ~1e-12 by the last layer; a larger
    # classifier kernel brings the logits to ~1 so they tell inputs and scalings apart.
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    gain = 1.0 / float(np.abs(model(scaled, training=False).numpy()).mean())
    head.set_weights([kernel * gain, bias])
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_1000.h5"
    model.save_weights(str(path))
    return path, model(scaled, training=False).numpy()


def test_keras_weights_get_a_background_class_of_zero_probability(
    keras_weights: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    weights, expected_logits = keras_weights
    export_ok(
        "--source", "keras-weights", "--weights", weights, "--no-tflite", "--model-dir", tmp_path
    )
    version = tmp_path / "mobilenet" / "1"
    info = read_info(version)
    assert info["source"] == "keras-weights"
    assert info["trained"] is True
    assert weights.name in info["source_detail"]
    probabilities = predict(version, cat_batch())[0]
    assert probabilities[0] < 1e-9
    # Class i of the Keras model is class i + 1 here, with Keras's [-1, 1] scaling applied.
    log_odds = np.log(probabilities[1:]) - np.log(probabilities[1:]).mean()
    expected = expected_logits[0] - expected_logits[0].mean()
    np.testing.assert_allclose(log_odds, expected, atol=2e-3)
    assert np.argmax(probabilities) == np.argmax(expected_logits[0]) + 1


class FakeHubClassifier(tf.Module):
    """Behaves like TF Hub's MobileNetV2: float images in [0, 1] in, 1001 logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.class_weights = tf.Variable(tf.linspace(-4.0, 4.0, 1001))

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        brightness = tf.reduce_mean(images, axis=[1, 2, 3])
        return brightness[:, tf.newaxis] * self.class_weights[tf.newaxis, :]


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local SavedModel standing in for a TF Hub model copied by an air-gapped user."""
    path = tmp_path_factory.mktemp("hub") / "mobilenet_v2_100_224_classification_5"
    tf.saved_model.save(FakeHubClassifier(), str(path))
    return path


def test_hub_source_loads_a_local_handle_offline(hub_dir: Path, tmp_path: Path) -> None:
    dead_proxy = "http://127.0.0.1:9"
    export_ok(
        *("--source", "hub", "--handle", hub_dir, "--model-dir", tmp_path),
        extra_env={"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy, "NO_PROXY": ""},
    )
    version = tmp_path / "mobilenet" / "1"
    info = read_info(version)
    assert (info["source"], info["source_detail"], info["trained"]) == ("tfhub", str(hub_dir), True)
    white = np.full((1, 224, 224, 3), 255, np.uint8)
    black = np.zeros((1, 224, 224, 3), np.uint8)
    probabilities = predict(version, np.concatenate([white, black]))
    # uint8 255 must reach the hub model as 1.0 and 0 as 0.0 (not -1.0, Keras's scaling).
    expected_white = tf.nn.softmax(tf.linspace(-4.0, 4.0, 1001)).numpy()
    np.testing.assert_allclose(probabilities[0], expected_white, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(probabilities[1], np.full(1001, 1 / 1001), rtol=1e-4)


def test_unreachable_hub_explains_the_offline_options(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_cli(
        "--source", "hub", "--handle", "http://127.0.0.1:9/nothing", "--model-dir", tmp_path
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    assert "Traceback" not in done.stderr + done.stdout
    message = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(message) == 1
    assert "http://127.0.0.1:9/nothing" in message[0]
    for option in OFFLINE_OPTIONS:
        assert option in message[0]
    assert list(tmp_path.rglob("*")) == []


def test_model_source_env_is_read_and_checked(tmp_path: Path) -> None:
    bogus = run_cli("--model-dir", tmp_path, extra_env={"MODEL_SOURCE": "imagenet"})
    assert bogus.returncode == 2
    assert "MODEL_SOURCE='imagenet'" in bogus.stderr
    stray = run_cli("--weights", "x.h5", extra_env={"MODEL_SOURCE": "random"})
    assert stray.returncode == 2
    assert "--weights does not apply to --source random" in stray.stderr


def test_failed_write_leaves_neither_version_nor_temp(tmp_path: Path) -> None:
    from modelexport.writer import staged_version

    def write_half_then_fail() -> None:
        with staged_version(tmp_path, 1, force=False) as staging:
            (staging / "saved_model.pb").write_bytes(b"half written")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half_then_fail()
    assert list(tmp_path.iterdir()) == []
