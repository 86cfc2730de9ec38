"""Reloading the model config: the polled file and gRPC HandleReloadConfigRequest.

Expected behaviour: docs/tf-serving-protocol.md §14.4 (server.cc
`PollFilesystemAndReloadConfig`, server_core.cc `ReloadConfig`,
model_service_impl.cc `HandleReloadConfigRequest`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from double_process import (
    Double,
    available,
    predict_offset,
    serve,
    states,
    wait_until,
    write_config,
    write_models,
)


def config_text(models: dict[str, tuple[Path, list[int], dict[str, int]]]) -> str:
    """A model_config_list: name -> (base path, specific versions, labels)."""
    entries = []
    for name, (base, versions, labels) in models.items():
        wanted = " ".join(f"versions: {v}" for v in versions)
        tags = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items())
        entries.append(
            f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
            f"model_version_policy {{ specific {{ {wanted} }} }} {tags} }}"
        )
    return "model_config_list {\n" + "\n".join(entries) + "\n}\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("reload"), {"a": [1, 2, 3], "b": [4]})


@pytest.fixture(scope="module")
def polled(store: Path) -> Iterator[Double]:
    config = write_config(
        store / "models.config", config_text({"a": (store / "a", [1], {"stable": 1})})
    )
    process = Double(
        store / "polled.log",
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        # Start-up labels are checked before anything loads (test_version_labels.py).
        "--allow_version_labels_for_unavailable_models=true",
    )
    yield from serve(process)


def test_reload_adds_a_model_moves_a_label_and_removes_the_model(
    store: Path, polled: Double, client: httpx.Client
) -> None:
    config = store / "models.config"
    stable = "/v1/models/a/labels/stable:predict"
    assert predict_offset(client, polled, stable) == 1.0

    write_config(
        config,
        config_text({"a": (store / "a", [1, 2], {"stable": 1}), "b": (store / "b", [4], {})}),
    )
    wait_until(lambda: available(client, polled, "b") == {4}, what="model b")
    wait_until(lambda: available(client, polled, "a") == {1, 2}, what="a's version 2")
    assert predict_offset(client, polled, "/v1/models/b:predict") == 4.0
    assert predict_offset(client, polled, stable) == 1.0

    write_config(
        config,
        config_text({"a": (store / "a", [1, 2], {"stable": 2}), "b": (store / "b", [4], {})}),
    )
    wait_until(lambda: predict_offset(client, polled, stable) == 2.0, what="stable on 2")

    write_config(config, config_text({"a": (store / "a", [1, 2], {"stable": 2})}))
    wait_until(lambda: states(client, polled, "b") == {4: "END"}, what="b unloaded")
    response = client.post(f"{polled.url}/v1/models/b:predict", json={"instances": [[0.0]]})
    assert response.json() == {"error": "Servable not found for request: Latest(b)"}


def test_broken_or_refused_file_keeps_the_running_config(
    store: Path, polled: Double, client: httpx.Client
) -> None:
    config = store / "models.config"
    before = predict_offset(client, polled, "/v1/models/a/labels/stable:predict")
    serving = available(client, polled, "a")

    write_config(config, "model_config_list { config { name: ")
    broken = f"Failed to read ModelServerConfig file: Invalid protobuf file: '{config}'"
    wait_until(lambda: broken in polled.log(), what="the parse failure")
    assert predict_offset(client, polled, "/v1/models/a/labels/stable:predict") == before

    # Version 3 joins the policy and the label moves to it in the same edit: the label is
    # checked first, against what is loaded now, so the whole reload is refused.
    write_config(
        config,
        config_text({"a": (store / "a", [1, 2, 3], {"stable": 3}), "b": (store / "b", [4], {})}),
    )
    refusal = (
        "PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign label to "
        "version 3 of model a, which is not currently available for inference"
    )
    wait_until(lambda: refusal in polled.log(), what="the label refusal")
    assert available(client, polled, "a") == serving
    assert available(client, polled, "b") == set()
    assert predict_offset(client, polled, "/v1/models/a/labels/stable:predict") == before


@pytest.fixture(scope="module")
def managed(store: Path, grpc_port: int) -> Iterator[Double]:
    process = Double(
        store / "managed.log",
        "--model_name=a",
        f"--model_base_path={store / 'a'}",
        f"--port={grpc_port}",
    )
    yield from serve(process)


@pytest.fixture(scope="module")
def models(managed: Double, grpc_port: int) -> Iterator[model_service_pb2_grpc.ModelServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)


def reload_request(text: str) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return request


def test_grpc_reload_returns_once_new_models_are_loaded(
    store: Path,
    managed: Double,
    models: model_service_pb2_grpc.ModelServiceStub,
    client: httpx.Client,
) -> None:
    request = reload_request(
        config_text({"a": (store / "a", [3], {}), "b": (store / "b", [4], {})})
    )
    request.metric_names.append("/tensorflow/serving/request_count")
    response = models.HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    assert [(m.name, m.int64_value_increase) for m in response.metric] == [
        ("/tensorflow/serving/request_count", 0)
    ]
    assert available(client, managed, "b") == {4}

    labelled = config_text({"a": (store / "a", [3], {}), "b": (store / "b", [4], {"edge": 4})})
    models.HandleReloadConfigRequest(reload_request(labelled), timeout=60)
    assert predict_offset(client, managed, "/v1/models/b/labels/edge:predict") == 4.0


def test_grpc_reload_refusals(
    store: Path, managed: Double, models: model_service_pb2_grpc.ModelServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "ServerModelConfig type not supported by HandleReloadConfigRequest. "
        "Only ModelConfigList is currently supported"
    )
    # A label on a model the same reload adds: nothing of it is loaded when labels are checked.
    with_new_model = reload_request(
        config_text({"a": (store / "a", [3], {}), "c": (store / "b", [4], {"edge": 4})})
    )
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(with_new_model, timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "Request to assign label to version 4 of model c, which is not currently available "
        "for inference"
    )
    twice = reload_request(
        config_text({"a": (store / "a", [3], {}), "b": (store / "b", [4], {})}).replace(
            'name: "b"', 'name: "a"'
        )
    )
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(twice, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Illegal to list model a multiple times in config list"
    assert "ReloadConfig failed: Illegal to list model a multiple times" in managed.log()
