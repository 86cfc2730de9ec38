"""The TF Serving double's gRPC API (tfserving_double/grpc_*.py), driven as a subprocess.

Calls go through the official stubs from tensorflow_serving.apis. Expected
values come from docs/tf-serving-protocol.md (REST §1-§5, gRPC §6-§7)
and the TF Serving sources the double cites (predict_util.cc,
tensorflow/cc/saved_model/util.cc, get_model_status_impl.cc,
get_model_metadata_impl.cc); where both protocols carry the same data, the
double's REST answer is the expected value.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import double_models
from double_process import Double, serve
from processes import ROOT, child_env, free_port

IMAGE = "mobilenet"
HALF = "half_plus_two"
SHAPE = double_models.IMAGE_SHAPE


@dataclass
class GrpcDouble:
    """A running double with its gRPC channel and stubs."""

    double: Double
    grpc_port: int
    channel: grpc.Channel

    @property
    def rest_url(self) -> str:
        return self.double.url

    @property
    def predictions(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @property
    def models(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)


def serve_grpc(base_path: Path, log_path: Path, *flags: str) -> Iterator[GrpcDouble]:
    """Serve `base_path` with gRPC on a free port (a fixture's body), through `serve`."""
    grpc_port = free_port()
    double = Double(
        log_path,
        f"--model_name={base_path.name}",
        f"--model_base_path={base_path}",
        f"--port={grpc_port}",
        *flags,
    )
    for ready in serve(double):
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield GrpcDouble(ready, grpc_port, channel)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name in (IMAGE, HALF):
        (root / name).mkdir()
    double_models.publish(
        str(root / IMAGE), 1, lambda path: double_models.write_image_model(path, seed=7)
    )
    double_models.publish(str(root / HALF), 1, double_models.write_half_plus_two)
    return root


@pytest.fixture(scope="module")
def image(store: Path, control_port: int) -> Iterator[GrpcDouble]:
    yield from serve_grpc(store / IMAGE, store / "image.log", f"--control_port={control_port}")


@pytest.fixture(scope="module")
def half_content(store: Path) -> Iterator[GrpcDouble]:
    yield from serve_grpc(
        store / HALF, store / "half.log", "--enable_serialization_as_tensor_content=true"
    )


def images(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *SHAPE), np.uint8)


def predict_request(
    inputs: dict[str, tensor_pb2.TensorProto], name: str = IMAGE, signature: str = ""
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    return request


def int_val_proto(
    values: np.ndarray, shape: tuple[int, ...] | None = None
) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=values.ravel().tolist())
    for size in values.shape if shape is None else shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def rpc_error(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def decode(proto: tensor_pb2.TensorProto, dtype: tf.DType) -> np.ndarray:
    """Decode with TensorFlow's C++ Tensor::FromProto (both typed fields and tensor_content)."""
    return tf.io.parse_tensor(proto.SerializeToString(), dtype).numpy()


# Start-up


def test_ready_line_names_both_ports(image: GrpcDouble) -> None:
    assert image.double.ready_line == (
        f"tfserving_double: REST on 127.0.0.1:{image.double.port} and gRPC on 127.0.0.1:"
        f"{image.grpc_port} serving {IMAGE} versions [1]"
    )


# Predict


def test_tensor_content_and_int_val_give_the_rest_outputs(image: GrpcDouble) -> None:
    batch = images(2)
    as_content = tf.make_tensor_proto(batch)
    assert as_content.tensor_content
    assert not as_content.int_val
    by_content = image.predictions.Predict(predict_request({"images": as_content}), timeout=30)
    by_int_val = image.predictions.Predict(
        predict_request({"images": int_val_proto(batch)}), timeout=30
    )
    rest = httpx.post(
        f"{image.rest_url}/v1/models/{IMAGE}:predict",
        content=orjson.dumps({"inputs": batch}, option=orjson.OPT_SERIALIZE_NUMPY),
        timeout=30,
    ).json()["outputs"]

    output = by_content.outputs["probabilities"]
    assert output.dtype == types_pb2.DT_FLOAT
    assert [dim.size for dim in output.tensor_shape.dim] == [2, double_models.NUM_CLASSES]
    assert len(output.float_val) == 2 * double_models.NUM_CLASSES
    assert not output.tensor_content
    values = np.array(output.float_val, np.float32).reshape(2, -1)
    np.testing.assert_array_equal(values, np.array(rest, np.float32))
    assert by_int_val.outputs["probabilities"] == output
    np.testing.assert_allclose(
        values, double_models.image_model_probabilities(batch, seed=7), rtol=1e-5, atol=1e-7
    )
    assert list(by_content.outputs) == ["probabilities"]
    assert json_format.MessageToDict(by_content.model_spec) == {
        "name": IMAGE,
        "version": "1",
        "signatureName": "serving_default",
    }


def test_short_int_val_repeats_its_last_value_and_wraps_like_uint8(image: GrpcDouble) -> None:
    sevens = tf.make_tensor_proto(np.full((1, *SHAPE), 7, np.uint8))
    short = int_val_proto(np.array([263]), (1, *SHAPE))
    outputs = [
        image.predictions.Predict(predict_request({"images": proto}), timeout=30).outputs
        for proto in (sevens, short)
    ]
    assert outputs[0] == outputs[1]


def test_large_batches_pass_the_default_4_mb_limit(image: GrpcDouble) -> None:
    batch = images(32, seed=3)
    request = predict_request({"images": tf.make_tensor_proto(batch)})
    assert request.ByteSize() > 4 * 1024 * 1024
    response = image.predictions.Predict(request, timeout=60)
    values = decode(response.outputs["probabilities"], tf.float32)
    np.testing.assert_allclose(
        values, double_models.image_model_probabilities(batch, seed=7), rtol=1e-5, atol=1e-7
    )


def test_specific_version_runs_and_names_itself(image: GrpcDouble) -> None:
    request = predict_request({"images": tf.make_tensor_proto(images(1))})
    request.model_spec.version.value = 1
    assert image.predictions.Predict(request, timeout=30).model_spec.version.value == 1


@pytest.mark.parametrize(
    ("spec", "rest_path", "code", "message"),
    [
        (
            {"name": IMAGE, "version": 99},
            f"/v1/models/{IMAGE}/versions/99:predict",
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: Specific({IMAGE}, 99)",
        ),
        (
            {"name": "nope"},
            "/v1/models/nope:predict",
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            {"name": IMAGE, "version_label": "stable"},
            f"/v1/models/{IMAGE}/labels/stable:predict",
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: stable",
        ),
    ],
)
def test_servable_errors_match_rest(
    image: GrpcDouble, spec: dict, rest_path: str, code: grpc.StatusCode, message: str
) -> None:
    request = predict_request({"images": tf.make_tensor_proto(images(1))})
    request.model_spec.name = spec["name"]
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "version_label" in spec:
        request.model_spec.version_label = spec["version_label"]
    error = rpc_error(image.predictions.Predict, request, timeout=30)
    assert (error.code(), error.details()) == (code, message)
    rest = httpx.post(image.rest_url + rest_path, json={"inputs": [[[[0, 0, 0]]]]}, timeout=30)
    assert rest.json() == {"error": message}


def bad_content() -> tensor_pb2.TensorProto:
    proto = tf.make_tensor_proto(images(1))
    proto.tensor_content = proto.tensor_content[:-1]
    return proto


@pytest.mark.parametrize(
    ("inputs", "output_filter", "message"),
    [
        (
            {"images": tf.make_tensor_proto(np.zeros((1, *SHAPE), np.float32))},
            [],
            "Expects arg[0] to be uint8 but float is provided",
        ),
        (
            {},
            [],
            "input size does not match signature: 0!=1 len({}) != len({images}). "
            "Sent extra: {}. Missing but required: {images}.",
        ),
        (
            {"pictures": tf.make_tensor_proto(images(1))},
            [],
            "Signature input alias: images(feed name: serving_default_images:0) not found in "
            "request and no default value provided. Inputs expected to be in the request "
            "{pictures}, or default input alias set: ",
        ),
        ({"images": bad_content()}, [], "tensor parsing error: images"),
        (
            {"images": tf.make_tensor_proto(images(1))},
            ["logits"],
            "output tensor alias not found in signature: logits Outputs expected to be in the "
            "set {probabilities}.",
        ),
    ],
)
def test_bad_requests_are_invalid_argument(
    image: GrpcDouble,
    inputs: dict[str, tensor_pb2.TensorProto],
    output_filter: list[str],
    message: str,
) -> None:
    request = predict_request(inputs)
    request.output_filter.extend(output_filter)
    error = rpc_error(image.predictions.Predict, request, timeout=30)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_missing_model_spec_and_wrong_shape_are_invalid_argument(image: GrpcDouble) -> None:
    request = predict_request({"images": tf.make_tensor_proto(images(1))})
    request.ClearField("model_spec")
    error = rpc_error(image.predictions.Predict, request, timeout=30)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    small = predict_request({"images": tf.make_tensor_proto(np.zeros((1, 2, 2, 3), np.uint8))})
    assert rpc_error(image.predictions.Predict, small).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_signature_is_failed_precondition(image: GrpcDouble) -> None:
    request = predict_request({"images": tf.make_tensor_proto(images(1))}, signature="foo")
    error = rpc_error(image.predictions.Predict, request, timeout=30)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "foo" not found.',
    )


def test_tensor_content_responses_with_the_flag(half_content: GrpcDouble) -> None:
    request = predict_request(
        {"x": tf.make_tensor_proto(np.array([1.0, 2.0, 3.0], np.float32))}, name=HALF
    )
    output = half_content.predictions.Predict(request, timeout=30).outputs["y"]
    assert output.tensor_content
    assert not output.float_val
    np.testing.assert_array_equal(decode(output, tf.float32), [2.5, 3.0, 3.5])

    words = [b"hello", b"", b"w" * 200]
    request = predict_request(
        {"raw_bytes": tf.make_tensor_proto(words)}, name=HALF, signature="echo_bytes"
    )
    outputs = half_content.predictions.Predict(request, timeout=30).outputs
    assert outputs["echo_bytes"].tensor_content
    assert not outputs["echo_bytes"].string_val
    assert decode(outputs["echo_bytes"], tf.string).tolist() == words
    np.testing.assert_array_equal(decode(outputs["length"], tf.int32), [5, 0, 200])

    echoed = predict_request(
        {"raw_bytes": outputs["echo_bytes"]}, name=HALF, signature="echo_bytes"
    )
    again = half_content.predictions.Predict(echoed, timeout=30).outputs["echo_bytes"]
    assert decode(again, tf.string).tolist() == words


def test_output_filter_keeps_only_the_named_outputs(half_content: GrpcDouble) -> None:
    request = predict_request(
        {
            "a": tf.make_tensor_proto(np.array([1.0, 5.0], np.float32)),
            "b": tf.make_tensor_proto(np.array([2.0, 3.0], np.float32)),
        },
        name=HALF,
        signature="add_sub",
    )
    request.output_filter.append("sum")
    response = half_content.predictions.Predict(request, timeout=30)
    assert list(response.outputs) == ["sum"]
    np.testing.assert_array_equal(decode(response.outputs["sum"], tf.float32), [3.0, 8.0])
    assert response.model_spec.signature_name == "add_sub"


# Model status and metadata


def test_model_status_matches_rest(image: GrpcDouble) -> None:
    for version, path in ((None, f"/v1/models/{IMAGE}"), (1, f"/v1/models/{IMAGE}/versions/1")):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = IMAGE
        if version is not None:
            request.model_spec.version.value = version
        response = image.models.GetModelStatus(request, timeout=10)
        as_json = json_format.MessageToDict(
            response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        assert as_json == httpx.get(image.rest_url + path).json()
        assert as_json["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("nope", None, "Could not find any versions of model nope"),
        (IMAGE, 7, f"Could not find version 7 of model {IMAGE}"),
    ],
)
def test_model_status_errors(
    image: GrpcDouble, name: str, version: int | None, message: str
) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    error = rpc_error(image.models.GetModelStatus, request, timeout=10)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)


def test_model_metadata_matches_rest(image: GrpcDouble) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = IMAGE
    response = image.predictions.GetModelMetadata(request, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == (IMAGE, 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    rest = httpx.get(f"{image.rest_url}/v1/models/{IMAGE}/metadata").json()
    assert (
        json_format.MessageToDict(
            signatures, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        == rest["metadata"]["signature_def"]
    )

    request.ClearField("metadata_field")
    error = rpc_error(image.predictions.GetModelMetadata, request, timeout=10)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )


# Faults and stats (control port)


def image_request() -> predict_pb2.PredictRequest:
    return predict_request({"images": tf.make_tensor_proto(images(1))})


def test_delay_past_the_client_deadline_is_deadline_exceeded(
    image: GrpcDouble, control: httpx.Client
) -> None:
    control.put("/faults", json={"delay_ms": 5000})
    started = time.monotonic()
    error = rpc_error(image.predictions.Predict, image_request(), timeout=0.5)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    control.put("/faults", json={"delay_ms": 300})
    started = time.monotonic()
    image.predictions.Predict(image_request(), timeout=30)
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (404, grpc.StatusCode.NOT_FOUND),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.INTERNAL),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (418, grpc.StatusCode.UNKNOWN),
    ],
)
def test_error_fault_answers_the_matching_code(
    image: GrpcDouble, control: httpx.Client, status: int, code: grpc.StatusCode
) -> None:
    control.put("/faults", json={"error": {"status": status, "message": "injected"}})
    error = rpc_error(image.predictions.Predict, image_request(), timeout=30)
    assert (error.code(), error.details()) == (code, "injected")


def test_reset_fault_is_unavailable_then_the_channel_recovers(
    image: GrpcDouble, control: httpx.Client
) -> None:
    control.put("/faults", json={"reset_connections": True})
    error = rpc_error(image.predictions.Predict, image_request(), timeout=30)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "Connection reset by peer",
    )
    control.delete("/faults")
    assert image.predictions.Predict(image_request(), timeout=30).outputs


def test_stats_count_grpc_and_rest_predicts_together(
    image: GrpcDouble, control: httpx.Client
) -> None:
    control.delete("/stats")
    image.predictions.Predict(predict_request({"images": tf.make_tensor_proto(images(2))}))
    image.predictions.Predict(image_request())
    wrong_version = image_request()
    wrong_version.model_spec.version.value = 5
    rpc_error(image.predictions.Predict, wrong_version)
    rest = httpx.post(
        f"{image.rest_url}/v1/models/{IMAGE}:predict",
        content=orjson.dumps({"instances": images(1)}, option=orjson.OPT_SERIALIZE_NUMPY),
        timeout=30,
    )
    assert rest.status_code == 200
    assert control.get("/stats").json() == {"predict_requests": 4, "predict_examples": 4}


def test_grpc_port_in_use_fails_the_start_up(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tfserving_double",
                f"--model_name={HALF}",
                f"--model_base_path={store / HALF}",
                f"--port={taken.getsockname()[1]}",
            ],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "Failed to BuildAndStart gRPC server" in result.stderr
    assert "tfserving_double:" not in result.stdout
