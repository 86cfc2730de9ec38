"""Build the network for each weight source as a module that maps uint8 images to 1001 logits.

Each source keeps its own normalisation in its graph: TF Hub's MobileNetV2 expects
floats in [0, 1], Keras's MobileNetV2 expects [-1, 1], EfficientNet-Lite0
(efficientnet_source.py) (x - 127) / 128. The serving module on top only ever sees
uint8 images in and logits out.
"""

import socket
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import keras
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub

from modelexport.contract import CHANNELS, IMAGE_SIZE, NUM_CLASSES
from modelexport.digest import file_sha256
from modelexport.efficientnet_source import load_efficientnet_lite0
from modelexport.errors import ExportError, SourceUnavailable
from modelexport.network import Network, prepend_background
from modelexport.options import (
    DEFAULT_HUB_HANDLE,
    DEFAULT_SEED,
    KERAS_WEIGHTS_FILENAME,
    SOURCES,
    SourceName,
)

# A download that stalls this long is reported as unreachable instead of hanging forever.
HUB_SOCKET_TIMEOUT_S = 60.0
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
# Widens untrained logits so the top classes stand apart (see calibrate_untrained).
UNTRAINED_LOGIT_SCALE = 5.0


class HubClassifier(tf.Module):
    """TF Hub MobileNetV2: uint8 -> [0, 1] floats -> 1001 logits, background first."""

    def __init__(self, hub_model: Callable[[tf.Tensor], tf.Tensor]) -> None:
        super().__init__(name="hub_classifier")
        self.hub_model = hub_model

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.hub_model(tf.cast(images, tf.float32) / 255.0)


class KerasClassifier(tf.Module):
    """Keras MobileNetV2: uint8 -> [-1, 1] floats -> logits, padded to 1001 if it has 1000."""

    def __init__(self, model: keras.Model, add_background: bool) -> None:
        super().__init__(name="keras_classifier")
        self.model = model
        self.add_background = add_background

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        logits = self.model(tf.cast(images, tf.float32) / 127.5 - 1.0, training=False)
        return prepend_background(logits) if self.add_background else logits


def build_network(
    source: SourceName,
    *,
    handle: str | None = None,
    weights: Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Network:
    """Build the classifier for source; raise ExportError with advice when it cannot."""
    if source == "hub":
        return load_hub(handle or DEFAULT_HUB_HANDLE)
    if source == "random":
        return build_random(seed)
    if source == "keras-weights":
        if weights is None:
            raise ExportError("--source keras-weights needs --weights FILE")
        return load_keras_weights(weights)
    if source == "efficientnet-lite0":
        return load_efficientnet_lite0()
    raise ExportError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def load_hub(handle: str) -> Network:
    """Load a TF Hub MobileNetV2 classification SavedModel from a URL or a local directory."""
    remote = bool(urlparse(handle).scheme) and not Path(handle).exists()
    if not remote and not Path(handle).is_dir():
        raise ExportError(f"--handle {handle}: no such directory (expected a copied TF Hub model)")
    try:
        with socket_timeout(HUB_SOCKET_TIMEOUT_S):
            hub_model = hub.load(handle)
    except OSError as exc:
        if remote:
            raise SourceUnavailable(offline_advice(handle, exc)) from exc
        raise ExportError(f"could not read the TF Hub model in {handle}: {exc}") from exc
    except (ValueError, tarfile.TarError, tf.errors.OpError) as exc:
        raise ExportError(f"{handle} is not a loadable TF2 SavedModel: {exc}") from exc
    classifier = HubClassifier(hub_model)
    check_logits(classifier, f"--handle {handle}")
    return Network(classifier, source="tfhub", source_detail=handle, trained=True)


def build_random(seed: int) -> Network:
    """Build MobileNetV2 with untrained weights drawn from seed, so two exports are identical."""
    require_tensorflow_backend()
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(
        input_shape=INPUT_SHAPE,
        alpha=1.0,
        weights=None,
        classes=NUM_CLASSES,
        classifier_activation=None,
    )
    calibrate_untrained(model, seed)
    return Network(
        KerasClassifier(model, add_background=False),
        source="random",
        source_detail=f"seed={seed}",
        trained=False,
    )


def calibrate_untrained(model: keras.Model, seed: int) -> None:
    """Give untrained weights outputs that depend on the input.

    Freshly initialised, MobileNetV2's activations shrink layer by layer until
    its logits are about 1e-12 and every class gets exactly 1/1001, which
    would make tests of ranking and of backend agreement vacuous. Setting each
    batch norm's statistics from one seeded batch (a data-dependent
    initialisation, not training) and widening the classifier gives logits of
    order one. The weights stay untrained and are reported as such.
    """
    batch = np.random.default_rng(seed).uniform(-1.0, 1.0, (16, *INPUT_SHAPE)).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's statistics
    model(batch, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * UNTRAINED_LOGIT_SCALE, bias])


def load_keras_weights(weights: Path) -> Network:
    """Build MobileNetV2 from a local copy of Keras's 1000-class ImageNet weights."""
    if not weights.is_file():
        raise ExportError(f"--weights {weights}: no such file (expected {KERAS_WEIGHTS_FILENAME})")
    require_tensorflow_backend()
    try:
        model = keras.applications.MobileNetV2(
            input_shape=INPUT_SHAPE,
            alpha=1.0,
            weights=str(weights),
            classes=NUM_CLASSES - 1,
            classifier_activation=None,
        )
    except (ValueError, OSError) as exc:
        raise ExportError(
            f"--weights {weights} does not fit MobileNetV2 (alpha 1.0, 224x224, 1000 classes "
            f"with top); expected {KERAS_WEIGHTS_FILENAME}: {exc}"
        ) from exc
    detail = f"{weights.name} sha256={file_sha256(weights)}"
    return Network(
        KerasClassifier(model, add_background=True),
        source="keras-weights",
        source_detail=detail,
        trained=True,
    )


def require_tensorflow_backend() -> None:
    """Refuse a Keras backend whose models cannot be saved as a TensorFlow SavedModel."""
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"Keras runs on the {keras.backend.backend()!r} backend; "
            "set KERAS_BACKEND=tensorflow to export a SavedModel"
        )


def check_logits(classifier: tf.Module, what: str) -> None:
    """Run one blank image through classifier and insist on [1, 1001] float logits."""
    logits = classifier(tf.zeros((1, *INPUT_SHAPE), tf.uint8))
    if tuple(logits.shape) != (1, NUM_CLASSES) or not logits.dtype.is_floating:
        raise ExportError(
            f"{what} returns {logits.dtype.name} {list(logits.shape)}; expected float logits of "
            f"shape [batch, {NUM_CLASSES}] (an ImageNet classification model, background first)"
        )


def offline_advice(handle: str, exc: OSError) -> str:
    """Explain, in one paragraph, that TF Hub is unreachable and how to export offline."""
    reason = getattr(exc, "reason", None) or exc
    return (
        f"Could not download the TF Hub model {handle} ({reason}). This machine cannot reach "
        "TF Hub (its models are now served from Kaggle). To export without network access use "
        "--source efficientnet-lite0 (real ImageNet weights, EfficientNet-Lite0, shipped in a "
        "package of requirements-export.txt; model name efficientnet_lite0), "
        "--source random (untrained weights, for wiring and tests only), "
        f"--source keras-weights --weights FILE (a local copy of {KERAS_WEIGHTS_FILENAME}), "
        "or --source hub --handle /local/dir (a copied TF Hub SavedModel directory)."
    )


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Give urllib (which tensorflow_hub calls without a timeout) a bound, then restore it."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
