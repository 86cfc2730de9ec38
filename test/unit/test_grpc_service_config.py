"""The gRPC transport's balancing: calls spread over replicas, a failing one is retried and ejected.

Three in-process gRPC servers stand for TF Serving replicas, on 127.0.0.1,
127.0.0.2 and 127.0.0.3 with one port (Linux routes all of 127/8 to lo), and
the transport's channel gets them as one `ipv4:` target, as a headless
Service's DNS name gives them in Kubernetes (gateway/tfserving/service_config.py).
A replica can answer, hang, or answer NOT_FOUND as TF Serving does for a version
it does not serve.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Literal

import grpc
import numpy as np
import pytest

from gateway import metrics
from gateway.errors import BackendTimeout, ServableGone
from gateway.tfserving.grpc_transport import GrpcPredictor
from gateway.tfserving.service_config import may_name_several_replicas
from test_request_id import SIGNATURE, predict_reply

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PIXELS = np.zeros((1, 224, 224, 3), np.uint8)
NOT_FOUND = "Servable not found for request: Specific(m, 1)"
Answer = Literal["reply", "not_found", "hang", "slow"]


class Replica:
    """One gRPC server answering Predict; it counts its calls and can hold the next one."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.calls = 0
        self.answer: Answer = "reply"
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

    async def _predict(self, _request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self._hold is not None:
            held, self._hold = self._hold, None
            held.set()
            await asyncio.Event().wait()  # until the server stops and cancels the call
        if self.answer == "hang":
            await asyncio.Event().wait()  # a stopped process: connected, never answering
        if self.answer == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if self.answer == "not_found":
            await context.abort(grpc.StatusCode.NOT_FOUND, NOT_FOUND)
        return predict_reply(1)


@contextlib.asynccontextmanager
async def replicas(
    timeout_seconds: float = 5.0,
) -> AsyncIterator[tuple[list[Replica], GrpcPredictor]]:
    """Three started replicas on one port, and a transport whose target lists all three."""
    started = [Replica(host) for host in HOSTS]
    port = started[0].server.add_insecure_port(f"{HOSTS[0]}:0")
    for replica in started[1:]:
        replica.server.add_insecure_port(f"{replica.host}:{port}")
    for replica in started:
        await replica.server.start()
    target = "ipv4:" + ",".join(f"{host}:{port}" for host in HOSTS)
    predictor = GrpcPredictor(target, "m", timeout_seconds=timeout_seconds, reconnect_seconds=1.0)
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


# The transport's timeout in the tests below: a hung replica costs half of it.
TIMEOUT_SECONDS = 1.0
# Longer than the whole timeout: every attempt runs out.
SLOW_SECONDS = 1.5
CLIENTS = 6


async def until_ejected(
    started: list[Replica], predictor: GrpcPredictor, bad: Replica
) -> tuple[int, int]:
    """Load from CLIENTS callers until a round of 30 calls leaves `bad` alone: (calls, failed).

    The transport's retry answers most of the bad replica's calls; one whose retry
    was picked for the bad replica too (other callers' calls moved round_robin on
    meanwhile) fails, until outlier detection ejects it (service_config.py).
    """
    made = failed = 0

    async def call() -> None:
        nonlocal failed
        try:
            await predictor.predict(PIXELS, SIGNATURE)
        except (ServableGone, BackendTimeout):
            failed += 1

    # A bound, not a measure: ejection comes at the policy's next look (every 2 s).
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        before = bad.calls
        for _ in range(30 // CLIENTS):
            await asyncio.gather(*(call() for _ in range(CLIENTS)))
        made += 30
        if bad.calls == before:
            return made, failed
    raise AssertionError(f"never ejected: calls {[replica.calls for replica in started]}")


def retries(reason: str) -> float:
    return metrics.TF_SERVING_RETRIES.labels(reason)._value.get()


@pytest.mark.parametrize("answer", ["not_found", "hang"])
def test_a_replica_that_fails_every_call_is_retried_around_then_ejected(answer: Answer) -> None:
    async def scenario() -> tuple[int, int, int, list[int]]:
        async with replicas(TIMEOUT_SECONDS) as (started, predictor):
            bad = started[2]
            bad.answer = answer
            made, failed = await until_ejected(started, predictor, bad)
            failed_on_bad = bad.calls
            for replica in started:
                replica.calls = 0
            # Ejected for baseEjectionTime (10 s): the next calls all go to the others.
            for _ in range(5):
                await asyncio.gather(*(predictor.predict(PIXELS, SIGNATURE) for _ in range(6)))
            return made, failed, failed_on_bad, [replica.calls for replica in started]

    reason = {"not_found": "not_found", "hang": "deadline_exceeded"}[answer]
    retried_before = retries(reason)
    made, failed, failed_on_bad, after = asyncio.run(scenario())
    print(
        f"\n{answer}: {made} calls until ejected, {failed_on_bad} of them tried the bad "
        f"replica, {failed} failed"
    )
    # The retry answered most of the calls that tried the bad replica, counted as retries.
    assert 0 <= failed < failed_on_bad / 2
    assert retries(reason) - retried_before >= failed_on_bad - failed
    assert after[2] == 0
    assert after[0] + after[1] == 30


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        # The version is gone everywhere: the backend follows the switch (client.py).
        ("not_found", ServableGone, f"TF Serving has no servable version: {NOT_FOUND}"),
        # Slow everywhere: the first attempt's half and the retry's, then the gateway's 504.
        ("slow", BackendTimeout, f"TF Serving did not answer within {TIMEOUT_SECONDS:g} s."),
    ],
)
def test_a_failure_on_every_replica_is_answered_as_with_one(
    answer: Answer, error: type[Exception], message: str
) -> None:
    async def scenario() -> tuple[Exception, list[int]]:
        async with replicas(TIMEOUT_SECONDS) as (started, predictor):
            for replica in started:
                replica.answer = answer
            with pytest.raises(error) as raised:
                await predictor.predict(PIXELS, SIGNATURE)
            return raised.value, [replica.calls for replica in started]

    raised, calls = asyncio.run(scenario())
    # Asked twice, on two replicas, before the error is the backend's.
    assert sorted(calls) == [0, 1, 1]
    assert str(raised) == message


def test_retries_answered_elsewhere_are_warned_about_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[int]:
        async with replicas(TIMEOUT_SECONDS) as (started, predictor):
            started[1].answer = "not_found"
            for _ in range(12):  # too few calls a second to be ejected: all are retried
                await predictor.predict(PIXELS, SIGNATURE)
            return [replica.calls for replica in started]

    with caplog.at_level(logging.WARNING, logger="gateway.tfserving.grpc_transport"):
        calls = asyncio.run(scenario())
    warnings = [record.getMessage() for record in caplog.records]
    assert calls[1] >= 3
    assert len(warnings) == 1, warnings
    assert "failed a predict with NOT_FOUND and a second attempt answered it" in warnings[0]
    assert NOT_FOUND in warnings[0]


@pytest.mark.parametrize(
    ("target", "several"),
    [
        ("127.0.0.1:8500", False),
        ("dns:///127.0.0.1:8500", False),
        ("[::1]:8500", False),
        ("ipv4:10.0.0.5:8500", False),
        ("unix:/run/tfs.sock", False),
        ("ipv4:10.0.0.5:8500,10.0.0.6:8500", True),
        ("dns:///tensorflow-serving-grpc:8500", True),
        ("tensorflow-serving:8500", True),
        ("dns://10.0.0.53/tensorflow-serving-grpc:8500", True),
    ],
)
def test_only_a_name_or_a_list_may_stand_for_several_replicas(target: str, several: bool) -> None:
    assert may_name_several_replicas(target) is several
