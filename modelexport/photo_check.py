"""Run a version's SavedModel and TFLite copy on its reference photos; refuse a wrong top-1.

The warm-up batch that verify.py and tflite.py use shows that a version runs and that
its two runtimes agree; only real photographs show that the weights were ported right
(a transposed kernel or a wrong padding still gives valid probabilities).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from modelexport.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME
from modelexport.errors import VerificationFailed
from modelexport.labels import read_labels
from modelexport.reference_photos import ReferencePhoto, photo_batch
from modelexport.tflite import held_native_stderr, run_tflite

TOP_K = 3


@dataclass(frozen=True)
class Prediction:
    """One ranked class: id, label and probability."""

    class_id: int
    label: str
    probability: float


@dataclass(frozen=True)
class PhotoResult:
    """What one runtime ("SavedModel" or "TFLite") made of one photograph, best first."""

    photo: ReferencePhoto
    runtime: str
    top: tuple[Prediction, ...]


@dataclass(frozen=True)
class PhotoCheck:
    """Every runtime's top classes for every photograph, and how far the runtimes differ."""

    results: tuple[PhotoResult, ...]
    max_abs_diff: float | None  # SavedModel against TFLite; None without a TFLite copy


def check_reference_photos(
    saved_model_dir: Path,
    tflite_file: Path | None,
    photos: Sequence[ReferencePhoto],
    loaded: tf.Module | None = None,
    int8_file: Path | None = None,
) -> PhotoCheck:
    """Classify photos with both runtimes; raise VerificationFailed unless each top-1 is right.

    loaded: saved_model_dir already loaded with tf.saved_model.load, if the caller has it.
    int8_file: the int8 copy (quantize.py), held to the same photographs.
    """
    batch = photo_batch(photos)
    if loaded is None:
        loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures[SIGNATURE_NAME]
    outputs = {"SavedModel": signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()}
    if tflite_file is not None:
        with held_native_stderr():
            outputs["TFLite"] = run_tflite(tflite_file, batch)
            if int8_file is not None:
                outputs["TFLite int8"] = run_tflite(int8_file, batch)
    labels = read_labels()
    results = tuple(
        PhotoResult(photo, runtime, rank(probabilities[index], labels))
        for index, photo in enumerate(photos)
        for runtime, probabilities in outputs.items()
    )
    for result in results:
        best = result.top[0]
        if best.class_id != result.photo.expected_class:
            expected = result.photo.expected_class
            raise VerificationFailed(
                f"the {result.runtime} classifies {result.photo.name} as {best.class_id} "
                f"{best.label!r} ({best.probability:.3f}), not {expected} {labels[expected]!r}: "
                "the weights or their conversion are wrong"
            )
    return PhotoCheck(results, max_difference(outputs))


def rank(probabilities: np.ndarray, labels: list[str]) -> tuple[Prediction, ...]:
    """Return the TOP_K most probable classes of one row, best first."""
    best = np.argsort(-probabilities, kind="stable")[:TOP_K]
    return tuple(Prediction(int(i), labels[i], float(probabilities[i])) for i in best)


def max_difference(outputs: dict[str, np.ndarray]) -> float | None:
    """The largest |SavedModel - TFLite| probability over the photos, if both ran."""
    if "TFLite" not in outputs:
        return None
    return float(np.max(np.abs(outputs["TFLite"].astype(np.float64) - outputs["SavedModel"])))
