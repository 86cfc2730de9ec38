"""What the way an image is sent costs: raw body against multipart, a batch against singles.

Issue 13 asks what skipping multipart parsing saves per request, and what one
POST /predict/batch of 8 files gains over 8 single requests. Both are read off
rows measured in the same run on the same gateway process and the same
480x360 upload: the gateway's CPU per image (cores busy x 1000 / images per
second) and the throughput.
"""

from typing import Any

IMAGE = "480x360"


def compare_encodings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each gateway with encoding rows: raw vs multipart (c=1, c=16), batch vs c=16."""
    comparisons = []
    for backend in dict.fromkeys(row["backend"] for row in rows):
        mine = [row for row in rows if row["backend"] == backend]
        form = {row["concurrency"]: row for row in mine if row["image"] == IMAGE}
        for row in mine:
            encoding = row.get("encoding", "multipart")
            if encoding == "raw":
                baseline = form.get(row["concurrency"])
            elif encoding == "batch":
                baseline = form.get(16)  # as many images in flight as 2 batches of 8
            else:
                continue
            if baseline is None:
                continue
            comparisons.append(_compare(backend, row, baseline))
    return comparisons


def _compare(backend: str, row: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    cpu, cpu_before = gateway_cpu_ms_per_image(row), gateway_cpu_ms_per_image(baseline)
    loop, loop_before = _loop_cpu_ms_per_image(row), _loop_cpu_ms_per_image(baseline)
    return {
        "backend": backend,
        "what": f"{row['image']}, c={row['concurrency']}",
        "against": f"{baseline['image']} multipart, c={baseline['concurrency']}",
        "per_second": row["per_second"],
        "baseline_per_second": baseline["per_second"],
        "throughput_ratio": (
            row["per_second"] / baseline["per_second"] if baseline["per_second"] else None
        ),
        "gateway_cpu_ms_per_image": cpu,
        "baselinegateway_cpu_ms_per_image": cpu_before,
        "gateway_cpu_saved_ms_per_image": (
            cpu_before - cpu if cpu is not None and cpu_before is not None else None
        ),
        # The event loop's thread: where parsing the form happens, apart from the
        # model's and the decoders' threads, whose CPU dwarfs it in embedded mode.
        "event_loop_cpu_ms_per_image": loop,
        "baseline_event_loop_cpu_ms_per_image": loop_before,
    }


def gateway_cpu_ms_per_image(row: dict[str, Any]) -> float | None:
    return _ms_per_image(row, row.get("cores", {}).get("gateway"))


def _loop_cpu_ms_per_image(row: dict[str, Any]) -> float | None:
    return _ms_per_image(row, row.get("main_thread_cores", {}).get("gateway"))


def _ms_per_image(row: dict[str, Any], cores: float | None) -> float | None:
    if cores is None or not row["per_second"]:
        return None
    return float(cores) * 1000.0 / float(row["per_second"])


def render_encodings(comparisons: list[dict[str, Any]]) -> str:
    """The markdown section; empty when no encoding rows were measured."""
    if not comparisons:
        return ""
    lines = [
        "### Raw bodies and batches (against multipart single requests, same run)",
        "",
        "| gateway | measurement | against | img/s | baseline img/s | throughput ratio "
        "| gateway CPU ms/img | baseline CPU ms/img | CPU saved ms/img "
        "| event loop ms/img | baseline event loop ms/img |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in comparisons:
        cells = [
            entry["backend"],
            entry["what"],
            entry["against"],
            f"{entry['per_second']:.1f}",
            f"{entry['baseline_per_second']:.1f}",
            _number(entry["throughput_ratio"], 2),
            _number(entry["gateway_cpu_ms_per_image"], 2),
            _number(entry["baselinegateway_cpu_ms_per_image"], 2),
            _number(entry["gateway_cpu_saved_ms_per_image"], 2, signed=True),
            _number(entry["event_loop_cpu_ms_per_image"], 2),
            _number(entry["baseline_event_loop_cpu_ms_per_image"], 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
