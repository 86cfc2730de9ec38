"""The rate an upload keeps up over its last few seconds, and when it falls too low.

Why a window and not the average since the start: with the average, a client
that sends 16 KiB/s x 30 s at once and then stalls has earned the whole
deadline, and 32 such connections held every in-flight slot for 30 s at a
cost of 0.5 MB/s. Over a sliding window a stall is noticed a window later,
whatever came before it; a client on a working link, even a slow one, never
comes near it.
"""

from collections import deque


class RecentRate:
    """Bytes that arrived in the last `window_seconds`, against a minimum rate."""

    def __init__(self, min_bytes_per_second: int, window_seconds: float, started: float):
        self._needed = min_bytes_per_second * window_seconds
        self._window = window_seconds
        self._first_check = started + window_seconds  # the grace period
        self._arrivals: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def add(self, now: float, size: int) -> None:
        """Count `size` bytes arriving at `now`."""
        self._arrivals.append((now, size))
        self._in_window += size

    def received_lately(self, now: float) -> int:
        """Bytes that arrived within the window ending at `now`."""
        while self._arrivals and self._arrivals[0][0] <= now - self._window:
            self._in_window -= self._arrivals.popleft()[1]
        return self._in_window

    def too_slow_at(self, now: float) -> float:
        """When the window falls below the minimum if nothing more arrives (inf: never)."""
        if self._needed <= 0:
            return float("inf")
        remaining = self.received_lately(now)
        if remaining < self._needed:
            return max(now, self._first_check)
        for arrived, size in self._arrivals:  # oldest first: they leave the window in order
            remaining -= size
            if remaining < self._needed:
                return max(arrived + self._window, self._first_check)
        return max(now, self._first_check)  # unreachable: the loop always empties below
