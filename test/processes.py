"""Start and stop the real processes the end-to-end tests talk to."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TEST_DIR = ROOT / "test"
MODEL_NAME = "mobilenet"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nobody listens on right now, and not one this process handed out before.

    The kernel may offer a port again as soon as the probe socket closes; a
    fixture that picked a control port and then two more for the same double
    once got the same number twice (CI: "Address already in use").
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Process:
    """A child process with its log file, stoppable and restartable."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool]
    url: str = ""
    control_url: str = ""
    grpc_target: str = ""
    cwd: Path = ROOT
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, timeout: float = 120.0) -> "Process":
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.args[:3]} exited early:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.args[:3]} not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def answers(url: str, expect_status: int | None = None) -> Callable[[], bool]:
    """A readiness check: `url` answers (with `expect_status`, if given)."""

    def check() -> bool:
        try:
            response = httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            return False
        return expect_status is None or response.status_code == expect_status

    return check


def child_env(**overrides: str) -> dict[str, str]:
    """The test process's environment plus `overrides`, with TensorFlow kept quiet."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(overrides)
    return env


def tfserving_double(model_base_path: Path, log_path: Path, **flags: str) -> Process:
    """The TF Serving test double over `model_base_path` (…/models/<name>)."""
    rest_port = free_port()
    grpc_port = free_port()
    control_port = free_port()
    args = [
        sys.executable,
        "-m",
        "tfserving_double",
        f"--rest_api_port={rest_port}",
        f"--port={grpc_port}",
        f"--model_name={model_base_path.name}",
        f"--model_base_path={model_base_path}",
        f"--control_port={control_port}",
        *(f"--{name}={value}" for name, value in flags.items()),
    ]
    url = f"http://127.0.0.1:{rest_port}"
    return Process(
        args,
        child_env(),
        log_path,
        ready=answers(f"{url}/v1/models/{model_base_path.name}", 200),
        url=url,
        control_url=f"http://127.0.0.1:{control_port}",
        grpc_target=f"127.0.0.1:{grpc_port}",
    )


def gateway_for(double: Process, model_root: Path, log_path: Path, **env: str) -> Process:
    """A gateway in TF Serving mode pointed at `double` (gRPC predict unless `env` says REST)."""
    return gateway(
        log_path,
        INFERENCE_BACKEND="tfserving",
        TF_SERVING_URL=f"{double.url}/v1/models/{MODEL_NAME}:predict",
        TF_SERVING_GRPC_TARGET=double.grpc_target,
        MODEL_BASE_PATH=str(model_root),
        **env,
    )


def gateway(log_path: Path, python: str = sys.executable, **env: str) -> Process:
    """`python -m gateway` on a free port with `env` as its configuration."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Process(
        [python, "-m", "gateway"],
        child_env(**{"PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning", **env}),
        log_path,
        ready=answers(f"{url}/health/live", 200),
        url=url,
    )


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `check` until it holds, or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def set_faults(double: Process, **faults: object) -> None:
    """Make the TF Serving double misbehave (see tfserving_double.faults)."""
    httpx.put(f"{double.control_url}/faults", json=faults).raise_for_status()
