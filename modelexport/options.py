"""Export options and their defaults, importable without loading TensorFlow."""

from typing import Literal

from modelexport.contract import DEFAULT_MODEL_NAME

SourceName = Literal["hub", "random", "keras-weights", "efficientnet-lite0"]
SOURCES: tuple[SourceName, ...] = ("hub", "random", "keras-weights", "efficientnet-lite0")
DEFAULT_SOURCE: SourceName = "hub"
SOURCE_ENV = "MODEL_SOURCE"
# Another architecture gets its own model folder beside mobilenet/, so TF Serving and the
# gateway never take an EfficientNet version for the next MobileNetV2 one.
SOURCE_MODEL_NAMES: dict[SourceName, str] = {"efficientnet-lite0": "efficientnet_lite0"}

# Deliberately broken versions, a testing aid for the gateway's golden-answer check
# (modelexport/faults.py): the version loads and honours the contract but answers wrong.
FaultName = Literal["broken-preprocessing"]
FAULTS: tuple[FaultName, ...] = ("broken-preprocessing",)

# Quantised copies export_model.py can add beside the float TFLite one (quantize.py).
QuantizeName = Literal["int8"]
QUANTIZATIONS: tuple[QuantizeName, ...] = ("int8",)

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5"
DEFAULT_SEED = 42
DEFAULT_MODEL_DIR = "models"
KERAS_WEIGHTS_FILENAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


def default_model_name(source: SourceName) -> str:
    """The model folder a source writes to when no name is given."""
    return SOURCE_MODEL_NAMES.get(source, DEFAULT_MODEL_NAME)
