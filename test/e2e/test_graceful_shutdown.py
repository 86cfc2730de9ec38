"""SIGTERM to a loaded gateway: not ready at once, accepted work finished, new work refused, exit 0.

The real `python -m gateway` in front of the TF Serving double, whose `delay_ms`
fault makes every model call slow, so predictions are surely in flight when the
signal arrives. The gateway logs how many it had accepted then and how long the
drain took (gateway/shutdown.py); the test reads both from its log and prints
them with the clients' counts (run with -s to see them).

A signal while the process is still importing (gateway/early_signals.py) is
sent the moment the process has a SIGTERM handler, which /proc shows: that
handler is the first thing `python -m gateway` installs, a second before it
could serve.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
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
from processes import (
    Process,
    answers,
    gateway,
    gateway_for,
    set_faults,
    tfserving_double,
    wait_until,
)

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


def catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGTERM (the SigCgt mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    assert match is not None
    return bool(int(match[1], 16) & (1 << (signal.SIGTERM - 1)))


def spawn_importing(front: Process, prefix: tuple[str, ...] = ()) -> int:
    """Start `front` (after `prefix`); the pid of its Python once it holds SIGTERM."""
    with front.log_path.open("ab") as log:
        front.popen = subprocess.Popen(
            [*prefix, *front.args], cwd=front.cwd, env=front.env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Polling is the only way to see the handler appear; the imports that
        # follow it take about a second, far longer than one poll.
        for pid in _python_pids(front.popen.pid, inside=bool(prefix)):
            with contextlib.suppress(FileNotFoundError):
                if catches_sigterm(pid):
                    return pid
        assert front.popen.poll() is None, front.log_tail()
        time.sleep(0.002)
    raise AssertionError(f"no SIGTERM handler within 30 s:\n{front.log_tail()}")


def exits_without_serving(front: Process) -> int:
    """Wait for the exit, checking all along that the gateway never answers; its status."""
    assert front.popen is not None
    ready = answers(f"{front.url}/health/ready")
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while front.popen.poll() is None:
        assert not ready(), "the gateway answered although it was told to stop"
        assert time.monotonic() < deadline, "the gateway did not exit"
        time.sleep(0.05)
    return exit_code(front, 0)


def importing_gateway(logs: Path, name: str) -> Process:
    # Nothing listens on port 9: the gateway must stop before it would ask.
    return gateway(logs / name, LOG_LEVEL="info", TF_SERVING_URL="http://127.0.0.1:9")


def test_sigterm_while_importing_stops_before_serving_with_status_0(logs: Path) -> None:
    front = importing_gateway(logs, "shutdown-while-importing.log")
    try:
        pid = spawn_importing(front)
        os.kill(pid, signal.SIGTERM)
        assert exits_without_serving(front) == 0  # not 143: the signal did not kill it
    finally:
        front.stop()
    text = front.log_path.read_text()
    assert "signalled while starting: stopping before serving" in text
    assert "Uvicorn running on" not in text  # it never listened


def test_a_second_signal_while_importing_exits_at_once_with_status_1(logs: Path) -> None:
    front = importing_gateway(logs, "shutdown-while-importing-twice.log")
    try:
        pid = spawn_importing(front)
        # Two different signals: two of the same kind may merge into one.
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        assert exits_without_serving(front) == 1
    finally:
        front.stop()
    assert "stopping before serving" not in front.log_path.read_text()


def _can_be_pid_1() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    return subprocess.run([unshare, "-pf", "--mount-proc", "true"], check=False).returncode == 0


@pytest.mark.skipif(not _can_be_pid_1(), reason="needs root and unshare for a PID namespace")
def test_as_pid_1_of_a_container_sigterm_while_importing_still_stops_it(logs: Path) -> None:
    """The kernel drops a signal PID 1 has no handler for: the gateway must have one early."""
    front = importing_gateway(logs, "shutdown-while-importing-pid1.log")
    try:
        pid = spawn_importing(front, prefix=("unshare", "-pf", "--kill-child", "--mount-proc"))
        os.kill(pid, signal.SIGTERM)
        assert exits_without_serving(front) == 0  # unshare exits with its child's status
    finally:
        front.stop()
    assert "stopping before serving" in front.log_path.read_text()


def _python_pids(pid: int, inside: bool) -> list[int]:
    """`pid` itself, or, for `unshare -f`, the child it forked (PID 1 in its namespace)."""
    if not inside:
        return [pid]
    with contextlib.suppress(FileNotFoundError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]
    return []


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
