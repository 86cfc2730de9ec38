"""`python -m bench.table` end to end on the session's models: every row measured, int8 where it is.

The random mobilenet of `model_root` has no int8 copy (a note says so); the real
EfficientNet-Lite0 of `efficientnet_model_dir` has both. Durations are tiny: this
checks that every row is measured and named right, not the figures.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.table_runs import PHOTO_RUNS, UPLOAD_RUNS
from processes import ROOT, child_env

TIMEOUT_S = 240
PHOTOS = ("coffee.png", "rocket.jpg")
COPIES = (
    ("mobilenet", "untrained", "float32"),
    ("efficientnet_lite0", "trained", "float32"),
    ("efficientnet_lite0", "trained", "int8"),
)


@pytest.fixture(scope="module")
def table_run(
    model_root: Path, efficientnet_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any]]:
    """The table's standard output and its JSON results."""
    results = tmp_path_factory.mktemp("bench-table-results")
    command = [sys.executable, "-m", "bench.table", "--duration", "0.2", "--warmup", "0.1"]
    command += ["--model", str(model_root / "mobilenet"), "--model", str(efficientnet_model_dir)]
    command += ["--retries", "0", "--photos", ",".join(PHOTOS), "--results-dir", str(results)]
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = results.glob("*-table.json")
    return done.stdout, json.loads(written.read_text())


def rows_under(report: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table under `heading`."""
    section = report.split(heading, 1)[1].split("\n\n")[1]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()[2:]
    ]


def number(cell: str) -> float:
    match = re.match(r"[-+]?\d[\d,]*(\.\d+)?", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group().replace(",", ""))


@pytest.mark.slow
def test_a_row_per_model_precision_body_and_concurrency(
    table_run: tuple[str, dict[str, Any]],
) -> None:
    rows = rows_under(table_run[0], "### Gateway against the model, 480x360 JPEG")
    assert [tuple(cells[:5]) for cells in rows] == [
        (model, weights, precision, body, str(c))
        for model, weights, precision in COPIES
        for body, c in UPLOAD_RUNS
    ]
    for cells in rows:
        assert number(cells[5]) > 0, cells  # req/s
        assert number(cells[6]) > 0, cells  # ÷ ceiling
        assert 0 < number(cells[7]) <= number(cells[8]), cells  # p50 <= p99
        if cells[4] == "1":
            number(cells[9])  # the gap to the model's batch-1 p50 (may be negative)
        assert number(cells[10]) > 0, cells  # gateway CPU ms per request


@pytest.mark.slow
def test_a_row_per_photograph_and_a_ceiling_per_copy(
    table_run: tuple[str, dict[str, Any]],
) -> None:
    report = table_run[0]
    photos = rows_under(report, "### Real photographs")
    assert [(cells[0], cells[1], cells[2], cells[4], cells[5]) for cells in photos] == [
        (model, precision, photo, body, str(c))
        for model, _, precision in COPIES
        for photo in PHOTOS
        for body, c in PHOTO_RUNS
    ]
    assert all(number(cells[6]) > 0 and number(cells[7]) > 0 for cells in photos)
    ceilings = rows_under(report, "### Ceilings:")
    assert [(cells[0], cells[1]) for cells in ceilings] == [
        (model, precision) for model, _, precision in COPIES
    ]
    for cells in ceilings:
        assert number(cells[3]) > 0, cells  # before the gateway rows
        assert number(cells[4]) > 0, cells  # and after them
    assert "- mobilenet version 1: int8 skipped, the version has no" in report
    assert "### Goals (issue 14" in report
    assert "efficientnet_lite0: int8 ceiling >= 2 x float32" in report


@pytest.mark.slow
def test_each_gateway_served_the_copy_its_rows_name(table_run: tuple[str, dict[str, Any]]) -> None:
    results = table_run[1]
    assert results["machine"]["cores"] > 0
    copies = results["copies"]
    assert [(copy["model"], copy["precision"]) for copy in copies] == [
        (model, precision) for model, _, precision in COPIES
    ]
    for copy in copies:
        assert copy["served_precision"] == copy["precision"]
        assert copy["ceiling_before"]["precision"] == copy["precision"]
        for row in [*copy["rows"], *copy["photo_rows"]]:
            assert row["statuses"] == {"200": row["calls"]}, row
            assert row["answer_checked"], row
