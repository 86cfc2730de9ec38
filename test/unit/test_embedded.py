"""The embedded backend with a fake runtime: loads on their own thread, retries with back-off."""

import asyncio
import itertools
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from gateway.embedded import EmbeddedBackend, newest_version
from gateway.errors import BackendUnavailable
from gateway.runtimes import Runtime, TensorNames
from gateway.settings import Settings

HANG_S = 10.0  # a test that would hang fails after this instead
T = TypeVar("T")


class FakeRuntime:
    """Scores every image 1.0 on its version's class; `run` may wait for a partner call."""

    name = "fake"
    precision = "float32"

    def __init__(self, version: int, rendezvous: threading.Barrier | None = None):
        self.tensors = TensorNames("images", "probabilities", (2, 2), 4)
        self._version = version
        self._rendezvous = rendezvous

    def run(self, images: np.ndarray) -> np.ndarray:
        if self._rendezvous is not None:
            self._rendezvous.wait()  # BrokenBarrierError unless another call runs alongside
        scores = np.zeros((images.shape[0], 4), dtype=np.float32)
        scores[:, self._version] = 1.0
        return scores

    def warm(self, batch_sizes: tuple[int, ...]) -> None: ...


class FakeLoader:
    """Loads version folders as FakeRuntimes, recording each attempt; rules per version."""

    def __init__(self) -> None:
        self.attempts: dict[int, list[float]] = {}
        self.failures_left: dict[int, int] = {}
        self.gates: dict[int, threading.Event] = {}  # a load waits here until the test sets it
        self.started: dict[int, threading.Event] = {}
        self.rendezvous: threading.Barrier | None = None

    def __call__(
        self, version_dir: Path, choice: str, threads: int, copies: int, precision: str
    ) -> Runtime:
        version = int(version_dir.name)
        self.attempts.setdefault(version, []).append(time.monotonic())
        self.started.setdefault(version, threading.Event()).set()
        if version in self.gates and not self.gates[version].wait(HANG_S):
            raise TimeoutError("the test never released this load")
        if self.failures_left.get(version, 0) > 0:
            self.failures_left[version] -= 1
            raise ValueError(f"{version_dir} is not a valid model (a path the client must not see)")
        return FakeRuntime(version, self.rendezvous)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    (tmp_path / "mobilenet").mkdir(exist_ok=True)
    values: dict[str, object] = {
        "model_base_path": tmp_path,
        "model_name": "mobilenet",
        "status_poll_seconds": 0.05,
        "batch_concurrency": 2,
        "batch_max_size": 1,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `check` until it returns something, or fail after HANG_S."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run_backend(
    settings: Settings, loader: FakeLoader, body: Callable[[EmbeddedBackend], Awaitable[None]]
) -> None:
    async def main() -> None:
        backend = EmbeddedBackend(settings, load=loader)
        await backend.start()
        try:
            await asyncio.wait_for(body(backend), HANG_S * 3)
        finally:
            await backend.close()

    asyncio.run(main())


def image() -> np.ndarray:
    return np.zeros((1, 2, 2, 3), dtype=np.uint8)


async def serving(backend: EmbeddedBackend, version: int) -> bool:
    return backend.served_version() == version


def test_a_loading_version_takes_no_inference_thread(tmp_path: Path) -> None:
    """Both inference threads answer side by side while version 2 is stuck loading."""
    settings = make_settings(tmp_path)
    (tmp_path / "mobilenet" / "1").mkdir()
    loader = FakeLoader()
    loader.gates[2] = threading.Event()
    loader.rendezvous = threading.Barrier(2, timeout=HANG_S / 2)

    async def body(backend: EmbeddedBackend) -> None:
        await eventually(lambda: serving(backend, 1), "version 1 to serve")
        (tmp_path / "mobilenet" / "2").mkdir()
        started = loader.started.setdefault(2, threading.Event())
        assert await asyncio.to_thread(started.wait, HANG_S), "version 2 never began loading"

        # Each call waits at the barrier for the other: both need a thread of their own.
        first, second = await asyncio.gather(backend.predict(image()), backend.predict(image()))
        assert (first.version, second.version) == (1, 1)
        assert first.probabilities[0, 1] == 1.0
        status = await backend.status()
        assert (status.ready, status.version) == (True, 1)

        loader.rendezvous = None
        loader.gates[2].set()
        await eventually(lambda: serving(backend, 2), "version 2 to serve")
        assert (await backend.predict(image())).version == 2

    run_backend(settings, loader, body)


def test_a_failed_version_is_retried_with_doubling_waits_up_to_the_cap(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        status_poll_seconds=30.0,  # retries come from the back-off, not from the poll
        embedded_load_retry_seconds=0.1,
        embedded_load_retry_max_seconds=0.2,
    )
    (tmp_path / "mobilenet" / "3").mkdir()
    loader = FakeLoader()
    loader.failures_left[3] = 4

    async def body(backend: EmbeddedBackend) -> None:
        await eventually(lambda: serving(backend, 3), "version 3 to serve after its failures")

    run_backend(settings, loader, body)
    times = loader.attempts[3]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 4
    for gap, wait in zip(gaps, [0.1, 0.2, 0.2, 0.2], strict=True):
        assert gap >= wait
    assert gaps[-1] < 0.8, "uncapped, the fourth wait would be 0.8 s"


def version_2_failing(
    tmp_path: Path, retry_seconds: float, failures: int
) -> tuple[Settings, FakeLoader]:
    """Settings over a folder holding version 1, and a loader failing version 2 `failures` times."""
    settings = make_settings(tmp_path, embedded_load_retry_seconds=retry_seconds)
    (tmp_path / "mobilenet" / "1").mkdir()
    loader = FakeLoader()
    loader.failures_left[2] = failures
    return settings, loader


async def add_version_2_to(backend: EmbeddedBackend, tmp_path: Path) -> None:
    """Once version 1 serves, publish version 2's folder."""
    await eventually(lambda: serving(backend, 1), "version 1 to serve")
    (tmp_path / "mobilenet" / "2").mkdir()


def test_a_failing_version_is_reported_in_tf_servings_shape_without_paths(tmp_path: Path) -> None:
    settings, loader = version_2_failing(tmp_path, retry_seconds=30.0, failures=1)

    async def body(backend: EmbeddedBackend) -> None:
        await add_version_2_to(backend, tmp_path)

        async def failed() -> str:
            return (await backend.status()).detail

        detail = await eventually(failed, "version 2's failure to show")
        assert detail.startswith("version 2 could not be loaded (ValueError; see the log)")
        assert "version 1 keeps serving" in detail
        assert str(tmp_path) not in detail
        status = await backend.status()
        assert (status.ready, status.state, status.version) == (True, "AVAILABLE", 1)
        message = "version 2 could not be loaded (ValueError; see the log)"
        assert status.document == {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "END",
                    "status": {"error_code": "UNKNOWN", "error_message": message},
                },
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                },
            ]
        }
        assert (await backend.predict(image())).version == 1

    run_backend(settings, loader, body)
    assert len(loader.attempts[2]) == 1  # the next attempt is 30 s away


def test_a_model_folder_gone_mid_retry_is_said_and_the_failure_forgotten(
    tmp_path: Path,
) -> None:
    """The whole folder removed while version 2 fails: version 1 keeps serving from memory,
    and /health says the folder is gone rather than a retry that will never come."""
    settings, loader = version_2_failing(tmp_path, retry_seconds=0.05, failures=1_000)

    async def body(backend: EmbeddedBackend) -> None:
        await add_version_2_to(backend, tmp_path)

        async def detail_with(text: str) -> str | None:
            detail = (await backend.status()).detail
            return detail if text in detail else None

        await eventually(lambda: detail_with("version 2 could not be loaded"), "the failure")
        shutil.rmtree(tmp_path / "mobilenet")
        detail = await eventually(lambda: detail_with("keeps serving from memory"), "the loss")
        assert "could not be loaded" not in detail
        status = await backend.status()
        assert (status.ready, status.version) == (True, 1)
        assert (await backend.predict(image())).version == 1

    run_backend(settings, loader, body)


def test_a_first_version_that_fails_is_not_ready_and_says_why(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded_load_retry_seconds=30.0)
    (tmp_path / "mobilenet" / "1").mkdir()
    loader = FakeLoader()
    loader.failures_left[1] = 1

    async def body(backend: EmbeddedBackend) -> None:
        async def ended() -> bool:
            return (await backend.status()).state == "END"

        await eventually(ended, "version 1's failure to show")
        status = await backend.status()
        assert (status.ready, status.version) == (False, 1)
        assert "trying again in" in status.detail
        assert status.document is not None
        (entry,) = status.document["model_version_status"]
        assert (entry["version"], entry["state"]) == ("1", "END")
        assert entry["status"]["error_code"] == "UNKNOWN"
        with pytest.raises(BackendUnavailable, match="not ready"):
            await backend.predict(image())

    run_backend(settings, loader, body)


def test_status_reports_without_loading_anything(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "mobilenet" / "1").mkdir()
    loader = FakeLoader()

    async def main() -> None:
        backend = EmbeddedBackend(settings, load=loader)  # never started: no watcher
        try:
            for _ in range(3):
                status = await backend.status()
                assert (status.ready, status.state) == (False, "LOADING")
                await asyncio.sleep(0.1)
        finally:
            await backend.close()

    asyncio.run(main())
    assert loader.attempts == {}


def test_only_plain_version_numbers_are_versions(tmp_path: Path) -> None:
    for name in ("1", "7", "²", "01", "+9", "99999999999999999999", "8.5", "tmp-12"):
        (tmp_path / name).mkdir()
    assert newest_version(tmp_path) == 7


def test_a_folder_of_odd_names_only_has_no_version(tmp_path: Path) -> None:
    for name in ("²", "007", "12345678901234567890123"):
        (tmp_path / name).mkdir()
    with pytest.raises(FileNotFoundError, match="no numeric version folder"):
        newest_version(tmp_path)
