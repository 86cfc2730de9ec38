"""Start the processes under test: the TF Serving double, gateways and the naive gateway.

Reuses test/processes.py, the helpers the end-to-end tests start them with.
"""

import socket
import sys
import time
from pathlib import Path

from bench.harness import (
    ROOT,
    Process,
    answers,
    child_env,
    free_port,
    gateway,
    tfserving_double,
)

MODEL_READY_TIMEOUT_S = 180.0

__all__ = ["ROOT", "Process", "grpc_listens", "start_double", "start_gateway", "start_naive"]


def start_double(model_dir: Path, logs: Path) -> Process:
    """The TF Serving double serving `model_dir` (…/<name>), REST and, when it has it, gRPC."""
    return tfserving_double(model_dir.resolve(), logs / "double.log").start(MODEL_READY_TIMEOUT_S)


def grpc_listens(double: Process, wait_s: float = 2.0) -> bool:
    """Whether something accepts connections on the double's gRPC port."""
    host, _, port = double.grpc_target.rpartition(":")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def start_gateway(name: str, logs: Path, env: dict[str, str]) -> Process:
    """`python -m gateway` with `env`, started and ready (a model version AVAILABLE)."""
    process = gateway(logs / f"gateway-{name}.log")
    # After the helper's defaults (LOG_LEVEL=warning), so --gateway-env can change them.
    process.env.update({key: value for key, value in env.items() if key not in ("HOST", "PORT")})
    process.ready = answers(f"{process.url}/health", 200)
    return process.start(MODEL_READY_TIMEOUT_S)


def start_naive(double: Process, model_dir: Path, logs: Path) -> Process:
    """The naive gateway in front of the double's REST predict."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = Process(
        [
            sys.executable,
            "-m",
            "bench.naive_gateway",
            "--port",
            str(port),
            "--predict-url",
            f"{double.url}/v1/models/{model_dir.name}:predict",
        ],
        child_env(),
        logs / "naive-gateway.log",
        ready=answers(f"{url}/health", 200),
        url=url,
        cwd=ROOT,
    )
    return process.start(MODEL_READY_TIMEOUT_S)
