"""Where a uint8 batch becomes a PredictRequest and a PredictResponse's tensor becomes scores.

The classes are generated from TF Serving's and TensorFlow's own .proto files
(gateway/tfserving/protos/, `make protos`), so the gateway speaks TF Serving's gRPC
API with protobuf alone, without TensorFlow (docs/tf-serving-protocol.md §6).
"""

import numpy as np

from gateway.tfserving.protos.model_pb2 import ModelSpec
from gateway.tfserving.protos.predict_pb2 import PredictRequest, PredictResponse
from gateway.tfserving.protos.tensor_pb2 import TensorProto
from gateway.tfserving.protos.types_pb2 import DT_FLOAT, DT_UINT8

_DATA_TYPES = {np.dtype(np.uint8): DT_UINT8, np.dtype(np.float32): DT_FLOAT}


def predict_request(
    model_name: str,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    version: int | None = None,
    version_label: str | None = None,
) -> PredictRequest:
    """A PredictRequest for `inputs`, each array's bytes in its tensor's tensor_content."""
    request = PredictRequest()
    write_model_spec(request.model_spec, model_name, signature_name, version, version_label)
    for name, array in inputs.items():
        # Written in place: building a TensorProto apart and putting it into the map
        # would copy the pixels once more.
        write_tensor(request.inputs[name], array)
    return request


def write_model_spec(
    spec: ModelSpec,
    name: str,
    signature_name: str,
    version: int | None = None,
    version_label: str | None = None,
) -> None:
    """Name the model, signature and version; neither version nor label asks for the latest.

    Both at once cannot be sent: they are one oneof, and the second would silently win.
    """
    if version is not None and version_label is not None:
        raise ValueError("a ModelSpec names a version or a version label, not both")
    spec.name = name
    spec.signature_name = signature_name
    if version is not None:
        # Int64Value is a message: present (so version 0 is asked for) once its value is set.
        spec.version.value = version
    if version_label is not None:
        spec.version_label = version_label


def write_tensor(tensor: TensorProto, array: np.ndarray) -> None:
    """A uint8 or float32 array as dtype, shape and tensor_content.

    `tobytes()` is the one copy made here: protobuf takes only `bytes` (not a
    memoryview or the array) and keeps its own copy in the message.
    """
    tensor.dtype = _DATA_TYPES[array.dtype]
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(array).tobytes()


def read_tensor(tensor: TensorProto) -> np.ndarray:
    """A DT_FLOAT TensorProto as a float32 array, from tensor_content or float_val.

    TF Serving fills float_val unless it runs with --enable_serialization_as_tensor_content,
    so both forms must be read. Raises ValueError for another dtype or a count of values
    that does not fill the shape.
    """
    if tensor.dtype != DT_FLOAT:
        raise ValueError(f"expected a DT_FLOAT tensor, got dtype {tensor.dtype}")
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    content = tensor.tensor_content  # each read of a bytes field copies it: read once
    if content:
        values = np.frombuffer(content, dtype="<f4")
    else:
        # protobuf's C container hands numpy its floats in one block (its __array__);
        # iterating it would build a Python float per value, over 100 times slower.
        values = np.asarray(tensor.float_val, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"tensor of shape {shape} carries {values.size} values")
    return values.reshape(shape)


def output_tensor(response: PredictResponse, name: str) -> TensorProto:
    """The output called `name`; KeyError when the response has none."""
    # Indexing a map of messages would add the missing entry instead of raising.
    if name not in response.outputs:
        raise KeyError(name)
    tensor: TensorProto = response.outputs[name]
    return tensor


def answering_version(response: PredictResponse) -> int | None:
    """The version TF Serving says answered; None when the response does not say."""
    return response.model_spec.version.value if response.model_spec.HasField("version") else None
