"""SIGTERM to a loaded gateway: not ready at once, accepted work finished, new work refused, exit 0.

The real `python -m gateway` in front of the TF Serving double, whose `delay_ms`
fault makes every model call slow, so predictions are surely in flight when the
signal arrives. The gateway logs how many it had accepted then and how long the
drain took (gateway/shutdown.py); the test reads both from its log and prints
them with the clients' counts (run with -s to see them).
"""

import contextlib
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api_client import post_image
from processes import Process, answers, gateway_for, set_faults, tfserving_double, wait_until

CLIENTS = 24
MODEL_DELAY_MS = 1500  # each model call; 8 images per call pair: a drain of a few seconds
STUCK_DELAY_MS = 12_000  # a model call that outlasts a short SHUTDOWN_TIMEOUT_SECONDS
EXIT_WAIT_SECONDS = 60.0
ACCEPTED = re.compile(r"waiting at most [\d.]+ s for (\d+) accepted")
DRAINED = re.compile(r"drained in ([\d.]+) s")
CUT_OFF = re.compile(r"ran out: (\d+) accepted predictions cut off")


@dataclass(frozen=True)
class Outcome:
    """One client request: sent after the signal or not, and what came back (0: no answer)."""

    after_signal: bool
    status: int
    code: str | None
    retry_after: str | None
    error: str | None = None


@pytest.fixture(scope="module")
def slow_double(model_root: Path, logs: Path) -> Iterator[Process]:
    """A double of the suite's exported model, whose faults this module alone sets."""
    process = tfserving_double(model_root / "mobilenet", logs / "shutdown-double.log").start()
    yield process
    process.stop()


def start_gateway(double: Process, model_root: Path, log: Path, **env: str) -> Process:
    front = gateway_for(double, model_root, log, LOG_LEVEL="info", **env)
    front.ready = answers(f"{front.url}/health", 200)
    return front.start()


def in_flight(front: Process) -> float:
    text = httpx.get(f"{front.url}/metrics/prometheus", timeout=5).text
    match = re.search(r"^gateway_in_flight_requests (\S+)$", text, re.MULTILINE)
    assert match is not None
    return float(match[1])


def keep_posting(url: str, image: bytes, signalled: threading.Event) -> list[Outcome]:
    """POST one image after another until the signal has been sent."""
    seen: list[Outcome] = []
    with httpx.Client(timeout=EXIT_WAIT_SECONDS) as client:
        while not signalled.is_set():
            try:
                response = client.post(f"{url}/predict", files={"file": ("cat.jpg", image)})
            except httpx.HTTPError as exc:
                seen.append(Outcome(signalled.is_set(), 0, None, None, repr(exc)))
                continue
            seen.append(_outcome(response, signalled.is_set()))
    return seen


def exit_code(front: Process, timeout: float) -> int:
    assert front.popen is not None
    code = front.popen.wait(timeout=timeout)
    front.popen = None  # exited: nothing left for stop()
    return code


def test_sigterm_under_load_drains_every_accepted_request_then_exits_0(
    slow_double: Process, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    set_faults(slow_double, delay_ms=MODEL_DELAY_MS)
    log = logs / "shutdown-under-load.log"
    front = start_gateway(slow_double, model_root, log)
    signalled = threading.Event()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            clients = [
                pool.submit(keep_posting, front.url, cat_jpeg, signalled) for _ in range(CLIENTS)
            ]
            wait_until(lambda: in_flight(front) >= CLIENTS - 4, what="the clients in flight")
            assert front.popen is not None
            signalled.set()
            sent_at = time.monotonic()
            front.popen.send_signal(signal.SIGTERM)

            # The first probe after the signal already sees it; liveness does not.
            ready = httpx.get(f"{front.url}/health/ready", timeout=5)
            assert ready.status_code == 503
            assert ready.json()["gateway"] == "shutting_down"
            assert httpx.get(f"{front.url}/health/live", timeout=5).status_code == 200
            late = post_image(front.url, cat_jpeg)
            assert late.status_code == 503
            assert late.json()["code"] == "shutting_down"
            assert late.headers["retry-after"] == "1"

            assert exit_code(front, EXIT_WAIT_SECONDS) == 0
            exited_after = time.monotonic() - sent_at
            with pytest.raises(httpx.ConnectError):
                post_image(front.url, cat_jpeg)
            outcomes = [outcome for each in clients for outcome in each.result()]
    finally:
        signalled.set()
        front.stop()
        set_faults(slow_double, delay_ms=0)

    text = log.read_text()
    accepted = int(_one(ACCEPTED, text))
    drained_in = float(_one(DRAINED, text))
    statuses = Counter((o.status, o.code) for o in outcomes)
    print(
        f"\nSIGTERM with {accepted} accepted in flight: drained in {drained_in:.2f} s, "
        f"exited {exited_after:.2f} s after the signal; client answers {dict(statuses)}"
    )
    # Nothing failed: every answer is a success or a refusal to start new work.
    failed = [o for o in outcomes if o.status != 200 and o.code != "shutting_down"]
    assert failed == []
    assert all(o.retry_after == "1" for o in outcomes if o.status == 503)
    assert accepted >= CLIENTS // 2  # the signal found work to finish
    assert statuses[(200, None)] >= accepted
    assert "cut off" not in text


@contextlib.contextmanager
def signalled_while_stuck(
    double: Process, model_root: Path, log: Path, image: bytes, **env: str
) -> Iterator[tuple[Process, "Future[Outcome]"]]:
    """A gateway sent SIGTERM while one prediction waits on a model call that takes 12 s."""
    set_faults(double, delay_ms=STUCK_DELAY_MS)
    front = start_gateway(double, model_root, log, **env)
    try:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_post_outcome, front.url, image)
            wait_until(lambda: in_flight(front) >= 1, what="the request in flight")
            assert front.popen is not None
            front.popen.send_signal(signal.SIGTERM)
            yield front, stuck
    finally:
        front.stop()
        set_faults(double, delay_ms=0)


def test_shutdown_timeout_bounds_the_drain_and_the_exit_is_still_0(
    slow_double: Process, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    log = logs / "shutdown-timeout.log"
    env = {"SHUTDOWN_TIMEOUT_SECONDS": "1", "TF_SERVING_TIMEOUT_SECONDS": "60"}
    with signalled_while_stuck(slow_double, model_root, log, cat_jpeg, **env) as (front, stuck):
        # Exits after about 1 s, long before the model call could answer.
        assert exit_code(front, STUCK_DELAY_MS / 1000 * 0.75) == 0
        outcome = stuck.result()
    assert int(_one(CUT_OFF, log.read_text())) == 1
    # Cut off, but told so: a 503 to retry elsewhere, not uvicorn's bare 500.
    assert (outcome.status, outcome.code, outcome.retry_after) == (503, "shutting_down", "1")


def test_a_second_sigterm_exits_at_once_with_status_1(
    slow_double: Process, model_root: Path, logs: Path, cat_jpeg: bytes
) -> None:
    log = logs / "shutdown-forced.log"
    with signalled_while_stuck(slow_double, model_root, log, cat_jpeg) as (front, stuck):
        assert front.popen is not None
        # Draining (the probe proves the first signal was handled), then forced.
        assert httpx.get(f"{front.url}/health/ready", timeout=5).status_code == 503
        front.popen.send_signal(signal.SIGTERM)
        assert exit_code(front, STUCK_DELAY_MS / 1000 * 0.75) == 1
        stuck.result()


def _post_outcome(url: str, image: bytes) -> Outcome:
    try:
        response = post_image(url, image)
    except httpx.HTTPError as exc:
        return Outcome(False, 0, None, None, repr(exc))
    return _outcome(response, after_signal=False)


def _outcome(response: httpx.Response, after_signal: bool) -> Outcome:
    """What came back; a problem document's code, if the answer is one."""
    problem = response.headers.get("content-type") == "application/problem+json"
    code = response.json()["code"] if problem else None
    return Outcome(after_signal, response.status_code, code, response.headers.get("retry-after"))


def _one(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.findall(text)
    assert len(found) == 1, f"{pattern.pattern!r} in the gateway's log: {found}"
    value: str = found[0]
    return value
