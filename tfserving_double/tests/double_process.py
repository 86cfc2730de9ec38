"""The double as a subprocess for its own tests: start it, read its ready line, stop it.

Every test module of the double starts it through `Double`, so the ready line is
read, the log kept and a clean SIGTERM checked in one place. The models written
here are half_plus_two versions whose offset is the version number
(y = 0.5 * x + N), so a prediction names the version that answered it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

import double_models
from processes import ROOT, child_env

READY_PREFIX = "tfserving_double: REST on 127.0.0.1:"
# Any --listen_host: "tfserving_double: REST on HOST:PORT ..."
READY_LINE = re.compile(r"tfserving_double: REST on ([0-9.]+):([0-9]+) ")


def write_versions(base_path: Path, versions: list[int]) -> Path:
    """Publish half_plus_two versions under `base_path`, each with its number as offset."""
    base_path.mkdir(parents=True, exist_ok=True)
    for version in versions:
        double_models.publish(
            str(base_path),
            version,
            lambda path, offset=float(version): double_models.write_half_plus_two(path, offset),
        )
    return base_path


def write_models(root: Path, models: dict[str, list[int]]) -> Path:
    """Publish each model's versions under root/NAME (see `write_versions`); return `root`."""
    for name, versions in models.items():
        write_versions(root / name, versions)
    return root


def write_config(path: Path, text: str) -> Path:
    """Replace a config file in one rename, so a poller never reads half of it."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, path)
    return path


class Double:
    """A tfserving_double subprocess with its ready line and log (stderr)."""

    def __init__(self, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        # REST on a free port unless `flags` name one: the last value of a flag wins.
        command = [sys.executable, "-m", "tfserving_double", "--rest_api_port=0", *flags]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, env=child_env(), cwd=ROOT, text=True
            )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self.host = "127.0.0.1"
        self.port = 0
        self.ready_line = ""

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as stream:
            for line in stream:
                self._lines.put(line)

    def wait_ready(self, timeout: float = 90) -> Double:
        """Wait for the ready line and read the REST address from it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, self.log()
                continue
            ready = READY_LINE.match(line)
            if ready:
                self.host, self.port = ready[1], int(ready[2])
                self.ready_line = line.strip()
                return self
        raise AssertionError(f"double not ready after {timeout} s:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exit_status(self, timeout: float = 90) -> int:
        """Wait for the process to end by itself."""
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status

    def stop(self) -> int:
        """SIGTERM the process and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.exit_status(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_status(timeout=5)
            raise


def serve(double: Double) -> Iterator[Double]:
    """Yield `double` once ready (a fixture's body) and check that SIGTERM stops it cleanly."""
    try:
        yield double.wait_ready()
    finally:
        status = double.stop()
    assert status == 0, double.log()


def wait_until(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll another process's observable state until `check` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def predict_offset(client: httpx.Client, double: Double, path: str) -> float:
    """POST x=0 to `path` (…:predict) and return y, the answering version's offset."""
    response = client.post(double.url + path, json={"instances": [[0.0]]})
    assert response.status_code == 200, response.text
    return float(response.json()["predictions"][0][0])


def states(client: httpx.Client, double: Double, model: str) -> dict[int, str]:
    """Version -> state from GET /v1/models/MODEL ({} while the model is unknown)."""
    response = client.get(f"{double.url}/v1/models/{model}")
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {int(s["version"]): s["state"] for s in response.json()["model_version_status"]}


def available(client: httpx.Client, double: Double, model: str) -> set[int]:
    """The model's AVAILABLE versions."""
    return {v for v, state in states(client, double, model).items() if state == "AVAILABLE"}
