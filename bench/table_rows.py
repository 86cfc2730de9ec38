"""The benchmark table's rows, derived from what bench/table_runs.py measured: pure arithmetic.

Every gateway row is divided by its own copy's ceiling, measured in the same
run: the mean of the best setup before the gateway rows and the same setup
again after them (bench/ratios.py does the same for `python -m bench`), so a
slower or faster spell of this shared machine does not land on one side only.
The c=1 rows are compared with the copy's batch-1 latency: the p50 of one
caller on the 2-thread interpreter, the call a lone request makes.
"""

from typing import Any

from bench.encodings import gateway_cpu_ms_per_image
from bench.ratios import ceiling_summary
from bench.watch import DISTURBED_CORES

# Issue 14's goals; the table reports them, it does not assert them.
C16_SHARE = 0.85
C1_OVER_BATCH1_MS = 2.0
INT8_SPEEDUP = 2.0


def ceiling_entry(copy: dict[str, Any]) -> dict[str, Any] | None:
    """One copy's ceiling: best img/s before and after the gateway rows, drift, batch-1 p50."""
    summary = ceiling_summary(copy.get("ceiling_before"))
    if summary is None:
        return None
    before = float(summary["best"]["per_second"])
    again = (copy.get("ceiling_after") or {}).get("rows") or []
    after = float(again[0]["per_second"]) if again and again[0]["per_second"] > 0 else None
    return {
        "model": copy["model"],
        "precision": copy["precision"],
        "best_setup": summary["best"]["label"],
        "before": before,
        "after": after,
        "drift": after / before - 1.0 if after is not None and before > 0 else None,
        "reference": (before + after) / 2 if after is not None else before,
        "batch1_p50_ms": float(summary["batch1"]["p50_ms"]),
    }


def gateway_row(
    copy: dict[str, Any], ceiling: dict[str, Any] | None, row: dict[str, Any]
) -> dict[str, Any]:
    """One measured gateway row, with its ratio to the copy's `ceiling` and its CPU per request."""
    per_second = float(row["per_second"])
    reference = ceiling["reference"] if ceiling is not None else 0.0
    over = None
    if ceiling is not None and row["concurrency"] == 1:
        over = float(row["p50_ms"]) - ceiling["batch1_p50_ms"]
    return {
        "model": copy["model"],
        "weights": copy["weights"],
        "precision": copy["precision"],
        "upload": row["upload"],
        "image_bytes": row["image_bytes"],
        "body": row["encoding"],
        "concurrency": row["concurrency"],
        "per_second": per_second,
        "vs_ceiling": per_second / reference if reference > 0 else None,
        "p50_ms": float(row["p50_ms"]),
        "p99_ms": float(row["p99_ms"]),
        "p50_over_batch1_ms": over,
        "gateway_cpu_ms_per_request": gateway_cpu_ms_per_image(row),
        "failures": row["failures"],
        "disturbed": row.get("other_load_cores", 0.0) > DISTURBED_CORES,
    }


def derive(copies: list[dict[str, Any]]) -> dict[str, Any]:
    """The three tables' rows and the goals, from the measured copies."""
    main: list[dict[str, Any]] = []
    photos: list[dict[str, Any]] = []
    for copy in copies:
        ceiling = ceiling_entry(copy)
        main += [gateway_row(copy, ceiling, row) for row in copy.get("rows", [])]
        photos += [gateway_row(copy, ceiling, row) for row in copy.get("photo_rows", [])]
    ceilings = [entry for copy in copies if (entry := ceiling_entry(copy)) is not None]
    return {"ceilings": ceilings, "main": main, "photos": photos, "goals": goals(ceilings, main)}


def goals(ceilings: list[dict[str, Any]], main: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 14's three goals, judged on every row (or pair of ceilings) they apply to."""
    judged: list[dict[str, Any]] = []
    for row in main:
        what = f"{row['model']} {row['precision']}, {row['body']}, c={row['concurrency']}"
        share, over = row["vs_ceiling"], row["p50_over_batch1_ms"]
        if row["concurrency"] == 16 and share is not None:
            judged.append(
                _goal(f"{what}: >= {C16_SHARE:g} x ceiling", share >= C16_SHARE, f"{share:.2f} x")
            )
        if over is not None:
            judged.append(
                _goal(
                    f"{what}: p50 within {C1_OVER_BATCH1_MS:g} ms of the model's batch-1 p50",
                    over <= C1_OVER_BATCH1_MS,
                    f"{over:+.1f} ms",
                )
            )
    by_copy = {(entry["model"], entry["precision"]): entry for entry in ceilings}
    for (model, precision), entry in by_copy.items():
        float_entry = by_copy.get((model, "float32"))
        if precision != "int8" or float_entry is None or not float_entry["reference"]:
            continue
        speedup = entry["reference"] / float_entry["reference"]
        judged.append(
            _goal(
                f"{model}: int8 ceiling >= {INT8_SPEEDUP:g} x float32",
                speedup >= INT8_SPEEDUP,
                f"{speedup:.2f} x",
            )
        )
    return judged


def _goal(goal: str, met: bool, shown: str) -> dict[str, Any]:
    return {"goal": goal, "met": met, "shown": shown}
