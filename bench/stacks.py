"""Where a profiled gateway's CPU went: py-spy's collapsed stacks, summed by thread and frame.

py-spy (`record --format raw --threads`) writes one line per distinct stack,
`thread (tid);frame;frame;... count`, counting the samples in which that thread
was running. Summed here by the gateway's own thread names (the event loop is
`MainThread`; the pools are `preprocess_N`, `embedded-model_N`) and, within
each, by the innermost Python frame, which is what to optimise. Time spent in
C below a Python frame (libjpeg inside `ImageFile.load`, uvloop and httptools
inside `Runner.run`) is counted at that frame.
"""

import re
from collections import Counter
from dataclasses import dataclass

_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-f]+\): (?P<name>.*)$")
_POOL_SUFFIX = re.compile(r"_\d+$")
_LOCATION = re.compile(r" \(.*\)$")


@dataclass(frozen=True)
class Profile:
    """Samples by thread group and by (group, innermost frame)."""

    total: int
    by_group: Counter[str]
    by_frame: Counter[tuple[str, str]]

    def share(self, group: str) -> float:
        return self.by_group[group] / self.total if self.total else 0.0


def summarise(lines: list[str]) -> Profile:
    """Add up py-spy's raw lines; a thread pool's workers count as one group."""
    by_group: Counter[str] = Counter()
    by_frame: Counter[tuple[str, str]] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        match = _THREAD.match(thread)
        group = _POOL_SUFFIX.sub("", match["name"].strip()) if match else thread
        samples = int(count)
        by_group[group] += samples
        innermost = _LOCATION.sub("", frames[-1]) if frames else "(no Python frame)"
        by_frame[(group, innermost)] += samples
    return Profile(sum(by_group.values()), by_group, by_frame)


def render_profile(profile: Profile, per_second: float, seconds: float, rate_hz: int) -> str:
    """Markdown: each thread group's share, cores and CPU ms per request, its top frames.

    A thread sampled running in n of `rate_hz` samples a second kept n / rate_hz of a
    core busy (a thread waiting for the GIL in Python code counts as running too).
    """
    lines = [
        f"{profile.total} samples over {seconds:g} s at {rate_hz} Hz; "
        f"{per_second:.1f} requests a second under load.",
        "",
        "| thread group | share of samples | cores | CPU ms/request | top frames (share) |",
        "|---|---:|---:|---:|---|",
    ]
    for group, samples in profile.by_group.most_common():
        cores = samples / (seconds * rate_hz) if seconds else 0.0
        per_request = cores * 1000.0 / per_second if per_second else 0.0
        frames = [
            (frame, count) for (owner, frame), count in profile.by_frame.items() if owner == group
        ]
        frames.sort(key=lambda item: -item[1])
        shown = ", ".join(f"`{frame}` {count / profile.total:.1%}" for frame, count in frames[:6])
        lines.append(
            f"| {group} | {samples / profile.total:.1%} | {cores:.2f} | {per_request:.2f} "
            f"| {shown} |"
        )
    return "\n".join(lines)
