"""Names and shapes from docs/model-contract.md, in one place and free of TensorFlow imports."""

IMAGE_SIZE = 224
CHANNELS = 3
NUM_CLASSES = 1001
BACKGROUND_LABEL = "background"

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
INPUT_DTYPE = "uint8"
OUTPUT_NAME = "probabilities"
OUTPUT_DTYPE = "float32"

ASSETS_EXTRA = "assets.extra"
LABELS_FILENAME = "labels.txt"
INFO_FILENAME = "export_info.json"
WARMUP_FILENAME = "tf_serving_warmup_requests"

DEFAULT_MODEL_NAME = "mobilenet"

# -1 stands for the variable batch dimension, as in TF Serving's metadata.
INPUT_SHAPE = (-1, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
OUTPUT_SHAPE = (-1, NUM_CLASSES)
