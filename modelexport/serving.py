"""The tf.Module that TF Serving runs: uint8 images in, softmax probabilities out."""

from pathlib import Path

import tensorflow as tf

from modelexport.contract import (
    CHANNELS,
    IMAGE_SIZE,
    INPUT_NAME,
    NUM_CLASSES,
    OUTPUT_NAME,
    SIGNATURE_NAME,
)

IMAGES_SPEC = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], tf.uint8, name=INPUT_NAME)


class ServingModule(tf.Module):
    """Wraps a classifier (uint8 images -> 1001 logits) in the contract's signature."""

    def __init__(self, classifier: tf.Module) -> None:
        super().__init__(name="serving")
        self.classifier = classifier

    @tf.function(input_signature=[IMAGES_SPEC])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # ensure_shape fails loudly on a wrong classifier and gives the output a static
        # [batch, 1001] shape, which TF Serving's /metadata then reports.
        logits = tf.ensure_shape(self.classifier(images), [None, NUM_CLASSES])
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}


def save_serving_model(classifier: tf.Module, directory: Path) -> None:
    """Write classifier as a SavedModel with the serving_default signature into directory."""
    module = ServingModule(classifier)
    signature = module.serve.get_concrete_function()
    tf.saved_model.save(module, str(directory), signatures={SIGNATURE_NAME: signature})
