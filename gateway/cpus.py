"""How many CPUs this process may really use, for sizing its thread pools.

`os.cpu_count()` reports the host's cores, but a container limited to 2 CPUs
on a 64-core node gets 2 CPUs' worth of time: 64 threads there would spend
it on switching and on CFS throttling pauses. So the quota the kernel
enforces (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`)
and the CPUs the process may be scheduled on (affinity) both cap the count.
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process can keep busy: affinity, capped by any cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in CPUs (1.5 for 150 ms every 100 ms), or None when unlimited or unknown."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period or "100000")
    for controller in ("cpu", "cpu,cpuacct"):  # v1 mounts it under either name
        v1_quota = _read(cgroup_root / controller / "cpu.cfs_quota_us")
        v1_period = _read(cgroup_root / controller / "cpu.cfs_period_us")
        if v1_quota is not None and v1_period is not None:
            return _ratio(v1_quota, v1_period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    # "max" (v2) and -1 (v1) mean no limit.
    try:
        microseconds, every = int(quota), int(period)
    except ValueError:
        return None
    if microseconds <= 0 or every <= 0:
        return None
    return microseconds / every


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
