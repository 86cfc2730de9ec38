"""The int8 TensorFlow Lite copy (`export_model.py --quantize int8`), checked before it ships.

TensorFlow Lite's post-training full-integer quantisation: weights int8 per channel,
every activation int8 with a range calibrated on real photographs (calibration.py),
every convolution, addition, pooling and the classifier layer run by int8 kernels.
Only the final softmax stays float32 (why: at `quantize`). The file keeps the
contract's signature: uint8 images in (cast and quantised at the input), float32
probabilities out, so the gateway feeds it exactly what it feeds the float copy.

Checked at export, or nothing is published: the signature; that no float tensor is
left but the two ends; and its top-1 against the float TFLite copy's on every
evaluation photograph and crop, at least MIN_TOP1_AGREEMENT (the measured figure is
written to export_info.json). Whether it is faster depends on the CPU: int8 kernels
gain most with dot-product instructions (AVX-VNNI, AVX512-VNNI, Arm dotprod); see
docs/int8.md for what this project measured.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from modelexport.calibration import (
    CALIBRATION_IMAGES,
    JudgedImage,
    evaluation_images,
    representative_images,
)
from modelexport.contract import OUTPUT_NAME, SIGNATURE_NAME
from modelexport.errors import ExportError, VerificationFailed
from modelexport.tflite import held_native_stderr, run_tflite

INT8_TFLITE_FILENAME = "model_int8.tflite"
CONVERTER = (
    "tf.lite from_concrete_functions, post-training integer quantisation (int8 "
    "activations, per-channel int8 weights; the final softmax float32), uint8 input"
)
# Below this, the int8 copy answers too differently to be offered as the same model.
# EfficientNet-Lite0 measured 0.817 over this project's 104 photographs and crops, where
# the textures and the deep-sky picture (no ImageNet class, flat answers) hold most of
# the differences (docs/int8.md); a calibration on noise lands far lower.
MIN_TOP1_AGREEMENT = 0.75
# Float tensors besides the output: the uint8 input cast before it is quantised, and the
# dequantised logits the float softmax reads.
FLOAT_TENSORS_ALLOWED = 2
DEBUG_IMAGES = 2  # the debugger's own pass over a few inputs (its statistics go unused)


@dataclass(frozen=True)
class Int8Check:
    """The written int8 file and how its answers compare with the float copy's."""

    path: Path
    size: int
    calibration_images: int
    judged: int
    top1_agreement: float
    disagreements: tuple[str, ...]  # "photo.jpg crop ..." for each differing top-1

    def to_json(self) -> dict[str, object]:
        """Return the export_info.json form (docs/model-contract.md)."""
        return {
            "file": self.path.name,
            "bytes": self.size,
            "converter": CONVERTER,
            "calibration_images": self.calibration_images,
            "evaluation_images": self.judged,
            "top1_agreement_vs_float": round(self.top1_agreement, 4),
        }


def write_int8_tflite(
    loaded: tf.Module, float_tflite: Path, destination: Path, *, trained: bool = True
) -> Int8Check:
    """Quantise loaded's serving_default to destination and check it against float_tflite.

    trained False (random weights): the agreement is measured and recorded but not
    enforced, since untrained answers are near-uniform and any rounding flips them.
    """
    with held_native_stderr():
        destination.write_bytes(quantize(loaded))
        check_integer_only(destination)
        judged = evaluation_images()
        batch = np.stack([image.pixels for image in judged])
        expected = top1(run_tflite(float_tflite, batch))
        actual = top1(run_tflite(destination, batch))
    return judge(destination, judged, expected, actual, enforce=trained)


def quantize(loaded: tf.Module) -> bytes:
    """Convert loaded's serving_default to int8, all but its last softmax."""
    signature = loaded.signatures[SIGNATURE_NAME]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([signature], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Float kernels are allowed only so that the softmax, denied quantisation below, has one.
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    converter.representative_dataset = lambda: ([batch] for batch in representative_images())
    # An int8 softmax answers in steps of 1/256: every class under 0.002 reads 0, the
    # probabilities sum to 0.77-0.96 and near-equal classes tie. Its float32 softmax over
    # the dequantised logits costs microseconds. TensorFlow's way to leave one operator
    # in float is the quantisation debugger's deny list.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([batch] for batch in representative_images(DEBUG_IMAGES)),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["SOFTMAX"]),
    )
    try:
        model: bytes = debugger.get_nondebug_quantized_model()
    # TensorFlow 2.20 keeps the converter's ConverterError private, so catch at this call.
    except Exception as exc:
        raise ExportError(f"TensorFlow Lite could not quantise {SIGNATURE_NAME}: {exc}") from exc
    return model


def check_integer_only(path: Path) -> None:
    """Refuse a file holding float tensors but the input's cast, the dequantised logits the
    float softmax reads, and the output."""
    interpreter = Interpreter(model_path=str(path))
    output = interpreter.get_signature_runner(SIGNATURE_NAME).get_output_details()[OUTPUT_NAME]
    floats = [
        tensor["name"]
        for tensor in interpreter.get_tensor_details()
        if tensor["dtype"] == np.float32 and tensor["index"] != output["index"]
    ]
    if len(floats) > FLOAT_TENSORS_ALLOWED:
        raise VerificationFailed(
            f"{path.name} keeps {len(floats)} float tensors inside the model "
            f"({', '.join(floats[:5])}...): it is not fully integer"
        )


def top1(probabilities: np.ndarray) -> np.ndarray:
    """Each row's most probable class (the lowest id on a tie)."""
    best: np.ndarray = np.argmax(probabilities, axis=-1)
    return best


def judge(
    destination: Path,
    judged: list[JudgedImage],
    expected: np.ndarray,
    actual: np.ndarray,
    *,
    enforce: bool = True,
) -> Int8Check:
    """Measure top-1 agreement; with enforce, raise VerificationFailed below the minimum."""
    differing = tuple(
        f"{image.photo.name} {image.view}"
        for image, want, got in zip(judged, expected, actual, strict=True)
        if want != got
    )
    agreement = 1.0 - len(differing) / len(judged)
    if enforce and agreement < MIN_TOP1_AGREEMENT:
        raise VerificationFailed(
            f"{destination.name} gives the float model's top-1 on {agreement:.1%} of "
            f"{len(judged)} photographs and crops (at least {MIN_TOP1_AGREEMENT:.0%} needed)"
        )
    return Int8Check(
        destination,
        destination.stat().st_size,
        CALIBRATION_IMAGES,
        len(judged),
        agreement,
        differing,
    )
