"""The hand-written Predict codec, checked against TF Serving's official generated classes."""

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from gateway.tensor_proto import (
    decode_predict_response,
    decode_tensor,
    encode_model_spec,
    encode_predict_request,
    encode_tensor,
)


def test_predict_request_parses_with_the_official_message() -> None:
    images = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    wire = encode_predict_request("mobilenet", "serving_default", {"images": images})
    request = predict_pb2.PredictRequest.FromString(wire)
    assert request.model_spec.name == "mobilenet"
    assert request.model_spec.signature_name == "serving_default"
    tensor = request.inputs["images"]
    assert tensor.dtype == types_pb2.DT_UINT8
    assert [dim.size for dim in tensor.tensor_shape.dim] == [2, 4, 5, 3]
    decoded = np.frombuffer(tensor.tensor_content, dtype=np.uint8).reshape(2, 4, 5, 3)
    np.testing.assert_array_equal(decoded, images)
    assert request.model_spec.WhichOneof("version_choice") is None  # the latest version


def official_spec(version: int | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name="mobilenet", signature_name="serving_default")
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


@pytest.mark.parametrize(
    ("version", "label"),
    [(None, None), (1, None), (0, None), (2**63 - 1, None), (None, "stable"), (None, "café")],
)
def test_model_spec_is_byte_for_byte_the_official_one(
    version: int | None, label: str | None
) -> None:
    expected = official_spec(version, label)
    assert encode_model_spec("mobilenet", "serving_default", version, label) == (
        expected.SerializeToString()
    )
    images = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    wire = encode_predict_request(
        "mobilenet", "serving_default", {"images": images}, version, label
    )
    request = predict_pb2.PredictRequest.FromString(wire)
    assert request.model_spec == expected
    choice = request.model_spec.WhichOneof("version_choice")
    assert choice == ("version" if version is not None else "version_label" if label else None)


def test_a_version_and_a_label_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        encode_model_spec("mobilenet", "serving_default", 1, "stable")


def official_response(values: np.ndarray, packed_content: bool, version: int) -> bytes:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "mobilenet"
    response.model_spec.version.value = version
    tensor = response.outputs["probabilities"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in values.shape:
        tensor.tensor_shape.dim.add().size = size
    if packed_content:
        tensor.tensor_content = values.astype("<f4").tobytes()
    else:
        tensor.float_val.extend(values.ravel().tolist())
    return response.SerializeToString()


@pytest.mark.parametrize("packed_content", [True, False])
def test_response_is_read_from_float_val_or_tensor_content(packed_content: bool) -> None:
    values = np.random.default_rng(3).random((3, 1001), dtype=np.float32)
    response = decode_predict_response(official_response(values, packed_content, version=7))
    assert response.version == 7
    np.testing.assert_array_equal(decode_tensor(response.outputs["probabilities"]), values)


def test_float_tensor_round_trips_through_the_official_message() -> None:
    values = np.array([[0.25, -1.5, 3.0e-8]], dtype=np.float32)
    official = tensor_pb2.TensorProto.FromString(encode_tensor(values))
    assert official.dtype == types_pb2.DT_FLOAT
    np.testing.assert_array_equal(decode_tensor(official.SerializeToString()), values)


def test_a_tensor_of_the_wrong_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="DT_FLOAT"):
        decode_tensor(encode_tensor(np.zeros((1, 2), dtype=np.uint8)))


def test_truncated_bytes_are_refused() -> None:
    wire = official_response(np.ones((1, 4), dtype=np.float32), True, version=1)
    with pytest.raises(ValueError, match="truncated"):
        decode_predict_response(wire[:-3])
