"""The generated TF Serving messages (gateway/tfserving/messages.py) against the official ones.

The official classes come from tensorflow and tensorflow-serving-api, imported into
the same process: that both load side by side is itself part of what is checked
(test/deploy/test_generated_protos.py tries both import orders).
"""

import numpy as np
import pytest
from google.protobuf import descriptor_pool
from tensorflow.core.framework import (
    resource_handle_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorflow_serving.apis import model_pb2, predict_pb2

from gateway.backend import ModelSignature
from gateway.errors import BackendError
from gateway.tfserving import protos
from gateway.tfserving.grpc_transport import read_reply
from gateway.tfserving.messages import (
    answering_version,
    output_tensor,
    predict_request,
    read_tensor,
    write_tensor,
)
from gateway.tfserving.protos import model_pb2 as our_model_pb2
from gateway.tfserving.protos import predict_pb2 as our_predict_pb2
from gateway.tfserving.protos import resource_handle_pb2 as our_resource_handle_pb2
from gateway.tfserving.protos import tensor_pb2 as our_tensor_pb2
from gateway.tfserving.protos import tensor_shape_pb2 as our_tensor_shape_pb2
from gateway.tfserving.protos import types_pb2 as our_types_pb2

SIGNATURE = ModelSignature(1, "images", "probabilities", (224, 224), num_classes=4)

GENERATED_AND_OFFICIAL = [
    (our_predict_pb2, predict_pb2),
    (our_model_pb2, model_pb2),
    (our_tensor_pb2, tensor_pb2),
    (our_tensor_shape_pb2, tensor_shape_pb2),
    (our_types_pb2, types_pb2),
    (our_resource_handle_pb2, resource_handle_pb2),
]


@pytest.mark.parametrize(("ours", "official"), GENERATED_AND_OFFICIAL)
def test_each_generated_file_is_the_official_one(ours: object, official: object) -> None:
    # The serialized FileDescriptorProto: every message, field number, type and option.
    assert ours.DESCRIPTOR.name == official.DESCRIPTOR.name
    assert ours.DESCRIPTOR.serialized_pb == official.DESCRIPTOR.serialized_pb


def test_the_generated_classes_live_in_their_own_pool() -> None:
    assert our_tensor_pb2.TensorProto is not tensor_pb2.TensorProto
    assert our_tensor_pb2.DESCRIPTOR.pool is protos.POOL
    assert tensor_pb2.DESCRIPTOR.pool is descriptor_pool.Default()
    assert our_predict_pb2.PredictRequest.__module__ == "gateway.tfserving.protos.predict_pb2"


def test_predict_request_parses_with_the_official_message() -> None:
    images = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    wire = predict_request("mobilenet", "serving_default", {"images": images}).SerializeToString()
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
    images = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    ours = predict_request("mobilenet", "serving_default", {"images": images}, version, label)
    assert ours.model_spec.SerializeToString() == expected.SerializeToString()
    request = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert request.model_spec == expected
    choice = request.model_spec.WhichOneof("version_choice")
    assert choice == ("version" if version is not None else "version_label" if label else None)


def test_a_version_and_a_label_together_are_refused() -> None:
    images = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not both"):
        predict_request("mobilenet", "serving_default", {"images": images}, 1, "stable")


def official_response(values: np.ndarray, packed_content: bool, version: int | None) -> bytes:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "mobilenet"
    if version is not None:
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
    wire = official_response(values, packed_content, version=7)
    response = our_predict_pb2.PredictResponse.FromString(wire)
    assert answering_version(response) == 7
    np.testing.assert_array_equal(read_tensor(output_tensor(response, "probabilities")), values)


def test_the_transport_reads_scores_and_version_from_the_reply() -> None:
    values = np.random.default_rng(5).random((2, 4), dtype=np.float32)
    probabilities, version = read_reply(official_response(values, False, 3), SIGNATURE, 2)
    np.testing.assert_array_equal(probabilities, values)
    assert version == 3
    _, unsaid = read_reply(official_response(values, True, None), SIGNATURE, 2)
    assert unsaid is None


def test_float_tensor_round_trips_through_the_official_message() -> None:
    values = np.array([[0.25, -1.5, 3.0e-8]], dtype=np.float32)
    ours = our_tensor_pb2.TensorProto()
    write_tensor(ours, values)
    official = tensor_pb2.TensorProto.FromString(ours.SerializeToString())
    assert official.dtype == types_pb2.DT_FLOAT
    back = our_tensor_pb2.TensorProto.FromString(official.SerializeToString())
    np.testing.assert_array_equal(read_tensor(back), values)


def test_a_tensor_of_the_wrong_dtype_is_refused() -> None:
    tensor = our_tensor_pb2.TensorProto()
    write_tensor(tensor, np.zeros((1, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="DT_FLOAT"):
        read_tensor(tensor)


def test_a_tensor_whose_values_do_not_fill_its_shape_is_refused() -> None:
    wire = official_response(np.ones((2, 4), dtype=np.float32), False, version=1)
    response = our_predict_pb2.PredictResponse.FromString(wire)
    response.outputs["probabilities"].tensor_shape.dim[1].size = 5
    with pytest.raises(ValueError, match="carries 8 values"):
        read_tensor(output_tensor(response, "probabilities"))


def test_truncated_bytes_are_refused() -> None:
    wire = official_response(np.ones((1, 4), dtype=np.float32), True, version=1)
    with pytest.raises(BackendError, match="cannot read"):
        read_reply(wire[:-3], SIGNATURE, 1)


def test_a_reply_without_the_signatures_output_is_refused() -> None:
    wire = official_response(np.ones((1, 4), dtype=np.float32), True, version=1)
    other = ModelSignature(1, "images", "logits", (224, 224), num_classes=4)
    with pytest.raises(BackendError, match="cannot read"):
        read_reply(wire, other, 1)
