"""What every weight source hands the exporter: a classifier and where its weights came from.

A classifier maps uint8 images [batch, 224, 224, 3] to 1001 logits, background first,
with its own normalisation inside; the serving module on top adds the softmax.
"""

from dataclasses import dataclass

import tensorflow as tf

from modelexport.reference_photos import ReferencePhoto

# exp(-50) is about 2e-22: the background class of a 1000-class model gets no probability.
BACKGROUND_MARGIN = 50.0


@dataclass(frozen=True)
class Network:
    """A classifier ready to wrap in the serving signature, with where its weights came from.

    weights_provenance is written to export_info.json as it is (None: source_detail says
    it all). reference_photos are photographs the exported version must classify right,
    or the export is refused.
    """

    classifier: tf.Module
    source: str
    source_detail: str
    trained: bool
    weights_provenance: dict[str, str] | None = None
    reference_photos: tuple[ReferencePhoto, ...] = ()


def prepend_background(logits: tf.Tensor) -> tf.Tensor:
    """Give a 1000-class model's logits the contract's background class 0, never chosen."""
    background = tf.reduce_min(logits, axis=-1, keepdims=True) - BACKGROUND_MARGIN
    return tf.concat([background, logits], axis=-1)
