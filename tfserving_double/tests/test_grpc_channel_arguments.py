"""`--grpc_channel_arguments` reaches the double's gRPC server; `--listen_host` picks its address.

Kubernetes runs TF Serving with `--grpc_channel_arguments=grpc.max_connection_age_ms=30000`
so that clients' connections age out and they resolve the Service again; the
double must accept the flag and apply it (TFS/model_servers/server.cc).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from double_process import Double, serve, write_versions
from processes import free_port
from tfserving_double.flags import channel_arguments

MODEL = "half"
HOST = "127.0.0.2"
AGE_MS = 1000
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_pairs_are_split_like_tf_serving_and_int32_values_become_ints() -> None:
    text = "a=1,b=x,c=2147483648,d= -7 ,e=1=2,f="
    assert channel_arguments(text) == [
        ("a", 1),
        ("b", "x"),
        ("c", "2147483648"),  # over int32: passed as text, as absl::SimpleAtoi fails
        ("d", -7),
        ("e", 1),  # server.cc keeps the second piece only
        ("f", ""),
    ]
    assert channel_arguments("") == []


@pytest.fixture(scope="module")
def aging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Double, int]]:
    """A double on 127.0.0.2 whose gRPC connections end after AGE_MS."""
    root = tmp_path_factory.mktemp("aging")
    port = free_port()
    double = Double(
        root / "double.log",
        f"--model_name={MODEL}",
        f"--model_base_path={write_versions(root / MODEL, [1])}",
        f"--port={port}",
        f"--listen_host={HOST}",
        f"--grpc_channel_arguments=grpc.max_connection_age_ms={AGE_MS}",
    )
    for ready in serve(double):
        yield ready, port


def model_state(channel: grpc.Channel) -> int:
    """The model's first version's state, over GetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return int(response.model_version_status[0].state)


def test_every_port_listens_on_the_listen_host(aging: tuple[Double, int]) -> None:
    double, port = aging
    assert double.ready_line.startswith(f"tfserving_double: REST on {HOST}:{double.port} and ")
    assert f"gRPC on {HOST}:{port} " in double.ready_line


def test_a_connection_past_its_max_age_is_closed_and_the_client_reconnects(
    aging: tuple[Double, int],
) -> None:
    _, port = aging
    states: list[grpc.ChannelConnectivity] = []
    left_ready = threading.Event()

    def record(state: grpc.ChannelConnectivity) -> None:
        if states and states[-1] == grpc.ChannelConnectivity.READY and state != states[-1]:
            left_ready.set()
        states.append(state)

    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        channel.subscribe(record)
        assert model_state(channel) == AVAILABLE
        # Nothing but the server's GOAWAY at the connection's max age ends it.
        assert left_ready.wait(timeout=30), states
        assert model_state(channel) == AVAILABLE
        channel.unsubscribe(record)
    assert states.count(grpc.ChannelConnectivity.READY) >= 2, states


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--grpc_channel_arguments=grpc.max_connection_age_ms", "is not key=value"),
        ("--listen_host=localhost", "--listen_host must be an IPv4 address"),
    ],
)
def test_a_malformed_value_stops_the_start_up(tmp_path: Path, flag: str, message: str) -> None:
    double = Double(
        tmp_path / "double.log",
        f"--model_name={MODEL}",
        f"--model_base_path={tmp_path / MODEL}",
        flag,
    )
    assert double.exit_status(timeout=60) == 1
    assert message in double.log()
