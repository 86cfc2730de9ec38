"""HOST[:PORT] and gRPC targets: the forms accepted work, everything else is refused by name."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from gateway.addresses import check_grpc_target, split_host_port
from gateway.tfserving.service_config import BALANCING_OPTIONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tensorflow-serving", ("tensorflow-serving", None)),
        (
            "mobilenet-predictor.default.svc.cluster.local.",
            ("mobilenet-predictor.default.svc.cluster.local.", None),
        ),
        ("project_tfs_1:8501", ("project_tfs_1", 8501)),
        ("10.0.0.7:8501", ("10.0.0.7", 8501)),
        ("[::1]:8501", ("[::1]", 8501)),
        ("[fd00::7]", ("[fd00::7]", None)),
        ("h:1", ("h", 1)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_host_and_port_are_split(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text, port_required=False) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("::1", "an IPv6 address goes in brackets"),
        ("::1:8501", "an IPv6 address goes in brackets"),
        ("[::1", "not an IPv6 address in brackets"),
        ("[::1]8501", "other than :PORT after the brackets"),
        ("[tfs]:8501", "not an IPv6 address"),
        ("127.0.0.1:notaport", "must be a number from 1 to 65535"),
        ("127.0.0.1:99999", "must be a number from 1 to 65535"),
        ("127.0.0.1:0", "must be a number from 1 to 65535"),
        ("127.0.0.1:+80", "must be a number from 1 to 65535"),
        ("127.0.0.1:18501 ", "must be a number from 1 to 65535"),
        ("127.0.0.1:", "must be a number from 1 to 65535"),
        ("127.0.0.999", "not an IPv4 address"),
        ("10.1", "not an IPv4 address"),
        ("a b", "not a DNS name or an IP address"),
        (" tfs", "not a DNS name or an IP address"),
        ("host#frag", "not a DNS name or an IP address"),
        ("user@host", "not a DNS name or an IP address"),
        ("-tfs", "not a DNS name or an IP address"),
        ("tfs..local", "not a DNS name or an IP address"),
        ("x" * 64, "not a DNS name or an IP address"),  # a label is at most 63
        ("", "not a DNS name or an IP address"),
        ("http://tfs:8501", "has a scheme or a path"),
        ("tfs:8501/v1", "has a scheme or a path"),
    ],
)
def test_anything_else_is_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        split_host_port(text, port_required=False)


def test_a_port_may_be_required() -> None:
    with pytest.raises(ValueError, match="names no port"):
        split_host_port("tfs", port_required=True)


@pytest.mark.parametrize(
    "target",
    [
        "tensorflow-serving:8500",
        "[::1]:8500",
        "dns:///tensorflow-serving-grpc:8500",
        "dns:tensorflow-serving-grpc:8500",
        "dns://10.0.0.10:53/tensorflow-serving-grpc:8500",
        "ipv4:10.0.0.1:8500",
        "ipv4:10.0.0.1:8500,10.0.0.2:8500",
        "ipv6:[fd00::1]:8500,[fd00::2]:8500",
        "unix:/var/run/tfs.sock",
        "unix:relative.sock",
        "unix:///var/run/tfs.sock",
    ],
)
def test_grpc_target_forms_are_accepted(target: str) -> None:
    assert check_grpc_target(target) == target


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        (" ", "not a DNS name"),
        (",", "a list of addresses takes ipv4: or ipv6: in front"),
        ("a:8500,b:8500", "a list of addresses takes ipv4: or ipv6: in front"),
        ("ipv4:", "not a DNS name"),
        ("ipv4:,", "not a DNS name"),
        ("ipv4:10.0.0.1:8500,", "not a DNS name"),
        ("ipv4:garbage", "names no port"),
        ("ipv4:tfs:8500", "not an IP address"),
        ("ipv4:[::1]:8500", "not an ipv4 address"),
        ("ipv6:10.0.0.1:8500", "not an ipv6 address"),
        ("ipv6:::1", "an IPv6 address goes in brackets"),
        ("ipv4:127.0.0.1", "names no port"),
        ("ipv4:127.0.0.1:99999", "from 1 to 65535"),
        ("tfs", "names no port"),  # gRPC would use 443, never TF Serving's 8500
        ("dns:///tfs", "names no port"),
        ("dns://10.0.0.10:53", "needs /HOST:PORT"),
        ("foo://bar", "has a scheme or a path"),
        ("unix:", "needs a socket path"),
        ("unix://tfs.sock", "takes an absolute path"),
        ("unix:/run/tfs.sock ", "must not hold NUL or start or end with a blank"),
    ],
)
def test_other_grpc_targets_are_refused_naming_the_forms(target: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as refused:
        check_grpc_target(target)
    assert "the accepted forms are HOST:PORT" in str(refused.value)


@asynccontextmanager
async def grpc_server(*addresses: str) -> AsyncIterator[None]:
    """A gRPC server with no services listening on `addresses`: enough to connect to."""
    server = grpc.aio.server()
    for address in addresses:
        server.add_insecure_port(address)
    await server.start()
    try:
        yield
    finally:
        await server.stop(None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def connects(target: str) -> bool:
    """Whether the gateway's kind of channel (round robin) to `target` becomes READY."""
    channel = grpc.aio.insecure_channel(check_grpc_target(target), options=BALANCING_OPTIONS)
    async with channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=10)
        except TimeoutError:
            return False
        return True


def test_the_accepted_forms_are_ones_grpc_connects_through(tmp_path: Path) -> None:
    port = free_port()
    socket_path = tmp_path / "tfs.sock"
    targets = [
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"dns:///localhost:{port}",
        f"dns:localhost:{port}",
        f"ipv4:127.0.0.1:{port},127.0.0.1:{port}",
        f"unix:{socket_path}",
        f"unix://{socket_path}",
    ]

    async def run() -> list[str]:
        async with grpc_server(f"127.0.0.1:{port}", f"unix:{socket_path}"):
            return [target for target in targets if not await connects(target)]

    assert asyncio.run(run()) == []
