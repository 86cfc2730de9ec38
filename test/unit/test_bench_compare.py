"""bench/compare.py: two runs' figures side by side; only changes beyond the noise are marked."""

import json
from pathlib import Path
from typing import Any

import pytest

from bench.compare import compare, figures, main, measured_noise


def run(per_second: float, p50_ms: float, drift: float, duration_s: float = 5.0) -> dict[str, Any]:
    """A run as `make bench` writes it, cut down to what the comparison reads."""
    row = {
        "backend": "embedded (tflite)",
        "image": "480x360",
        "concurrency": 16,
        "per_second": per_second,
        "p50_ms": p50_ms,
        "p99_ms": p50_ms * 2,
        "vs_ceiling": per_second / 200.0,
        "cores": {"gateway": 1.5},
    }
    reference = {"per_second": 200.0, "before": 200.0, "after": 200.0 * (1 + drift), "drift": drift}
    ceiling = {"batch1": {"per_second": 180.0, "p50_ms": 5.4}, "reference": reference}
    return {
        "started": "2026-12-01T00:00:00",
        "command": "python -m bench",
        "machine": {"cpu": "test CPU", "cores": 2, "load_average": [0.1, 0.1, 0.1]},
        "plan": {"duration_s": duration_s},
        "pipeline": {"rows": [row]},
        "derived": {"ceilings": {"tflite": ceiling}},
    }


def table(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| figure"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_noise_is_the_largest_drift_measured_within_either_run() -> None:
    assert measured_noise(run(100, 10, 0.02), run(100, 10, -0.08)) == pytest.approx(0.08)
    assert measured_noise(run(100, 10, 0.0), run(100, 10, 0.001)) == 0.03  # the floor


def test_only_changes_beyond_the_noise_are_marked_and_direction_matters() -> None:
    report = compare(run(100.0, 10.0, 0.05), run(120.0, 10.2, 0.05))
    rows = table(report)
    throughput = rows["embedded (tflite), 480x360, c=16, req/s"]
    assert throughput == ["100.0", "120.0", "+20.0%", "better"]
    assert rows["embedded (tflite), 480x360, c=16, p50 ms"][3] == ""  # +2 %: within 5 %
    # The same cores over 20 % more images: less CPU per image, which is better.
    assert rows["embedded (tflite), 480x360, c=16, gateway CPU ms/img"][3] == "better"
    worse = table(compare(run(100.0, 10.0, 0.05), run(100.0, 13.0, 0.05)))
    assert worse["embedded (tflite), 480x360, c=16, p50 ms"][3] == "**worse**"


def test_different_plans_are_warned_about() -> None:
    report = compare(run(100.0, 10.0, 0.05, duration_s=1.0), run(100.0, 10.0, 0.05))
    assert "Warning: the runs differ in `duration_s`: 1.0 against 5.0" in report


def test_every_figure_has_a_stable_name() -> None:
    names = set(figures(run(100.0, 10.0, 0.0)))
    assert "ceiling tflite, best, img/s" in names
    assert "embedded (tflite), 480x360, c=16, ÷ ceiling" in names


def test_the_command_reads_two_files_and_refuses_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run(100.0, 10.0, 0.0)))
    b.write_text(json.dumps(run(50.0, 10.0, 0.0)))
    assert main([str(a), str(b)]) == 0
    assert "-50.0%" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        main([str(a)])
    assert stopped.value.code == 2
    assert main([str(a), str(tmp_path / "missing.json")]) == 2
