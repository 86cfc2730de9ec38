"""Export options and their defaults, importable without loading TensorFlow."""

from typing import Literal

SourceName = Literal["hub", "random", "keras-weights"]
SOURCES: tuple[SourceName, ...] = ("hub", "random", "keras-weights")
DEFAULT_SOURCE: SourceName = "hub"
SOURCE_ENV = "MODEL_SOURCE"

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5"
DEFAULT_SEED = 42
DEFAULT_MODEL_DIR = "models"
KERAS_WEIGHTS_FILENAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
