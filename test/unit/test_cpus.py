"""Thread pools sized to the CPUs the process may use, container quotas included."""

import os
from pathlib import Path

import pytest

from gateway.cpus import available_cpus, cgroup_cpu_quota
from gateway.settings import Settings


def cgroup(root: Path, files: dict[str, str]) -> Path:
    """A fake /sys/fs/cgroup holding `files` (relative path to contents)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000"}, 1.5),  # v2: docker run --cpus 1.5
        ({"cpu.max": "max 100000"}, None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
        ({"cpu.max": "garbage"}, None),
        ({}, None),  # not in a container
    ],
)
def test_the_cgroup_quota_is_read_in_cpus(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    assert cgroup_cpu_quota(cgroup(tmp_path, files)) == quota


def test_a_quota_caps_the_count_and_rounds_up(tmp_path: Path) -> None:
    half = cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})
    assert available_cpus(half) == 1
    huge = cgroup(tmp_path / "huge", {"cpu.max": "6400000 100000"})  # 64 CPUs
    assert available_cpus(huge) == len(os.sched_getaffinity(0))  # affinity is the lower cap


def test_without_a_quota_the_affinity_counts(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_thread_pools_default_to_the_usable_cpus() -> None:
    settings = Settings()
    assert settings.preprocess_threads == available_cpus()
    assert settings.inference_threads == available_cpus()
