"""The highest resident memory a test's child process reaches while the test runs."""

import threading
import time

import psutil

from processes import Process


class PeakRss:
    """Samples a process's RSS every millisecond, keeping the highest value seen."""

    def __init__(self, process: Process) -> None:
        assert process.popen is not None
        self._process = psutil.Process(process.popen.pid)
        self.baseline = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    @property
    def growth(self) -> int:
        """Bytes above the RSS the process had when sampling began."""
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.001)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.05)  # the last allocations of a request just answered
        self._stop.set()
        self._thread.join()
