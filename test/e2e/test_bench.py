"""`python -m bench --quick` end to end on the session's exported model: every row, all numbers."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from processes import ROOT, child_env

BENCH_TIMEOUT_S = 240
CEILING_ROWS = (
    "ceiling tensorflow, batch 1 (",
    "ceiling tensorflow, best: batch ",
    "ceiling tensorflow, the same again after the pipeline",
    "ceiling tflite, batch 1 (",
    "ceiling tflite, best: batch ",
    "ceiling tflite, the same again after the pipeline",
)
PIPELINE_ROWS = tuple(
    f"{backend}, {image}, c={concurrency}"
    for backend in ("embedded (tflite)", "tfserving grpc", "tfserving rest")
    for image in ("480x360", "12 MP")
    for concurrency in (1, 16)
)
# Issue 13: the same 480x360 image as a raw body, and POST /predict/batch with 8 files.
ENCODING_ROWS = tuple(
    f"{backend}, 480x360 {encoding}"
    for backend in ("embedded (tflite)", "tfserving grpc")
    for encoding in ("raw body, c=1", "raw body, c=16", "batch of 8, c=2")
)
NAIVE_ROW = "naive, 480x360, c=16"


@pytest.fixture(scope="module")
def bench_run(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The quick benchmark's standard output and its results folder."""
    results = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--model-dir",
            str(model_root),
            "--model-name",
            "mobilenet",
            "--results-dir",
            str(results),
        ],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, results


def main_table(report: str) -> dict[str, list[str]]:
    """Rows of the throughput table, keyed by their first cell."""
    section = report.split("### Throughput and latency", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in section.splitlines()[2:]:  # after the header and its rule
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].removesuffix("†").strip()] = cells[1:]  # † marks a disturbed run
    return rows


def leading_number(cell: str) -> float:
    """The number a cell starts with ("12.5 req/s" -> 12.5)."""
    match = re.match(r"[-+]?\d+(\.\d+)?", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group())


@pytest.mark.slow
def test_every_row_has_positive_throughput_and_latency(bench_run: tuple[str, Path]) -> None:
    rows = main_table(bench_run[0])
    expected = (*CEILING_ROWS, *PIPELINE_ROWS, *ENCODING_ROWS, NAIVE_ROW)
    for prefix in expected:
        # Ceiling labels end with the setting that won; pipeline labels are exact.
        found = [
            cells
            for label, cells in rows.items()
            if label == prefix or (prefix.startswith("ceiling") and label.startswith(prefix))
        ]
        assert len(found) == 1, f"{prefix!r} is not one row of:\n{bench_run[0]}"
        throughput, p50, p99, count, non_200 = found[0][:5]
        assert leading_number(throughput) > 0, prefix
        assert 0 < leading_number(p50) <= leading_number(p99), prefix
        assert int(count) > 0, prefix
        assert int(non_200) == 0, f"{prefix}: {non_200} answers were not 200"
    assert len(rows) == len(expected)


@pytest.mark.slow
def test_pipeline_rows_carry_ratios_to_their_ceiling(bench_run: tuple[str, Path]) -> None:
    rows = main_table(bench_run[0])
    for prefix in (*PIPELINE_ROWS, *ENCODING_ROWS):
        cells = rows[prefix]
        assert leading_number(cells[5]) > 0, f"{prefix}: no ratio to the ceiling"
        if prefix.endswith("c=1"):
            leading_number(cells[6])  # p50 minus the ceiling's batch-1 p50 (may be negative)


@pytest.mark.slow
def test_report_covers_preprocessing_naive_and_targets(bench_run: tuple[str, Path]) -> None:
    report = bench_run[0]
    twelve_mp = r"\| 12 MP \| [\d,]+ \| [\d.]+ \| [\d.]+ \| 0\.\d+ \| [\d.]+ \| 0\.\d+ \|"
    assert re.search(twelve_mp, report), report
    assert "JSON list of numbers (integers" in report
    assert re.search(r"embedded pipeline ÷ naive at c=16, 480x360: [\d.]+x", report)
    assert re.search(r"^- (met|NOT met): gateway RSS, tfserving grpc", report, re.MULTILINE)
    assert re.search(r"^- machine: .+, \d+ cores", report, re.MULTILINE)


@pytest.mark.slow
def test_results_are_written_as_json(bench_run: tuple[str, Path]) -> None:
    (written,) = bench_run[1].glob("*.json")
    results = json.loads(written.read_text())
    rows = results["pipeline"]["rows"]
    assert len(rows) == len(PIPELINE_ROWS) + len(ENCODING_ROWS) + 1
    assert all(row["statuses"] == {"200": row["calls"]} for row in rows)
    assert all(row["answer_checked"] for row in rows)
    assert results["derived"]["ceilings"].keys() == {"tensorflow", "tflite"}
    for ceiling in results["derived"]["ceilings"].values():
        reference = ceiling["reference"]
        # Ratios divide by the mean of the best setting before and after the pipeline.
        assert reference["after"] > 0
        assert reference["per_second"] == pytest.approx(
            (reference["before"] + reference["after"]) / 2
        )


@pytest.mark.slow
def test_raw_bodies_and_batches_are_compared_with_multipart(bench_run: tuple[str, Path]) -> None:
    report, folder = bench_run
    (written,) = folder.glob("*.json")
    results = json.loads(written.read_text())
    batches = [row for row in results["pipeline"]["rows"] if row.get("encoding") == "batch"]
    assert batches
    assert all(row["items"] == 8 * row["calls"] for row in batches)
    comparisons = results["derived"]["encodings"]
    assert [(entry["backend"], entry["what"]) for entry in comparisons] == [
        tuple(row.split(", ", 1)) for row in ENCODING_ROWS
    ]
    for entry in comparisons:
        assert entry["throughput_ratio"] > 0
        assert entry["gateway_cpu_ms_per_image"] > 0
        assert entry["event_loop_cpu_ms_per_image"] > 0
    section = report.split("### Raw bodies and batches", 1)[1].split("\n\n")[1]
    assert len(section.splitlines()) == 2 + len(ENCODING_ROWS)
