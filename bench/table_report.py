"""The benchmark table as markdown, ready to paste into the README's Performance section.

Each table is a list of columns (heading, alignment, how a row fills the cell),
so the three tables share one renderer and a column is added in one place.
"""

import math
from collections.abc import Callable
from typing import Any

from bench.table_rows import C1_OVER_BATCH1_MS, C16_SHARE, INT8_SPEEDUP
from bench.watch import DISTURBED_CORES

_DISTURBED = "†"

Row = dict[str, Any]
Column = tuple[str, str, Callable[[Row], str]]  # heading, alignment rule, cell


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, form: str) -> str:
    return "" if value is None else format(value, form)


def _rate(row: Row) -> str:
    return f"{row['per_second']:.1f}" + (f" {_DISTURBED}" if row["disturbed"] else "")


def _text(key: str) -> Column:
    return (key.replace("_", " "), "---", lambda row: str(row[key]))


MAIN: tuple[Column, ...] = (
    _text("model"),
    _text("weights"),
    _text("precision"),
    _text("body"),
    ("c", "---:", lambda row: str(row["concurrency"])),
    ("req/s", "---:", _rate),
    ("÷ ceiling", "---:", lambda row: _number(row["vs_ceiling"], 2)),
    ("p50 ms", "---:", lambda row: _ms(row["p50_ms"])),
    ("p99 ms", "---:", lambda row: _ms(row["p99_ms"])),
    (
        "c=1 p50 minus model batch-1 p50 ms",
        "---:",
        lambda row: _signed(row["p50_over_batch1_ms"], "+.1f"),
    ),
    ("gateway CPU ms/req", "---:", lambda row: _number(row["gateway_cpu_ms_per_request"], 1)),
)
CEILINGS: tuple[Column, ...] = (
    _text("model"),
    _text("precision"),
    _text("best_setup"),
    ("img/s before", "---:", lambda entry: f"{entry['before']:.1f}"),
    ("img/s after", "---:", lambda entry: _number(entry["after"], 1)),
    ("drift", "---:", lambda entry: _signed(entry["drift"], "+.1%")),
    ("ratios divide by", "---:", lambda entry: f"{entry['reference']:.1f}"),
    ("batch-1 p50 ms (2 threads, 1 caller)", "---:", lambda entry: _ms(entry["batch1_p50_ms"])),
)
PHOTOS: tuple[Column, ...] = (
    *MAIN[:1],
    *MAIN[2:3],
    ("photograph", "---", lambda row: str(row["upload"])),
    ("bytes", "---:", lambda row: f"{row['image_bytes']:,}"),
    *MAIN[3:8],
    MAIN[-1],
)


def render(results: dict[str, Any], derived: dict[str, Any]) -> str:
    """The whole report: header, main table, ceilings, photographs, goals and notes."""
    parts = [
        _header(results),
        _table("Gateway against the model, 480x360 JPEG", MAIN, derived["main"]),
        _table(
            "Ceilings: the model alone, batch 1, measured before and after its gateway rows",
            CEILINGS,
            derived["ceilings"],
        ),
        _table("Real photographs, 480x360 JPEG (quality 90, no grain)", PHOTOS, derived["photos"]),
        _goals(derived["goals"]),
        _notes(results, derived),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _header(results: dict[str, Any]) -> str:
    machine, plan = results["machine"], results["plan"]
    load = " / ".join(map(str, machine["load_average"]))
    int8 = machine.get("int8_instructions")  # absent from runs before it was recorded
    int8_line = "not recorded" if int8 is None else ", ".join(int8) or "none"
    facts = {
        "machine": f"{machine['cpu']}, {machine['cores']} cores ({machine['physical_cores']} "
        f"physical), {machine['ram_gib']} GiB RAM; int8 instructions: "
        f"{int8_line}; load average at start {load}",
        "software": f"Python {machine['python']}, "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
        "command": f"`{results['command']}`",
        "models": ", ".join(plan["models"]),
        "each measurement": f"{plan['duration_s']:g} s after {plan['warmup_s']:g} s warm-up, "
        f"taken again (up to {plan['retries']} times) while other processes kept more than "
        f"{DISTURBED_CORES:g} cores busy ({_DISTURBED}: still disturbed)",
        "gateways": "embedded backend, LiteRT, the copy EMBEDDED_PRECISION names; ceilings: "
        "the same copy alone in a child process, batch 1",
    }
    title = f"## Benchmark table, {results['started']}"
    return "\n".join([title, "", *(f"- {name}: {fact}" for name, fact in facts.items())])


def _table(title: str, columns: tuple[Column, ...], rows: list[Row]) -> str:
    if not rows:
        return ""
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(heading for heading, _, _ in columns) + " |",
        "|" + "|".join(rule for _, rule, _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(row) for _, _, cell in columns) + " |" for row in rows]
    return "\n".join(lines)


def _goals(judged: list[dict[str, Any]]) -> str:
    lines = [
        "### Goals (issue 14; information, not asserts)",
        "",
        f"c=16 at least {C16_SHARE:g} x the ceiling; c=1 p50 within {C1_OVER_BATCH1_MS:g} ms of "
        f"the model's batch-1 p50; the int8 ceiling at least {INT8_SPEEDUP:g} x the float32 one.",
        "",
    ]
    if not judged:
        return "\n".join([*lines, "- nothing to judge: no row was measured"])
    for goal in judged:
        lines.append(f"- {'met' if goal['met'] else 'NOT met'}: {goal['goal']} — {goal['shown']}")
    return "\n".join(lines)


def _notes(results: dict[str, Any], derived: dict[str, Any]) -> str:
    notes = list(results.get("notes", []))
    for copy in results.get("copies", []):
        name = f"{copy['model']} {copy['precision']}"
        for when in ("ceiling_before", "ceiling_after"):
            error = (copy.get(when) or {}).get("error")
            if error:
                notes.append(f"{name}: {when.replace('_', ' ')} not measured, {error}")
        if copy.get("error"):
            notes.append(f"{name}: {copy['error']}")
        served = copy.get("served_precision")
        if copy.get("rows") and served != copy["precision"]:
            notes.append(f"{name}: the gateway's answers said precision {served!r}")
    for row in [*derived["main"], *derived["photos"]]:
        if row["failures"]:
            notes.append(
                f"{row['model']} {row['precision']}, {row['upload']} {row['body']}, "
                f"c={row['concurrency']}: {row['failures']} answers were not 200"
            )
    if not notes:
        return ""
    return "### Notes\n\n" + "\n".join(f"- {note}" for note in notes)
