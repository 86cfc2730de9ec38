"""The gRPC transport's round_robin: calls spread over replicas, a lost call is answered elsewhere.

Three in-process gRPC servers stand for TF Serving replicas, on 127.0.0.1,
127.0.0.2 and 127.0.0.3 with one port (Linux routes all of 127/8 to lo), and
the transport's channel gets them as one `ipv4:` target, as a headless
Service's DNS name gives them in Kubernetes (gateway/tfserving/service_config.py).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import numpy as np

from gateway.tfserving.grpc_transport import GrpcPredictor
from test_request_id import SIGNATURE, predict_reply

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PIXELS = np.zeros((1, 224, 224, 3), np.uint8)


class Replica:
    """One gRPC server answering Predict; it counts its calls and can hold the next one."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.calls = 0
        self.server = grpc.aio.server()
        self._hold: asyncio.Event | None = None
        handler = grpc.unary_unary_rpc_method_handler(self._predict)
        self.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.PredictionService", {"Predict": handler}
                )
            ]
        )

    def hold_next_call(self, held: asyncio.Event | None) -> None:
        """Keep the next call until the server stops (a call in flight on a dying replica),
        and set `held` once it is kept; None answers every call again."""
        self._hold = held

    async def _predict(self, _request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self._hold is not None:
            held, self._hold = self._hold, None
            held.set()
            await asyncio.Event().wait()  # until the server stops and cancels the call
        return predict_reply(1)


@contextlib.asynccontextmanager
async def replicas() -> AsyncIterator[tuple[list[Replica], GrpcPredictor]]:
    """Three started replicas on one port, and a transport whose target lists all three."""
    started = [Replica(host) for host in HOSTS]
    port = started[0].server.add_insecure_port(f"{HOSTS[0]}:0")
    for replica in started[1:]:
        replica.server.add_insecure_port(f"{replica.host}:{port}")
    for replica in started:
        await replica.server.start()
    target = "ipv4:" + ",".join(f"{host}:{port}" for host in HOSTS)
    predictor = GrpcPredictor(target, "m", timeout_seconds=5.0, reconnect_seconds=1.0)
    try:
        await connect_all(started, predictor)
        yield started, predictor
    finally:
        await predictor.close()
        for replica in started:
            await replica.server.stop(None)


async def connect_all(started: list[Replica], predictor: GrpcPredictor) -> None:
    """Call until every replica has answered once (each connects on its own), then zero counts."""
    for _ in range(200):
        if all(replica.calls for replica in started):
            break
        await predictor.predict(PIXELS, SIGNATURE)
    assert all(replica.calls for replica in started), [r.calls for r in started]
    for replica in started:
        replica.calls = 0


def test_calls_rotate_over_every_replica() -> None:
    async def scenario() -> list[int]:
        async with replicas() as (started, predictor):
            await asyncio.gather(*(predictor.predict(PIXELS, SIGNATURE) for _ in range(30)))
            return [replica.calls for replica in started]

    # Each call goes to the next connected replica, not all of them down one connection.
    assert asyncio.run(scenario()) == [10, 10, 10]


def test_a_call_lost_with_its_replica_is_sent_again_to_another() -> None:
    async def scenario() -> tuple[int, list[int], int | None]:
        async with replicas() as (started, predictor):
            held = asyncio.Event()
            for replica in started:
                replica.hold_next_call(held)
            call = asyncio.ensure_future(predictor.predict(PIXELS, SIGNATURE))
            await asyncio.wait_for(held.wait(), 5)
            for replica in started:
                replica.hold_next_call(None)
            # The replica holding the call goes down with it, as a killed pod would;
            # the call fails UNAVAILABLE and the transport sends it once more.
            victim = next(index for index, replica in enumerate(started) if replica.calls)
            await started[victim].server.stop(None)
            _, version = await call
            calls = [replica.calls for replica in started]
            return calls.pop(victim), calls, version

    victim_calls, other_calls, version = asyncio.run(scenario())
    assert version == 1
    # Once on the replica that died, once more on another: the retry did not wait
    # for the dead one (its reconnect wait would end DEADLINE_EXCEEDED, not an answer).
    assert victim_calls == 1
    assert sorted(other_calls) == [0, 1]


def test_one_replica_down_leaves_the_transport_ready_and_all_down_does_not() -> None:
    async def scenario() -> tuple[str, list[int], str]:
        async with replicas() as (started, predictor):
            await started[0].server.stop(None)
            for _ in range(20):
                await predictor.predict(PIXELS, SIGNATURE)
            with_two = predictor.problem()
            calls = [replica.calls for replica in started]
            for replica in started[1:]:
                await replica.server.stop(None)
            for _ in range(100):  # the channel fails once every replica refused a reconnect
                if predictor.problem():
                    break
                await asyncio.sleep(0.1)
            return with_two, calls, predictor.problem()

    with_two, calls, with_none = asyncio.run(scenario())
    assert with_two == ""
    assert calls[0] == 0
    assert calls[1] + calls[2] == 20
    assert min(calls[1:]) >= 9, calls
    assert with_none == "TF Serving's gRPC port is not reachable"
