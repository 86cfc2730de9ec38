"""Reload a written SavedModel, check its signature against the contract and run one batch."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from modelexport.contract import (
    INPUT_DTYPE,
    INPUT_NAME,
    INPUT_SHAPE,
    NUM_CLASSES,
    OUTPUT_DTYPE,
    OUTPUT_NAME,
    OUTPUT_SHAPE,
    SIGNATURE_NAME,
)
from modelexport.errors import VerificationFailed
from modelexport.warmup import warmup_images

CHECK_BATCH = 2
PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TensorSummary:
    """A signature tensor as TF Serving's metadata reports it (-1 for a free dimension)."""

    dtype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        """Return the export_info.json form: {"dtype": ..., "shape": [...]}."""
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Verification:
    """What the reloaded model declares and what one inference returned."""

    inputs: dict[str, TensorSummary]
    outputs: dict[str, TensorSummary]
    batch_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


EXPECTED_INPUTS = {INPUT_NAME: TensorSummary(INPUT_DTYPE, INPUT_SHAPE)}
EXPECTED_OUTPUTS = {OUTPUT_NAME: TensorSummary(OUTPUT_DTYPE, OUTPUT_SHAPE)}


def summarise_specs(specs: Mapping[str, tf.TensorSpec]) -> dict[str, TensorSummary]:
    """Turn a signature's TensorSpecs into name -> (dtype, shape with -1 for None)."""
    return {
        name: TensorSummary(
            spec.dtype.name, tuple(-1 if size is None else size for size in spec.shape.as_list())
        )
        for name, spec in sorted(specs.items())
    }


def verify_saved_model(directory: Path, loaded: tf.Module | None = None) -> Verification:
    """Check directory's SavedModel and raise VerificationFailed on any mismatch.

    loaded is the directory as tf.saved_model.load returned it, when the caller has
    loaded it already (each load of MobileNetV2 takes about 2 s); else it is loaded here.
    """
    if loaded is None:
        loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures.get(SIGNATURE_NAME)
    if signature is None:
        raise VerificationFailed(f"{directory} has no {SIGNATURE_NAME!r} signature")
    inputs = summarise_specs(signature.structured_input_signature[1])
    outputs = summarise_specs(signature.structured_outputs)
    if (inputs, outputs) != (EXPECTED_INPUTS, EXPECTED_OUTPUTS):
        raise VerificationFailed(
            f"{directory} declares inputs {inputs} and outputs {outputs}; "
            f"the contract wants {EXPECTED_INPUTS} and {EXPECTED_OUTPUTS}"
        )
    batch = warmup_images(CHECK_BATCH)
    probabilities = signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()
    check_probabilities(probabilities, directory)
    return Verification(inputs, outputs, batch.shape, probabilities.shape)


def check_probabilities(probabilities: np.ndarray, directory: Path) -> None:
    """Insist on one finite probability row of 1001 classes per image, each summing to 1."""
    if probabilities.shape != (CHECK_BATCH, NUM_CLASSES):
        raise VerificationFailed(
            f"{directory} returned shape {probabilities.shape} for a batch of {CHECK_BATCH}"
        )
    sums = probabilities.sum(axis=-1)
    if not np.all(np.isfinite(probabilities)) or not np.allclose(
        sums, 1.0, atol=PROBABILITY_SUM_TOLERANCE
    ):
        raise VerificationFailed(f"{directory} returned probabilities summing to {sums}")
