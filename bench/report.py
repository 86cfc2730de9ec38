"""The printed report (markdown, pasteable into the README) and the JSON results file."""

import json
import math
from pathlib import Path
from typing import Any

from bench.encodings import render_encodings
from bench.ratios import ceiling_summary
from bench.watch import DISTURBED_CORES

_DISTURBED = "†"


def render(results: dict[str, Any], derived: dict[str, Any]) -> str:
    """The whole report as markdown."""
    parts = [_header(results), _main_table(results, derived)]
    parts += [_ceiling_table(results), _cost_table(results), _preprocess_table(results)]
    parts += [render_encodings(derived.get("encodings", []))]
    parts += [_naive_section(results, derived), _targets(derived), _notes(results)]
    return "\n\n".join(part for part in parts if part) + "\n"


def write_json(results: dict[str, Any], directory: Path, stamp: str) -> Path:
    """Write `results` to `directory`/<stamp>.json and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def _header(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    plan = results["plan"]
    return "\n".join(
        [
            f"## Benchmark, {results['started']}",
            "",
            f"- machine: {machine['cpu']}, {machine['cores']} cores "
            f"({machine['physical_cores']} physical), {machine['ram_gib']} GiB RAM; "
            f"load average at start {' / '.join(map(str, machine['load_average']))}",
            f"- software: Python {machine['python']}, {versions}",
            f"- command: `{results['command']}`",
            f"- model: {plan['model']}, input {plan['input']}",
            f"- each measurement: {plan['duration_s']:g} s after {plan['warmup_s']:g} s warm-up, "
            f"taken again (up to {plan['retries']} times) while other processes kept more than "
            f"{DISTURBED_CORES:g} cores busy; "
            f"gateway environment: {plan['gateway_env'] or 'defaults'} (+ LOG_LEVEL=warning)",
        ]
    )


def _main_table(results: dict[str, Any], derived: dict[str, Any]) -> str:
    lines = [
        "### Throughput and latency",
        "",
        "| measurement | throughput | p50 ms | p99 ms | count | non-200 | ÷ ceiling "
        "| c=1 p50 minus ceiling batch-1 p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime, result in results.get("ceiling", {}).items():
        summary = ceiling_summary(result)
        if summary is None:
            continue
        one, best = summary["batch1"], summary["best"]
        lines.append(_row(f"ceiling {runtime}, batch 1 ({one['label']})", one, "img/s"))
        lines.append(
            _row(f"ceiling {runtime}, best: batch {best['batch']} ({best['label']})", best, "img/s")
        )
        again = results.get("ceiling_after", {}).get(runtime, {}).get("rows") or []
        if again:
            label = f"ceiling {runtime}, the same again after the pipeline"
            lines.append(_row(label, again[0], "img/s"))
    for row in results.get("pipeline", {}).get("rows", []):
        label = f"{row['backend']}, {row['image']}, c={row['concurrency']}"
        lines.append(_row(label, row, "img/s" if row.get("images_per_request", 1) > 1 else "req/s"))
    references = [
        f"{runtime} {reference['per_second']:.1f} img/s"
        + (
            f" (drift {reference['drift']:+.1%} between the two)"
            if reference["drift"] is not None
            else ""
        )
        for runtime, ceiling in derived.get("ceilings", {}).items()
        if (reference := ceiling.get("reference"))
    ]
    if references:
        lines += [
            "",
            "÷ ceiling: each row over its runtime's best setting, averaged over the sweep and "
            "the measurement after the pipeline: " + "; ".join(references) + ".",
        ]
    if any(_disturbed(line) for line in lines):
        lines += [
            "",
            f"{_DISTURBED} other processes kept more than {DISTURBED_CORES:g} cores busy during "
            "this measurement: rerun before trusting it.",
        ]
    return "\n".join(lines)


def _disturbed(line: str) -> bool:
    return line.startswith("| ") and _DISTURBED in line


def _row(label: str, row: dict[str, Any], unit: str) -> str:
    ratio = row.get("vs_ceiling")
    over = row.get("p50_over_batch1_ms")
    if row.get("other_load_cores", 0.0) > DISTURBED_CORES:
        label += f" {_DISTURBED}"
    cells = [
        label,
        f"{row['per_second']:.1f} {unit}",
        _ms(row["p50_ms"]),
        _ms(row["p99_ms"]),
        str(row["calls"]),
        str(row["failures"]),
        f"{ratio:.2f}" if ratio is not None else "",
        f"{over:+.1f} ms" if over is not None else "",
    ]
    return "| " + " | ".join(cells) + " |"


def _ceiling_table(results: dict[str, Any]) -> str:
    rows = [row for result in results.get("ceiling", {}).values() for row in result.get("rows", [])]
    if not rows:
        return ""
    batches = sorted({row["batch"] for row in rows})
    lines = [
        "### Ceiling: the model alone, in-process "
        "(img/s; p50 / p99 ms per call; CPU ms per image, spinning threads included)",
        "",
        "| runtime setting | " + " | ".join(f"batch {batch}" for batch in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]
    for label in dict.fromkeys(row["label"] for row in rows):
        by_batch = {row["batch"]: row for row in rows if row["label"] == label}
        cells = [_ceiling_cell(by_batch[b]) if b in by_batch else "" for b in batches]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    errors = [
        f"- {runtime}: not measured, {result['error']}"
        for runtime, result in results.get("ceiling", {}).items()
        if result.get("error")
    ]
    return "\n".join(lines + errors)


def _ceiling_cell(row: dict[str, Any]) -> str:
    cell = (
        f"{row['per_second']:.1f} ({_ms(row['p50_ms'])} / {_ms(row['p99_ms'])}; "
        f"{row['cpu_ms_per_image']:.1f} CPU ms)"
    )
    return cell + f" {_DISTURBED}" if row["other_load_cores"] > DISTURBED_CORES else cell


def _cost_table(results: dict[str, Any]) -> str:
    rows = results.get("pipeline", {}).get("rows", [])
    if not rows:
        return ""
    lines = [
        "### Where the time goes (CPU in cores busy on average; stage means from the gateway's "
        "own metrics)",
        "",
        "| run | gateway cores | double cores | gateway CPU ms/req | of which event loop "
        "| double CPU ms/req "
        "| load generator cores | other load cores | decode ms | inference ms | request ms "
        "| gateway peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cores, stages = row["cores"], row["stages_ms"]
        per_request = {
            name: used * 1000.0 / row["per_second"] if row["per_second"] else None
            for name, used in cores.items()
        }
        loop = row["main_thread_cores"].get("gateway")
        loop_per_request = loop * 1000.0 / row["per_second"] if loop and row["per_second"] else None
        cells = [
            f"{row['backend']}, {row['image']}, c={row['concurrency']}",
            _num(cores.get("gateway")),
            _num(cores.get("double")),
            _num(per_request.get("gateway"), 1),
            _num(loop_per_request, 1),
            _num(per_request.get("double"), 1),
            _num(row["load_generator_cores"], 3),
            _num(row["other_load_cores"]),
            _num(stages.get("decode"), 1),
            _num(stages.get("inference"), 1),
            _num(stages.get("request"), 1),
            _num(row["peak_rss_mb"].get("gateway"), 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _preprocess_table(results: dict[str, Any]) -> str:
    entries = results.get("preprocess", [])
    if not entries:
        return ""
    lines = [
        "### Preprocessing: decode + resize to 224x224, one thread",
        "",
        "| image | bytes | gateway `prepare_image` p50 ms | full decode + LANCZOS p50 ms "
        "| ratio | reduced-scale decode alone p50 ms | its ratio (the floor) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in entries:
        lines.append(
            f"| {entry['image']} | {entry['image_bytes']:,} | {_ms(entry['gateway']['p50_ms'])} | "
            f"{_ms(entry['naive']['p50_ms'])} | {entry['ratio']:.3f} | "
            f"{_ms(entry['decode_only']['p50_ms'])} | {entry['floor_ratio']:.3f} |"
        )
    return "\n".join(lines)


def _naive_section(results: dict[str, Any], derived: dict[str, Any]) -> str:
    rows = [row for row in results.get("pipeline", {}).get("rows", []) if row["backend"] == "naive"]
    if not rows:
        return ""
    row = rows[0]
    factor = derived.get("naive_factor")
    lines = [
        "### Naive baseline (bench/naive_gateway.py)",
        "",
        "A blocking `urllib.request` call inside an `async def` handler; the upload decoded at "
        "full resolution and LANCZOS-resized to 224x224; the pixels sent to the double's REST "
        "predict as a JSON list of numbers (integers: the signature's input is uint8); top-5 "
        "ranked in Python.",
        "",
        f"- naive, {row['image']}, c={row['concurrency']}: {row['per_second']:.1f} req/s, "
        f"p50 {_ms(row['p50_ms'])} ms, p99 {_ms(row['p99_ms'])} ms, {row['failures']} non-200",
    ]
    if factor is not None:
        lines.append(f"- embedded pipeline ÷ naive at c=16, 480x360: {factor:.1f}x")
    return "\n".join(lines)


def _targets(derived: dict[str, Any]) -> str:
    targets = derived.get("targets", [])
    if not targets:
        return ""
    lines = [
        "### Targets (issue 3; information, not asserts)",
        "",
        "The throughput and latency goals are judged on the 480x360 upload over the default "
        "transport (gRPC), as the issue states them; the 12 MP upload has its own goal, on "
        "preprocessing. Every other row is in the tables above.",
        "",
    ]
    for target in targets:
        mark = "met" if target["met"] else "NOT met"
        lines.append(f"- {mark}: {target['goal']} — {target['shown']}")
    return "\n".join(lines)


def _notes(results: dict[str, Any]) -> str:
    notes = list(results.get("notes", []))
    for row in results.get("pipeline", {}).get("rows", []):
        if row["failures"]:
            notes.append(
                f"{row['backend']}, {row['image']}, c={row['concurrency']}: statuses "
                f"{row['statuses']} (0 = connection error or timeout)"
            )
        if not row["answer_checked"] and row["items"]:
            notes.append(f"{row['backend']}, {row['image']}: a 200 body lacked 5 predictions")
    if not notes:
        return ""
    return "### Notes\n\n" + "\n".join(f"- {note}" for note in notes)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"
