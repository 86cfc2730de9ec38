"""One gateway, three TF Serving replicas: calls spread round-robin, a killed one costs nothing.

Three doubles serve the session's model on 127.0.0.1, 127.0.0.2 and 127.0.0.3
with the same ports (`--listen_host`; Linux routes all of 127/8 to lo), as three
pods behind one headless Service. The gateway's gRPC target lists the three
addresses (`ipv4:` scheme); in Kubernetes the same channel gets them from DNS
(`dns:///tensorflow-serving-grpc:8500`, one A record per ready pod), and
round_robin treats both alike (gateway/tfserving/service_config.py).

Calls and images are counted by each double itself (its control port's
/stats), not by the gateway. The gateway batches (BATCH_MAX_SIZE), so a call
carries one to four images: the spread is judged on calls, and images are
reported beside them. `pytest -s` prints the figures.

A replica that hangs (SIGSTOP: its connections stay up, so round_robin keeps
picking it) is survived by the transport's retry and ejected by outlier
detection (gateway/tfserving/service_config.py, docs/load-balancing.md).

The tests share the replicas and run in file order: the last one kills one.
"""

import asyncio
import dataclasses
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from processes import (
    MODEL_NAME,
    Process,
    answers,
    free_port,
    gateway,
    set_faults,
    tfserving_double,
    wait_until,
)
from routing_helpers import sample_values

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
REQUESTS = 1000
CLIENTS = 8
MAX_SPREAD = 0.10
KILL_PHASE_REQUESTS = 400
# SIGKILL, not SIGTERM: no GOAWAY and no grace, so calls in flight on the replica die
# with it and must be sent again to another (SIGTERM lets them finish: also no failure).
KILL = signal.SIGKILL
# Longer than the test needs to see the held call arrive, shorter than the gateway's timeout.
HOLD_MS = 3000
# The gateway's TF_SERVING_TIMEOUT_SECONDS: with several replicas a first attempt gets half.
TIMEOUT_SECONDS = 4.0
HUNG_PHASE_REQUESTS = 200
STOP_AFTER = 40
EJECTED_PHASE_REQUESTS = 60
# Requests that may fail while the hung replica is not yet ejected: one whose retry
# round_robin also gave to it (other clients' calls moved the rotation on). Each
# client has at most one request in flight, and the window is about one ejection
# interval (2 s) after the first attempts' deadline, so one per client at most.
MAX_FAILED_BEFORE_EJECTION = CLIENTS


@dataclass
class Replicas:
    """The three doubles (same ports, one address each) and the gateway in front of them."""

    doubles: list[Process]
    gateway: Process


def replica(host: str, ports: tuple[int, int, int], model_dir: Path, log: Path) -> Process:
    """A double on `host`: REST, gRPC and control on the ports every replica shares."""
    rest, grpc_port, control = ports
    # The double's last value of a flag wins, so these replace the helper's own ports.
    double = tfserving_double(
        model_dir,
        log,
        rest_api_port=str(rest),
        port=str(grpc_port),
        control_port=str(control),
        listen_host=host,
    )
    url = f"http://{host}:{rest}"
    return dataclasses.replace(
        double,
        url=url,
        control_url=f"http://{host}:{control}",
        grpc_target=f"{host}:{grpc_port}",
        ready=answers(f"{url}/v1/models/{MODEL_NAME}", 200),
    )


@pytest.fixture(scope="module")
def replicas(model_root: Path, logs: Path) -> Iterator[Replicas]:
    ports = (free_port(), free_port(), free_port())
    doubles = [
        replica(host, ports, model_root / MODEL_NAME, logs / f"round-robin-{host}.log")
        for host in HOSTS
    ]
    front = gateway(
        logs / "round-robin-gateway.log",
        INFERENCE_BACKEND="tfserving",
        TF_SERVING_TRANSPORT="grpc",
        TF_SERVING_GRPC_TARGET="ipv4:" + ",".join(d.grpc_target for d in doubles),
        # Status and metadata over REST from the first replica, which is never stopped here.
        TF_SERVING_URL=f"{doubles[0].url}/v1/models/{MODEL_NAME}:predict",
        TF_SERVING_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        MODEL_BASE_PATH=str(model_root),
    )
    front.ready = answers(f"{front.url}/health", 200)
    try:
        with ThreadPoolExecutor(len(doubles)) as pool:  # each loads TensorFlow: start together
            list(pool.map(Process.start, doubles))
        front.start()
        yield Replicas(doubles, front)
    finally:
        for process in [front, *doubles]:
            process.stop()


def counts(double: Process) -> tuple[int, int]:
    """(predict calls, images) the double has answered since its counters were zeroed."""
    stats = httpx.get(f"{double.control_url}/stats", timeout=5).json()
    return stats["predict_requests"], stats["predict_examples"]


def zero_counts(doubles: list[Process]) -> None:
    for double in doubles:
        httpx.delete(f"{double.control_url}/stats", timeout=5).raise_for_status()


def spread(values: list[int]) -> float:
    """(max - min) / mean."""
    return (max(values) - min(values)) / statistics.mean(values)


@dataclass
class Load:
    """Each request's status and latency, in the order they were answered."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_load(
    url: str, image: bytes, requests: int, after: dict[int, Callable[[], None]] | None = None
) -> Load:
    """`requests` POST /predict from CLIENTS clients; `after[n]` runs once n have been answered."""
    load = Load()
    actions = dict(after or {})

    async def client(queue: asyncio.Queue[int], http: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            sent = time.monotonic()
            response = await http.post("/predict", files={"file": ("cat.jpg", image)})
            load.answered_at.append(time.monotonic())
            load.latencies.append(load.answered_at[-1] - sent)
            load.statuses.append(response.status_code)
            if response.status_code != 200 or len(response.json()["predictions"]) != 5:
                load.failures.append(f"{response.status_code} {response.text[:200]}")
            action = actions.pop(len(load.statuses), None)
            if action is not None:
                await asyncio.to_thread(action)  # the other clients keep the load going

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(requests):
            queue.put_nowait(index)
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            await asyncio.gather(*(client(queue, http) for _ in range(CLIENTS)))

    started = time.monotonic()
    asyncio.run(main())
    load.seconds = time.monotonic() - started
    return load


def test_calls_are_spread_evenly_over_the_replicas(replicas: Replicas, cat_jpeg: bytes) -> None:
    zero_counts(replicas.doubles)
    load = run_load(replicas.gateway.url, cat_jpeg, REQUESTS)
    per_double = [counts(double) for double in replicas.doubles]
    calls = [c for c, _ in per_double]
    images = [i for _, i in per_double]
    print(
        f"\n{REQUESTS} requests, {CLIENTS} clients, {load.seconds:.1f} s: "
        f"calls per double {calls} (spread {spread(calls):.1%}), "
        f"images per double {images} (spread {spread(images):.1%})"
    )
    assert load.failures == []
    assert len(load.statuses) == REQUESTS
    # Every image reached a double exactly once: nothing was lost or sent twice.
    assert sum(images) == REQUESTS
    assert spread(calls) <= MAX_SPREAD, calls


def deadline_retries(gateway_url: str) -> float:
    """The gateway's count of calls sent again after their first attempt's deadline."""
    text = httpx.get(f"{gateway_url}/metrics/prometheus", timeout=5).text
    samples = sample_values(text, "gateway_tf_serving_retries_total")
    return sum(value for labels, value in samples if labels["reason"] == "deadline_exceeded")


class RetrySampler:
    """deadline_retries() with the time read, every 0.2 s while the block runs."""

    def __init__(self, gateway_url: str) -> None:
        self.samples: list[tuple[float, float]] = []
        self._url = gateway_url
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._done.wait(0.2):
            self.samples.append((time.monotonic(), deadline_retries(self._url)))

    def last_increase(self) -> float:
        """When the count last went up."""
        changes = [
            t for (t, v), (_, u) in zip(self.samples[1:], self.samples, strict=False) if v > u
        ]
        return changes[-1] if changes else float("nan")

    def __enter__(self) -> "RetrySampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def taking_calls(double: Process, gateway_url: str, image: bytes) -> Callable[[], bool]:
    """A check: two rounds of six requests in a row each reached `double`.

    Two, because a double resumed from SIGSTOP may count the calls it was sent
    while stopped as it catches up, once.
    """

    def check() -> bool:
        for _ in range(2):
            before = counts(double)[0]
            for _ in range(6):
                response = httpx.post(
                    f"{gateway_url}/predict", files={"file": ("cat.jpg", image)}, timeout=30
                )
                assert response.status_code == 200, response.text
            if counts(double)[0] == before:
                return False
        return True

    return check


def test_a_hung_replica_is_ejected_after_a_few_failures(
    replicas: Replicas, cat_jpeg: bytes
) -> None:
    # Not replicas[0], which answers the gateway's status reads; replicas[2] is killed next.
    victim = replicas.doubles[1]
    assert victim.popen is not None
    stopped_at: list[float] = []

    def stop() -> None:
        assert victim.popen is not None
        victim.popen.send_signal(signal.SIGSTOP)
        stopped_at.append(time.monotonic())

    try:
        with RetrySampler(replicas.gateway.url) as sampler:
            hung = run_load(
                replicas.gateway.url, cat_jpeg, HUNG_PHASE_REQUESTS, after={STOP_AFTER: stop}
            )
        retried = deadline_retries(replicas.gateway.url)
        ejected = run_load(replicas.gateway.url, cat_jpeg, EJECTED_PHASE_REQUESTS)
        retried_while_ejected = deadline_retries(replicas.gateway.url) - retried
    finally:
        victim.popen.send_signal(signal.SIGCONT)
    # Readmitted after baseEjectionTime (10 s): the recovered replica takes calls again.
    readmission_started = time.monotonic()
    wait_until(taking_calls(victim, replicas.gateway.url, cat_jpeg), 40, "the victim readmitted")

    (stopped,) = stopped_at
    failed_at = [
        at - stopped
        for at, status in zip(hung.answered_at, hung.statuses, strict=True)
        if status != 200
    ]
    print(
        f"\nSIGSTOP to {victim.grpc_target} after {STOP_AFTER} answers, {CLIENTS} clients, "
        f"TF_SERVING_TIMEOUT_SECONDS={TIMEOUT_SECONDS:g}: {len(hung.failures)} of "
        f"{HUNG_PHASE_REQUESTS} requests failed (at {[round(t, 1) for t in failed_at]} s "
        f"after the stop), {retried:.0f} deadline retries in all, the last "
        f"{sampler.last_increase() - stopped:.1f} s after the stop; latency max "
        f"{max(hung.latencies):.1f} s; then {EJECTED_PHASE_REQUESTS} requests in "
        f"{ejected.seconds:.1f} s, {len(ejected.failures)} failed, {retried_while_ejected:.0f} "
        f"retried; readmitted within {time.monotonic() - readmission_started:.1f} s of SIGCONT"
    )
    # While not yet ejected, the retry answered nearly every request that met the
    # hung replica; those that failed were the gateway's 504 at its own deadline.
    assert len(hung.failures) <= MAX_FAILED_BEFORE_EJECTION, hung.failures
    assert all(failure.startswith("504 ") for failure in hung.failures), hung.failures
    assert len(hung.statuses) == HUNG_PHASE_REQUESTS
    assert retried > 0
    # Once ejected, no call goes to it: nothing fails and nothing waits for a deadline.
    assert ejected.failures == []
    assert retried_while_ejected == 0


def test_a_replica_killed_under_load_fails_no_request(replicas: Replicas, cat_jpeg: bytes) -> None:
    requests, kill_after = KILL_PHASE_REQUESTS, KILL_PHASE_REQUESTS // 4
    victim, survivors = replicas.doubles[2], replicas.doubles[:2]
    zero_counts(replicas.doubles)
    victim_at_kill: list[tuple[int, int]] = []
    survivors_at_kill: list[tuple[int, int]] = []

    def kill() -> None:
        # Hold the victim's next call (the double's injected delay runs after it has
        # counted the call and its images), so one is surely in flight when it dies.
        # The delay is set before the count is read: a call counted in between would
        # otherwise run undelayed, finish, and leave nothing in flight at the kill.
        set_faults(victim, delay_ms=HOLD_MS)
        arrived = counts(victim)
        # Its images too: the double counts them a moment after the call itself.
        wait_until(
            lambda: all(now > then for now, then in zip(counts(victim), arrived, strict=True)),
            10,
            "a call held on the victim",
        )
        victim_at_kill.append(counts(victim))
        survivors_at_kill.extend(counts(double) for double in survivors)
        assert victim.popen is not None
        victim.popen.send_signal(KILL)

    load = run_load(replicas.gateway.url, cat_jpeg, requests, after={kill_after: kill})
    victim.stop()
    after = [counts(double) for double in survivors]
    taken = [a[0] - b[0] for a, b in zip(after, survivors_at_kill, strict=True)]
    ((victim_calls, victim_images),) = victim_at_kill
    # Images that reached a double twice: on the victim when it died, again on a survivor.
    resent = victim_images + sum(images for _, images in after) - requests
    print(
        f"\n{requests} requests, {CLIENTS} clients, {load.seconds:.1f} s, {KILL.name} to "
        f"{victim.grpc_target} with a call in flight, after {kill_after} answers: it had "
        f"taken {victim_calls} calls; survivors (calls, images) {survivors_at_kill} at "
        f"the kill, {after} at the end; calls after the kill {taken}; images sent again "
        f"{resent}; latency median {statistics.median(load.latencies) * 1000:.0f} ms, "
        f"max {max(load.latencies) * 1000:.0f} ms"
    )
    assert load.failures == []
    assert len(load.statuses) == requests
    # The held call's images were answered by a survivor (and none was lost).
    assert resent > 0
    # The two replicas left took the rest between them.
    assert min(taken) > 0, taken
