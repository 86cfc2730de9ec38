"""The TensorFlow Lite copy of serving_default, for the gateway's embedded backend.

It is written to assets.extra/ (which TF Serving ignores) inside the staging folder
and checked against the SavedModel it came from before the version is published.
"""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from modelexport.contract import INPUT_DTYPE, INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME, SIGNATURE_NAME
from modelexport.errors import ExportError, VerificationFailed
from modelexport.verify import CHECK_BATCH
from modelexport.warmup import warmup_images

TFLITE_FILENAME = "model.tflite"
CONVERTER = "tf.lite from_concrete_functions, float32"
# Float32 TensorFlow Lite follows TensorFlow to about 1e-6 here; quantising would not.
TOLERANCE = 1e-4
TOP_K = 5


@dataclass(frozen=True)
class TfliteCheck:
    """The written .tflite file and how closely it followed the SavedModel on the check batch."""

    path: Path
    size: int
    batch_shape: tuple[int, ...]
    max_abs_diff: float

    def to_json(self) -> dict[str, object]:
        """Return the export_info.json form (docs/model-contract.md)."""
        return {
            "file": self.path.name,
            "bytes": self.size,
            "max_abs_diff_vs_savedmodel": self.max_abs_diff,
            "converter": CONVERTER,
        }


def write_tflite(
    saved_model_dir: Path, destination: Path, loaded: tf.Module | None = None
) -> TfliteCheck:
    """Convert the SavedModel's serving_default to destination and check it against TensorFlow.

    loaded: saved_model_dir already loaded with tf.saved_model.load, if the caller has it.
    """
    if loaded is None:
        loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures[SIGNATURE_NAME]
    batch = warmup_images(CHECK_BATCH)
    expected = signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()
    with held_native_stderr():
        destination.write_bytes(convert(signature, loaded))
        actual = run_tflite(destination, batch)
    max_abs_diff = compare_outputs(expected, actual)
    return TfliteCheck(destination, destination.stat().st_size, batch.shape, max_abs_diff)


def convert(signature: tf.types.experimental.ConcreteFunction, owner: object) -> bytes:
    """Convert one concrete function, with the loaded object owning its variables, to TFLite."""
    # from_saved_model(directory) does not freeze this tf.Module-wrapped Keras 3 model's
    # variables: it writes a 190 KB file whose outputs are NaN. Converting the loaded
    # function together with its owner folds the weights into the file (about 14 MB).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([signature], owner)
    try:
        model: bytes = converter.convert()
    # TensorFlow 2.20 keeps the converter's ConverterError private, so catch at this call only.
    except Exception as exc:
        raise ExportError(
            f"TensorFlow Lite could not convert {SIGNATURE_NAME}: {exc}. "
            "Pass --no-tflite to export for TF Serving only."
        ) from exc
    return model


def run_tflite(path: Path, batch: np.ndarray) -> np.ndarray:
    """Check the file's signature against the contract and return its probabilities for batch."""
    interpreter = Interpreter(model_path=str(path))
    signatures = interpreter.get_signature_list()
    wanted = {SIGNATURE_NAME: {"inputs": [INPUT_NAME], "outputs": [OUTPUT_NAME]}}
    if signatures != wanted:
        raise VerificationFailed(f"{path} declares signatures {signatures}; expected {wanted}")
    runner = interpreter.get_signature_runner(SIGNATURE_NAME)
    images = runner.get_input_details()[INPUT_NAME]
    dtype, shape = np.dtype(images["dtype"]).name, tuple(images["shape_signature"].tolist())
    if (dtype, shape) != (INPUT_DTYPE, INPUT_SHAPE):
        raise VerificationFailed(
            f"{path} takes {INPUT_NAME} as {dtype} {list(shape)}; "
            f"the contract wants {INPUT_DTYPE} {list(INPUT_SHAPE)}"
        )
    # The runner resizes its [1, 224, 224, 3] input to the batch it is given.
    probabilities: np.ndarray = runner(**{INPUT_NAME: batch})[OUTPUT_NAME]
    return probabilities


def compare_outputs(expected: np.ndarray, actual: np.ndarray) -> float:
    """Return the largest absolute difference; raise VerificationFailed if TFLite drifts."""
    what = TFLITE_FILENAME
    if actual.shape != expected.shape:
        raise VerificationFailed(
            f"{what} returned shape {list(actual.shape)}; the SavedModel {list(expected.shape)}"
        )
    if not np.all(np.isfinite(actual)):
        raise VerificationFailed(
            f"{what} returned non-finite probabilities for the check batch (weights not frozen?)"
        )
    expected_top, actual_top = top_classes(expected), top_classes(actual)
    if not np.array_equal(expected_top, actual_top):
        raise VerificationFailed(
            f"{what} ranks the top {TOP_K} classes {actual_top.tolist()}; "
            f"the SavedModel {expected_top.tolist()}"
        )
    max_abs_diff = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    if max_abs_diff > TOLERANCE:
        raise VerificationFailed(
            f"{what}'s probabilities differ from the SavedModel's by up to {max_abs_diff:.2e} "
            f"(tolerance {TOLERANCE:.0e})"
        )
    return max_abs_diff


def top_classes(probabilities: np.ndarray) -> np.ndarray:
    """Return each row's TOP_K class ids, most probable first."""
    return np.argsort(-probabilities, axis=-1, kind="stable")[:, :TOP_K]


@contextmanager
def held_native_stderr() -> Iterator[None]:
    """Hold back whatever is written to file descriptor 2; replay it only if the body raises.

    The converter and the interpreter log through absl and TensorFlow Lite's own logger,
    which ignore TF_CPP_MIN_LOG_LEVEL; after a good conversion their lines ("Ignored
    output_format.", "Created TensorFlow Lite XNNPACK delegate for CPU.") are noise.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    succeeded = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            succeeded = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not succeeded:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
