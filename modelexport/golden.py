"""The golden answer every version carries: a photograph, and what a correct gateway answers.

The gateway's readiness check replays it end to end, through the gateway's own decode
and resize and then the backend, and so notices wrong weights, wrong preprocessing or
a corrupt copy (how it judges: gateway/golden.py's docstring). The answer must
therefore be what a correct gateway answers: the photograph goes through
`gateway.imaging.prepare_image`, with the gateway's library settings applied, and the
uint8 pixels through the version's own SavedModel. The TFLite copy the embedded
backend runs must give the same answer by the gateway's own rule
(`ExpectedAnswer.compare`), or the version is refused.

The written files are then read back by gateway/model_assets.py, as the gateway will
read them: any problem refuses the version, so writer and reader cannot drift apart.

A version exported with a fault (faults.py) records the answer of the correct
classifier, run in-process through the same serving module, and is refused unless
both of its runtimes answer the photograph differently.
"""

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL
import tensorflow as tf

from gateway.errors import GatewayError
from gateway.golden import (
    FORMAT,
    GOLDEN_FILENAME,
    GOLDEN_INT8_FILENAME,
    TOP_K,
    ExpectedAnswer,
    GoldenComparison,
)
from gateway.imaging import prepare_image
from gateway.library_settings import apply_library_settings
from gateway.model_assets import read_assets
from modelexport.contract import (
    ASSETS_EXTRA,
    IMAGE_SIZE,
    INPUT_NAME,
    NUM_CLASSES,
    OUTPUT_NAME,
    SIGNATURE_NAME,
)
from modelexport.errors import ExportError, VerificationFailed
from modelexport.labels import read_labels
from modelexport.options import FaultName
from modelexport.reference_photos import PHOTOS_DIR
from modelexport.serving import ServingModule
from modelexport.tflite import held_native_stderr, run_tflite

GOLDEN_PHOTO = PHOTOS_DIR / "chelsea.jpg"
PHOTO_FILENAME = "golden_photo.jpg"
PHOTO_PROVENANCE = (
    '"Chelsea the cat" by Stefan van der Walt, CC0; scikit-image 0.26.0 '
    "skimage/data/chelsea.png saved as JPEG (quality 90) by Pillow 13.0.0"
)
# Untrained weights are the touchy case: on the photograph, every pixel moved by +-1
# moves their probabilities by an L1 of about 0.22, 1% of the pixels by 0.04, while the
# TFLite copy differs by about 1e-5. Wrong preprocessing moves them further (a
# bilinear resize 0.26, swapped channels 0.59); on real weights resize.py records
# 0.19 to 0.43 for other resize filters.
L1_TOLERANCE = 0.1
# The bundled photograph is 451x300; any gateway's pixel cap admits it.
MAX_PIXELS = 1_000_000


@dataclass(frozen=True)
class GoldenCheck:
    """The golden answer as the gateway read it back, and how each runtime compared."""

    expected: ExpectedAnswer
    top1_label: str
    answers: dict[str, GoldenComparison]  # "SavedModel", "TFLite" -> against the golden answer
    fault: FaultName | None


def golden_pixels(photo: bytes) -> np.ndarray:
    """The photograph as the gateway feeds it to a 224x224 model: uint8 [1, 224, 224, 3]."""
    apply_library_settings()
    try:
        prepared = prepare_image(photo, (IMAGE_SIZE, IMAGE_SIZE), MAX_PIXELS, deadline=None)
    except GatewayError as exc:
        raise ExportError(f"the gateway cannot prepare {GOLDEN_PHOTO.name}: {exc}") from exc
    return prepared.pixels[np.newaxis]


def write_golden_answer(
    version_dir: Path,
    tflite_file: Path | None,
    *,
    int8_file: Path | None = None,
    correct_classifier: tf.Module | None = None,
    fault: FaultName | None = None,
    loaded: tf.Module | None = None,
) -> GoldenCheck:
    """Write the golden photo and answer into version_dir's assets.extra, and check them.

    The answer is the SavedModel's, or with a fault correct_classifier's (the classifier
    before faults.break_classifier). Raise VerificationFailed when the runtimes disagree
    with it, or with a fault ExportError when they do not. loaded: version_dir already
    loaded with tf.saved_model.load, if the caller has it.
    """
    photo = GOLDEN_PHOTO.read_bytes()
    pixels = golden_pixels(photo)
    if loaded is None:
        loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures[SIGNATURE_NAME]
    served = {"SavedModel": signature(**{INPUT_NAME: tf.constant(pixels)})[OUTPUT_NAME].numpy()}
    int8_row = None
    if tflite_file is not None:
        with held_native_stderr():
            served["TFLite"] = run_tflite(tflite_file, pixels)
            int8_row = None if int8_file is None else run_tflite(int8_file, pixels)[0]
    if correct_classifier is None:
        expected = served["SavedModel"][0]
        how = "this version's SavedModel (serving_default)"
    else:
        # Bound to a name: a tf.function method keeps only a weak reference to its module.
        correct = ServingModule(correct_classifier)
        expected = correct.serve(tf.constant(pixels))[OUTPUT_NAME].numpy()[0]
        how = (
            f"the correct classifier, run in-process: this version is exported with --fault "
            f"{fault} and its own graph answers differently on purpose"
        )
    extra = version_dir / ASSETS_EXTRA
    (extra / PHOTO_FILENAME).write_bytes(photo)
    document = build_document(expected, photo, how, served)
    (extra / GOLDEN_FILENAME).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if int8_row is not None:
        how = (
            "this version's int8 TensorFlow Lite copy (assets.extra/model_int8.tflite), "
            f"run by LiteRT {litert_version()}"
        )
        int8_document = build_document(int8_row, photo, how, {"TFLite int8": int8_row[None]})
        text = json.dumps(int8_document, indent=1) + "\n"
        (extra / GOLDEN_INT8_FILENAME).write_text(text, encoding="utf-8")
    answer, int8_answer = read_back(version_dir, expect_int8=int8_row is not None)
    answers = {runtime: answer.compare(rows[0]) for runtime, rows in served.items()}
    if int8_answer is not None and int8_row is not None:
        answers["TFLite int8"] = int8_answer.compare(int8_row)
    judge(answers, fault)
    return GoldenCheck(answer, read_labels()[answer.top1], answers, fault)


def build_document(
    expected: np.ndarray, photo: bytes, how: str, served: dict[str, np.ndarray]
) -> dict[str, object]:
    """golden_answer.json's fields (gateway/golden.py reads them)."""
    row = expected.astype(np.float64)
    order = np.argsort(-row, kind="stable")
    labels = read_labels()
    top = [
        {"class_id": int(i), "label": labels[i], "probability": float(row[i])}
        for i in order[:TOP_K]
    ]
    versions = f"TensorFlow {tf.__version__}, Pillow {PIL.__version__}, OpenCV {cv2.__version__}"
    return {
        "format": FORMAT,
        "photo": {
            "file": PHOTO_FILENAME,
            "sha256": hashlib.sha256(photo).hexdigest(),
            "bytes": len(photo),
            "provenance": PHOTO_PROVENANCE,
        },
        "input": {"width": IMAGE_SIZE, "height": IMAGE_SIZE, "dtype": "uint8"},
        "computed_by": (
            f"gateway.imaging.prepare_image(photo, ({IMAGE_SIZE}, {IMAGE_SIZE})) after "
            f"gateway.library_settings, then {how}; {versions}"
        ),
        "expected": {
            "top1": top[0],
            "top1_margin": float(row[order[0]] - row[order[1]]),
            "top5": top,
            "probabilities": row.tolist(),
        },
        "tolerance": {
            "l1": L1_TOLERANCE,
            "rule": "different if the L1 distance to `probabilities` exceeds `l1`; the top-1 "
            "is compared only when `top1_margin` exceeds `l1` (gateway/golden.py)",
        },
        "l1_at_export": {
            runtime: float(np.abs(rows[0].astype(np.float64) - row).sum())
            for runtime, rows in served.items()
        },
    }


def litert_version() -> str:
    """The installed LiteRT's version: it, not TensorFlow, computes the int8 answer."""
    return importlib.metadata.version("ai-edge-litert")


def read_back(
    version_dir: Path, *, expect_int8: bool = False
) -> tuple[ExpectedAnswer, ExpectedAnswer | None]:
    """Read the version's files as the gateway does; refuse the version on any problem.

    Returns the golden answer and, with expect_int8, the int8 copy's.
    """
    assets = read_assets(version_dir, NUM_CLASSES)
    missing = assets.golden is None or (expect_int8 and assets.golden_int8 is None)
    if assets.problems or missing or assets.golden is None:
        found = "; ".join(f"{p.file}: {p.problem}" for p in assets.problems) or "no golden answer"
        raise VerificationFailed(f"the gateway would not read this version cleanly: {found}")
    int8 = assets.golden_int8.expected if assets.golden_int8 is not None else None
    return assets.golden.expected, int8


def judge(answers: dict[str, GoldenComparison], fault: FaultName | None) -> None:
    """Insist that every runtime gives the golden answer, or with a fault that none does."""
    for runtime, comparison in answers.items():
        if fault is None and not comparison.agrees:
            raise VerificationFailed(
                f"the {runtime} does not give the golden answer it was written with: "
                f"{comparison.reason}"
            )
        if fault is not None and comparison.agrees:
            raise ExportError(
                f"--fault {fault}: the {runtime} still gives the golden answer "
                f"(L1 {comparison.l1:.4f}), so the fault would demonstrate nothing"
            )
