"""The warm-up file TF Serving replays when it loads a version, so the first client waits less."""

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from modelexport.contract import IMAGE_SIZE, INPUT_NAME, SIGNATURE_NAME


def warmup_images(batch: int = 1) -> np.ndarray:
    """Return a deterministic uint8 batch of smooth colour gradients, shape [batch, 224, 224, 3]."""
    ramp = np.linspace(0, 255, IMAGE_SIZE, dtype=np.float32)
    rows, cols = np.meshgrid(ramp, ramp, indexing="ij")
    image = np.stack([rows, cols, 255 - (rows + cols) / 2], axis=-1).astype(np.uint8)
    return np.repeat(image[np.newaxis], batch, axis=0)


def build_warmup_log(model_name: str, images: np.ndarray) -> prediction_log_pb2.PredictionLog:
    """Build one PredictionLog whose predict request feeds images to serving_default."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE_NAME
    tensor = request.inputs[INPUT_NAME]
    tensor.dtype = tf.uint8.as_datatype_enum
    for size in images.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def write_warmup_requests(path: Path, model_name: str) -> int:
    """Write a one-record TFRecord warm-up file to path; return the number of records."""
    log = build_warmup_log(model_name, warmup_images())
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())
    return 1
