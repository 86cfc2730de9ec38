"""`make bench-compare`: every figure of two benchmark runs side by side, noise marked.

Each `make bench` run keeps its JSON (bench/results/<stamp>.json, with the
machine's description). This prints, for every figure both runs have, A, B and
the change, and marks a change as beyond noise only when it is larger than
the run-to-run noise measured on that machine: each run measures its best
ceiling setting twice, before and after the pipeline, and the larger drift
between the two (of either run, either runtime; at least NOISE_FLOOR) is how
much the same measurement moved with nothing changed. A difference smaller
than that is not evidence of anything.

Usage: python -m bench.compare A.json B.json (no arguments: the two newest
runs in bench/results/).
"""

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.encodings import gateway_cpu_ms_per_image

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Below this, a change is rounding and scheduling jitter whatever the drift said.
NOISE_FLOOR = 0.03


@dataclass(frozen=True)
class Figure:
    """One number of a run; `higher_is_better` says which way is an improvement."""

    name: str
    value: float
    higher_is_better: bool


def figures(run: dict[str, Any]) -> dict[str, Figure]:
    """Every comparable figure of one run, by a name stable across runs."""
    found: dict[str, Figure] = {}
    for item in _ceiling_figures(run):
        found[item.name] = item
    for item in _pipeline_figures(run):
        found[item.name] = item
    return found


def _ceiling_figures(run: dict[str, Any]) -> Iterator[Figure]:
    for runtime, ceiling in run.get("derived", {}).get("ceilings", {}).items():
        one, reference = ceiling["batch1"], ceiling["reference"]
        yield Figure(f"ceiling {runtime}, batch 1, img/s", one["per_second"], True)
        yield Figure(f"ceiling {runtime}, batch 1, p50 ms", one["p50_ms"], False)
        yield Figure(f"ceiling {runtime}, best, img/s", reference["per_second"], True)


def _pipeline_figures(run: dict[str, Any]) -> Iterator[Figure]:
    for row in run.get("pipeline", {}).get("rows", []):
        label = f"{row['backend']}, {row['image']}, c={row['concurrency']}"
        unit = "img/s" if row.get("images_per_request", 1) > 1 else "req/s"
        yield Figure(f"{label}, {unit}", row["per_second"], True)
        yield Figure(f"{label}, p50 ms", row["p50_ms"], False)
        yield Figure(f"{label}, p99 ms", row["p99_ms"], False)
        if row.get("vs_ceiling") is not None:
            yield Figure(f"{label}, ÷ ceiling", row["vs_ceiling"], True)
        cpu = gateway_cpu_ms_per_image(row)
        if cpu is not None:
            yield Figure(f"{label}, gateway CPU ms/img", cpu, False)


def measured_noise(*runs: dict[str, Any]) -> float:
    """The largest drift of a ceiling measured twice within one run (a fraction)."""
    drifts = [
        abs(float(ceiling["reference"]["drift"]))
        for run in runs
        for ceiling in run.get("derived", {}).get("ceilings", {}).values()
        if ceiling["reference"].get("drift") is not None
    ]
    return max([NOISE_FLOOR, *drifts])


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The comparison as markdown: the runs, the noise, and one row per shared figure."""
    noise = measured_noise(a, b)
    before, after = figures(a), figures(b)
    lines = [
        f"A: {_describe(a)}",
        f"B: {_describe(b)}",
        "",
        *_plan_differences(a, b),
        f"Noise: changes within ±{noise:.1%} are not marked (the largest drift of a "
        "ceiling measured twice within either run).",
        "",
        "| figure | A | B | change | |",
        "|---|---:|---:|---:|---|",
    ]
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            continue
        change = (new.value - old.value) / old.value if old.value else 0.0
        mark = ""
        if abs(change) > noise:
            improved = (change > 0) == old.higher_is_better
            mark = "better" if improved else "**worse**"
        lines.append(
            f"| {name} | {_number(old.value)} | {_number(new.value)} | {change:+.1%} | {mark} |"
        )
    missing = sorted(set(before) ^ set(after))
    if missing:
        lines += ["", "In one run only: " + "; ".join(missing)]
    return "\n".join(lines)


def _plan_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """A warning line per setting of the runs' plans that differs (model, duration...)."""
    plan_a, plan_b = a.get("plan", {}), b.get("plan", {})
    keys = sorted(set(plan_a) | set(plan_b))
    differing = [key for key in keys if plan_a.get(key) != plan_b.get(key)]
    return [
        f"Warning: the runs differ in `{key}`: {plan_a.get(key)!r} against {plan_b.get(key)!r}; "
        "a change may come from that, not from the code."
        for key in differing
    ] + ([""] if differing else [])


def _describe(run: dict[str, Any]) -> str:
    machine = run.get("machine", {})
    return (
        f"{run.get('started', '?')} on {machine.get('cpu', '?')}, {machine.get('cores', '?')} "
        f"cores, load at start {machine.get('load_average', '?')}: `{run.get('command', '?')}`"
    )


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def newest_two(directory: Path) -> list[Path]:
    """The two newest run files in `directory`, older first."""
    runs = sorted(directory.glob("*.json"))
    if len(runs) < 2:
        raise FileNotFoundError(f"{directory} holds {len(runs)} run(s); make bench twice first")
    return runs[-2:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN.json", help="A then B")
    args = parser.parse_args(argv)
    if len(args.runs) not in (0, 2):
        parser.error("give two run files (A B), or none for the two newest in bench/results/")
    try:
        paths = args.runs or newest_two(RESULTS_DIR)
        a, b = (json.loads(path.read_text()) for path in paths)
    except (OSError, ValueError) as exc:
        print(f"bench-compare: {exc}", file=sys.stderr)
        return 2
    print(compare(a, b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
