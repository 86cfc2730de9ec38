"""Tiny SavedModels for the TF Serving double's tests, written with tf.Module.

- `write_half_plus_two`: TF Serving's test fixture half_plus_two, y = 0.5 * x + offset.
  Its signature_def declares x and y as float [-1, 1] like the fixture
  (TFS/servables/tensorflow/testdata/saved_model_half_plus_two_*), while the graph
  accepts any shape: the fixture's TF1 graph feeds an identity node, which is why
  TF Serving's tests can send [[1.0, 2.0], [3.0, 4.0]] and [3.0, 4.0] to it. Extra
  signatures cover several inputs/outputs ("add_sub", which TF's runtime rejects for
  unequal lengths), strings ("echo_bytes") and a dtype JSON cannot feed ("float16_input").
- `write_image_model`: the project's contract (docs/model-contract.md): uint8
  images [N, 224, 224, 3] -> float32 probabilities [N, 1001], a softmax over a
  random projection of the mean colour (not MobileNetV2: far too slow to build).
- `write_warmup_requests`: assets.extra/tf_serving_warmup_requests records.
- `publish`: write into a temporary sibling directory, then rename it to <N>.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

IMAGE_SHAPE = (224, 224, 3)
NUM_CLASSES = 1001


class _HalfPlusTwo(tf.Module):
    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = tf.Variable(offset, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 0.5 * x + self.offset}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="a"),
            tf.TensorSpec([None], tf.float32, name="b"),
        ]
    )
    def add_sub(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"sum": a + b, "difference": a - b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="raw_bytes")])
    def echo_bytes(self, raw_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"echo_bytes": raw_bytes, "length": tf.strings.length(raw_bytes)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float16, name="h")])
    def float16_input(self, h: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.cast(h, tf.float32)}


class _ImageModel(tf.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        weights = np.random.default_rng(seed).normal(size=(3, NUM_CLASSES)).astype(np.float32)
        self.weights = tf.Variable(weights)

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name="images")])
    def predict(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        colour = tf.reduce_mean(tf.cast(images, tf.float32) / 255.0, axis=[1, 2])
        return {"probabilities": tf.nn.softmax(tf.matmul(colour, self.weights))}


def write_half_plus_two(path: str, offset: float = 2.0) -> None:
    """Save half_plus_two (y = 0.5 * x + offset) with the fixture's [-1, 1] signature shapes."""
    module = _HalfPlusTwo(offset)
    signatures = {
        "serving_default": module.predict.get_concrete_function(),
        "add_sub": module.add_sub.get_concrete_function(),
        "echo_bytes": module.echo_bytes.get_concrete_function(),
        "float16_input": module.float16_input.get_concrete_function(),
    }
    tf.saved_model.save(module, path, signatures=signatures)
    _declare_shape(path, "serving_default", [-1, 1])


def _declare_shape(path: str, signature: str, dims: list[int]) -> None:
    pb_path = os.path.join(path, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(pb_path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    signature_def = saved_model.meta_graphs[0].signature_def[signature]
    for info in [*signature_def.inputs.values(), *signature_def.outputs.values()]:
        info.tensor_shape.Clear()
        for size in dims:
            info.tensor_shape.dim.add(size=size)
    with open(pb_path, "wb") as handle:
        handle.write(saved_model.SerializeToString())


def write_image_model(path: str, seed: int = 0) -> None:
    """Save the contract's uint8 image classifier."""
    module = _ImageModel(seed)
    tf.saved_model.save(
        module, path, signatures={"serving_default": module.predict.get_concrete_function()}
    )


def image_model_probabilities(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """What write_image_model(seed) computes, in numpy, for checking answers."""
    weights = np.random.default_rng(seed).normal(size=(3, NUM_CLASSES)).astype(np.float32)
    logits = (images.astype(np.float32) / 255.0).mean(axis=(1, 2)) @ weights
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def write_warmup_requests(
    path: str, requests: list[Mapping[str, np.ndarray]], signature_name: str = ""
) -> None:
    """Write predict_log warm-up records into <path>/assets.extra."""
    directory = os.path.join(path, "assets.extra")
    os.makedirs(directory, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(directory, "tf_serving_warmup_requests")) as writer:
        for inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature_name
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def publish(base_path: str, version: int, write: Callable[[str], None]) -> str:
    """Write a version next to the base path's versions, then rename it into place."""
    staging = os.path.join(base_path, f"tmp-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    final = os.path.join(base_path, str(version))
    os.rename(staging, final)
    return final
