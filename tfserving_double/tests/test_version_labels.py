"""Version labels of the model config file, over REST and gRPC, and the labels start-up refuses.

Expected behaviour: docs/tf-serving-protocol.md §14.3 (server_core.cc
`UpdateModelVersionLabelMap`, `GetModelVersionForLabel`, get_model_status_impl.cc).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from double_process import (
    Double,
    available,
    predict_offset,
    serve,
    wait_until,
    write_config,
    write_versions,
)

LABELLED = """model_config_list {{
  config {{
    name: "half" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_versions(tmp_path_factory.mktemp("labels") / "half", [1, 2])


@pytest.fixture(scope="module")
def double(base: Path, grpc_port: int) -> Iterator[Double]:
    config = write_config(base.parent / "models.config", LABELLED.format(base=base))
    process = Double(
        base.parent / "double.log",
        f"--model_config_file={config}",
        f"--port={grpc_port}",
        "--allow_version_labels_for_unavailable_models=true",
    )
    yield from serve(process)


@pytest.fixture(scope="module")
def channel(grpc_port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as opened:
        yield opened


@pytest.fixture
def client(double: Double) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        wait_until(lambda: available(http, double, "half") == {1, 2}, what="versions 1 and 2")
        yield http


@pytest.mark.parametrize(("label", "offset"), [("stable", 1.0), ("canary", 2.0)])
def test_rest_predict_through_a_label(
    double: Double, client: httpx.Client, label: str, offset: float
) -> None:
    assert predict_offset(client, double, f"/v1/models/half/labels/{label}:predict") == offset


def test_rest_metadata_through_a_label(double: Double, client: httpx.Client) -> None:
    response = client.get(f"{double.url}/v1/models/half/labels/canary/metadata")
    assert response.status_code == 200
    assert response.json()["model_spec"] == {"name": "half", "signature_name": "", "version": "2"}


@pytest.mark.parametrize("suffix", [":predict", "/metadata"])
def test_rest_unknown_label_is_400(double: Double, client: httpx.Client, suffix: str) -> None:
    url = f"{double.url}/v1/models/half/labels/nightly{suffix}"
    if suffix == ":predict":
        response = client.post(url, json={"instances": [[0.0]]})
    else:
        response = client.get(url)
    assert response.status_code == 400
    assert response.json() == {"error": "Unrecognized servable version label: nightly"}


def test_rest_status_ignores_the_label(double: Double, client: httpx.Client) -> None:
    with_label = client.get(f"{double.url}/v1/models/half/labels/nightly")
    assert with_label.status_code == 200
    assert with_label.json() == client.get(f"{double.url}/v1/models/half").json()


def grpc_request(label: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[0.0]], dtype=tf.float32))
    return request


@pytest.mark.usefixtures("client")
@pytest.mark.parametrize(("label", "version"), [("stable", 1), ("canary", 2)])
def test_grpc_predict_through_a_label(channel: grpc.Channel, label: str, version: int) -> None:
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        grpc_request(label), timeout=30
    )
    assert response.model_spec.version.value == version
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[float(version)]]


@pytest.mark.usefixtures("client")
def test_grpc_metadata_through_a_label(channel: grpc.Channel) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half"
    request.model_spec.version_label = "canary"
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, timeout=30
    )
    assert (response.model_spec.name, response.model_spec.version.value) == ("half", 2)


@pytest.mark.usefixtures("client")
def test_grpc_unknown_label_is_invalid_argument(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            grpc_request("nightly"), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Unrecognized servable version label: nightly"


@pytest.mark.usefixtures("client")
def test_grpc_status_ignores_the_label(channel: grpc.Channel) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    request.model_spec.version_label = "nightly"
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    assert [status.version for status in response.model_version_status] == [2, 1]


def test_labels_refuse_start_up_without_the_flag(base: Path, tmp_path: Path) -> None:
    # The first config's labels are checked before any version has loaded.
    config = write_config(tmp_path / "models.config", LABELLED.format(base=base))
    process = Double(tmp_path / "refused.log", f"--model_config_file={config}")
    assert process.exit_status() == 1
    assert (
        "Failed to start server. Error: FAILED_PRECONDITION: Request to assign label to "
        "version 2 of model half, which is not currently available for inference"
    ) in process.log()
