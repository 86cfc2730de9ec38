"""Resident memory of the processes under test: read once, or its peak while a test runs.

The one place the tests and the benchmark read the RSS of a process they
started (bench/ imports it the way it imports processes.py). The decode-budget
measurement (test/e2e/test_decode_budget.py) is the exception on purpose: it
reads its own peak (VmHWM) from inside a fresh interpreter.
"""

import threading
import time

import psutil

from processes import Process


def rss_bytes(pid: int, descendants: bool = False) -> int:
    """Resident memory of process `pid`, plus that of its living descendants if asked.

    Raises psutil.Error when `pid` itself is gone; a descendant exiting
    meanwhile simply no longer counts.
    """
    root = psutil.Process(pid)
    total: int = root.memory_info().rss
    for child in root.children(recursive=True) if descendants else ():
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


class PeakRss:
    """Samples a process's RSS every millisecond, keeping the highest value seen."""

    def __init__(self, process: Process) -> None:
        assert process.popen is not None
        self._pid = process.popen.pid
        self.baseline = self.peak = rss_bytes(self._pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    @property
    def growth(self) -> int:
        """Bytes above the RSS the process had when sampling began."""
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self._pid))
            time.sleep(0.001)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.05)  # the last allocations of a request just answered
        self._stop.set()
        self._thread.join()
