"""What the processes under test cost while a run lasts: CPU time, peak memory, other load."""

import threading
import time
from dataclasses import dataclass

import psutil

from bench.harness import rss_bytes

_SAMPLE_EVERY_S = 0.05
# Other processes busier than this (in cores) during a measurement make it suspect:
# the benchmark measures again, up to its retry count, and flags what stays disturbed.
DISTURBED_CORES = 0.25


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its living descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in (root, *root.children(recursive=True)):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process's main thread: for a gateway, its event loop."""
    try:
        for thread in psutil.Process(pid).threads():
            if thread.id == pid:
                return float(thread.user_time + thread.system_time)
    except psutil.Error:
        pass
    return 0.0


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent not idle, summed over cores."""
    times = psutil.cpu_times()
    busy: float = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    return busy


@dataclass(frozen=True)
class Usage:
    """CPU per watched process tree, as cores busy on average, and what others used."""

    cores_by_name: dict[str, float]
    main_thread_cores_by_name: dict[str, float]
    others_cores: float  # machine busy time not spent by this benchmark's own processes
    peak_rss_bytes: dict[str, int]


class Watch:
    """Samples the watched trees' memory in a thread and their CPU at start and stop.

    `own_pid` is the benchmark process: its tree (which includes the watched
    children) is subtracted from the machine's busy time to show other load.
    """

    def __init__(self, pids: dict[str, int], own_pid: int):
        self._pids = pids
        self._own_pid = own_pid
        self._peaks = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._cpu: dict[str, float] = {}
        self._main: dict[str, float] = {}
        self._own = self._busy = self._began = 0.0

    def __enter__(self) -> "Watch":
        self._cpu = {name: tree_cpu_seconds(pid) for name, pid in self._pids.items()}
        self._main = {name: main_thread_cpu_seconds(pid) for name, pid in self._pids.items()}
        self._own = tree_cpu_seconds(self._own_pid)
        self._busy = busy_cpu_seconds()
        self._began = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        elapsed = max(time.perf_counter() - self._began, 1e-9)
        cores = {
            name: (tree_cpu_seconds(pid) - self._cpu[name]) / elapsed
            for name, pid in self._pids.items()
        }
        main = {
            name: (main_thread_cpu_seconds(pid) - self._main[name]) / elapsed
            for name, pid in self._pids.items()
        }
        own = (tree_cpu_seconds(self._own_pid) - self._own) / elapsed
        busy = (busy_cpu_seconds() - self._busy) / elapsed
        self.usage = Usage(cores, main, max(0.0, busy - own), dict(self._peaks))

    def _sample(self) -> None:
        while not self._stop.wait(_SAMPLE_EVERY_S):
            for name, pid in self._pids.items():
                try:
                    rss = rss_bytes(pid, descendants=True)
                except psutil.Error:
                    continue  # exited: the peak so far stands
                self._peaks[name] = max(self._peaks[name], rss)
