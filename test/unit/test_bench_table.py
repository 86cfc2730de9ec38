"""bench.table's rows, ratios, goals and markdown, from fabricated measurements (no processes)."""

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.photos import BENCH_PHOTOS, make_photo_uploads, pick_photos
from bench.table_report import render
from bench.table_rows import derive
from bench.table_runs import PHOTO_RUNS, UPLOAD_RUNS, copies_of

SETUP_WIDE = {"runtime": "tflite", "threads": 2, "copies": 1, "callers": 1}
SETUP_NARROW = {"runtime": "tflite", "threads": 1, "copies": 2, "callers": 2}
PHOTOS = ("coffee.png", "rocket.jpg")


def ceiling_row(setup: dict[str, Any], per_second: float, p50_ms: float) -> dict[str, Any]:
    """A row as bench/ceiling.py writes it, cut down to what the table reads."""
    label = f"tflite {setup['threads']} thr x {setup['copies']}, {setup['callers']} caller(s)"
    return {"setup": setup, "label": label, "batch": 1, "per_second": per_second, "p50_ms": p50_ms}


def gateway_row(
    upload: str, encoding: str, concurrency: int, per_second: float, p50_ms: float
) -> dict[str, Any]:
    """A row as bench/pipeline.py's `measure_row` writes it, tagged by bench/table_runs.py."""
    return {
        "upload": upload,
        "image_bytes": 40_000,
        "encoding": encoding,
        "concurrency": concurrency,
        "per_second": per_second,
        "p50_ms": p50_ms,
        "p99_ms": p50_ms * 2,
        "failures": 0,
        "other_load_cores": 0.1,
        "cores": {"gateway": per_second * 0.01},  # 10 CPU ms per request
    }


def measured_copy(
    model: str, precision: str, best: float, after: float | None, batch1_p50_ms: float
) -> dict[str, Any]:
    """One copy as bench/table_runs.py measures it: ceilings around every gateway row."""
    before = {
        "rows": [
            ceiling_row(SETUP_WIDE, best * 0.7, batch1_p50_ms),
            ceiling_row(SETUP_NARROW, best, batch1_p50_ms * 1.6),
        ]
    }
    copy: dict[str, Any] = {
        "model": model,
        "version": 1,
        "weights": "trained" if model == "efficientnet_lite0" else "untrained",
        "precision": precision,
        "served_precision": precision,
        "ceiling_before": before,
        "rows": [
            gateway_row(
                "480x360", encoding, c, best * 0.85, batch1_p50_ms + (1.5 if c == 1 else 90)
            )
            for encoding, c in UPLOAD_RUNS
        ],
        "photo_rows": [
            gateway_row(photo, encoding, c, best * 0.8, 100.0)
            for photo in PHOTOS
            for encoding, c in PHOTO_RUNS
        ],
    }
    if after is not None:
        copy["ceiling_after"] = {"rows": [ceiling_row(SETUP_NARROW, after, batch1_p50_ms * 1.6)]}
    return copy


def run_results(copies: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    return {
        "started": "2026-12-01T00:00:00",
        "command": "python -m bench.table --model models/mobilenet",
        "machine": {
            "cpu": "test CPU",
            "cores": 2,
            "physical_cores": 2,
            "ram_gib": 8.0,
            "load_average": [0.1, 0.1, 0.1],
            "python": "3.11",
            "versions": {"LiteRT": "2.3.0"},
        },
        "plan": {
            "models": ["mobilenet version 1"],
            "duration_s": 4.0,
            "warmup_s": 1.0,
            "retries": 1,
        },
        "notes": notes or [],
        "copies": copies,
    }


def markdown_rows(report: str, heading: str) -> list[list[str]]:
    """The body rows of the table under `heading`, as lists of cells."""
    section = report.split(heading, 1)[1].split("\n\n")[1]
    lines = section.splitlines()[2:]  # after the header and its rule
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def test_ratios_divide_by_the_mean_of_the_ceiling_before_and_after() -> None:
    copy = measured_copy("mobilenet", "float32", best=200.0, after=180.0, batch1_p50_ms=5.0)
    derived = derive([copy])
    (ceiling,) = derived["ceilings"]
    assert ceiling["reference"] == pytest.approx(190.0)
    assert ceiling["drift"] == pytest.approx(-0.1)
    assert ceiling["best_setup"].startswith("tflite 1 thr x 2")
    for row in derived["main"]:
        assert row["vs_ceiling"] == pytest.approx(170.0 / 190.0)
        assert row["gateway_cpu_ms_per_request"] == pytest.approx(10.0)


def test_without_a_second_ceiling_the_first_stands_alone() -> None:
    copy = measured_copy("mobilenet", "float32", best=200.0, after=None, batch1_p50_ms=5.0)
    (ceiling,) = derive([copy])["ceilings"]
    assert ceiling["after"] is None
    assert ceiling["drift"] is None
    assert ceiling["reference"] == 200.0


def test_c1_latency_is_compared_with_the_lone_two_thread_call() -> None:
    # The best setup (two callers) has a p50 of 8 ms; the lone call's, 5 ms, is the reference.
    copy = measured_copy("mobilenet", "float32", best=200.0, after=200.0, batch1_p50_ms=5.0)
    derived = derive([copy])
    assert derived["ceilings"][0]["batch1_p50_ms"] == 5.0
    overs = {
        (row["body"], row["concurrency"]): row["p50_over_batch1_ms"] for row in derived["main"]
    }
    assert overs == {
        ("multipart", 1): pytest.approx(1.5),
        ("raw", 1): pytest.approx(1.5),
        ("multipart", 16): None,
        ("raw", 16): None,
    }


def test_goals_judge_c16_share_c1_latency_and_the_int8_speedup() -> None:
    copies = [
        measured_copy("efficientnet_lite0", "float32", best=100.0, after=100.0, batch1_p50_ms=9.0),
        measured_copy("efficientnet_lite0", "int8", best=190.0, after=190.0, batch1_p50_ms=5.0),
    ]
    copies[1]["rows"][2]["per_second"] = 150.0  # int8 multipart c=16: 0.79 of 190
    judged = {goal["goal"]: (goal["met"], goal["shown"]) for goal in derive(copies)["goals"]}
    assert judged["efficientnet_lite0 float32, multipart, c=16: >= 0.85 x ceiling"] == (
        True,
        "0.85 x",
    )
    assert judged["efficientnet_lite0 int8, multipart, c=16: >= 0.85 x ceiling"] == (
        False,
        "0.79 x",
    )
    c1 = "efficientnet_lite0 int8, raw, c=1: p50 within 2 ms of the model's batch-1 p50"
    assert judged[c1] == (True, "+1.5 ms")
    assert judged["efficientnet_lite0: int8 ceiling >= 2 x float32"] == (False, "1.90 x")
    assert len(judged) == 2 * 4 + 1  # each copy's four rows, one speedup per model


def test_the_report_has_a_row_per_model_precision_body_and_concurrency() -> None:
    copies = [
        measured_copy(model, precision, best=200.0, after=190.0, batch1_p50_ms=5.0)
        for model in ("mobilenet", "efficientnet_lite0")
        for precision in ("float32", "int8")
    ]
    report = render(run_results(copies), derive(copies))
    main = markdown_rows(report, "### Gateway against the model, 480x360 JPEG")
    keys = [(cells[0], cells[2], cells[3], cells[4]) for cells in main]
    assert keys == [
        (model, precision, body, str(c))
        for model in ("mobilenet", "efficientnet_lite0")
        for precision in ("float32", "int8")
        for body, c in UPLOAD_RUNS
    ]
    first = main[0]
    assert first[1] == "untrained"
    assert (first[5], first[6], first[7], first[8], first[9], first[10]) == (
        "170.0",
        "0.87",
        "6.5",
        "13.0",
        "+1.5",
        "10.0",
    )
    assert [row[9] for row in main[:4]] == ["+1.5", "+1.5", "", ""]  # only c=1 has the gap
    ceilings = markdown_rows(report, "### Ceilings:")
    assert [(cells[0], cells[1]) for cells in ceilings] == [key[:2] for key in keys[::4]]
    assert ceilings[0][3:] == ["200.0", "190.0", "-5.0%", "195.0", "5.0"]
    photos = markdown_rows(report, "### Real photographs")
    assert len(photos) == 4 * len(PHOTOS) * len(PHOTO_RUNS)
    assert {(cells[2], cells[4], cells[5]) for cells in photos} == {
        (photo, body, str(c)) for photo in PHOTOS for body, c in PHOTO_RUNS
    }
    assert "### Notes" not in report


def test_failures_and_missing_measurements_become_notes() -> None:
    good = measured_copy("mobilenet", "float32", best=200.0, after=200.0, batch1_p50_ms=5.0)
    good["rows"][0]["failures"] = 3
    wrong = measured_copy("mobilenet", "int8", best=200.0, after=200.0, batch1_p50_ms=5.0)
    wrong["served_precision"] = "float32"
    broken: dict[str, Any] = {
        "model": "efficientnet_lite0",
        "version": 1,
        "weights": "trained",
        "precision": "float32",
        "ceiling_before": {"runtime": "tflite", "error": "exit status 1: no model.tflite"},
        "error": "the embedded gateway did not start: exited early",
        "rows": [],
        "photo_rows": [],
    }
    copies = [good, wrong, broken]
    skipped = "efficientnet_lite0 version 1: int8 skipped, the version has no model_int8.tflite"
    report = render(run_results(copies, [skipped]), derive(copies))
    notes = report.split("### Notes\n\n", 1)[1].splitlines()
    # The run's own notes, then each copy's in order, then the rows that had failures.
    assert notes[:2] == [
        f"- {skipped}",
        "- mobilenet int8: the gateway's answers said precision 'float32'",
    ]
    broken_name = "- efficientnet_lite0 float32"
    assert notes[2] == f"{broken_name}: ceiling before not measured, exit status 1: no model.tflite"
    assert notes[3] == f"{broken_name}: the embedded gateway did not start: exited early"
    assert notes[4:] == ["- mobilenet float32, 480x360 multipart, c=1: 3 answers were not 200"]


def test_a_version_without_the_int8_file_gets_float_only_and_a_note(tmp_path: Path) -> None:
    model_dir = tmp_path / "mobilenet"
    (model_dir / "3" / "assets.extra").mkdir(parents=True)
    copies, notes = copies_of(model_dir, 3)
    assert [copy.precision for copy in copies] == ["float32"]
    assert len(notes) == 1
    assert "int8 skipped" in notes[0]
    assert "model_int8.tflite" in notes[0]
    (model_dir / "3" / "assets.extra" / "model_int8.tflite").write_bytes(b"tflite")
    copies, notes = copies_of(model_dir, 3)
    assert [(copy.precision, copy.version_dir) for copy in copies] == [
        ("float32", model_dir / "3"),
        ("int8", model_dir / "3"),
    ]
    assert notes == []


def test_photographs_are_480x360_jpegs_of_the_chosen_library_pictures() -> None:
    photos, notes = pick_photos()
    assert [photo.name for photo in photos] == list(BENCH_PHOTOS)
    assert notes == []
    uploads = make_photo_uploads(photos[:2])
    assert [upload.name for upload in uploads] == list(BENCH_PHOTOS[:2])
    for upload in uploads:
        with Image.open(io.BytesIO(upload.data)) as picture:
            assert (picture.format, picture.size, picture.mode) == ("JPEG", (480, 360), "RGB")
    assert uploads[0].data != uploads[1].data


def test_photographs_smaller_than_480x360_or_unknown_are_left_out_with_a_note() -> None:
    # chelsea.png is 451x300: it would have to be upscaled.
    photos, notes = pick_photos(("chelsea.png", "dahlia.jpg", "no_such.jpg"))
    assert [photo.name for photo in photos] == ["dahlia.jpg"]
    assert notes == [
        "photograph chelsea.png: smaller than 480x360, skipped",
        "photograph no_such.jpg: not in the library, skipped",
    ]
