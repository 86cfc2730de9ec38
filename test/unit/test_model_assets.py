"""A version's labels, provenance and golden answer: reading them never raises."""

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.model_assets import (
    EXPORT_INFO_FILE,
    GOLDEN_FILE,
    LABELS_FILE,
    MAX_FILE_BYTES,
    AssetCache,
    FileProblem,
    ModelAssets,
    read_assets,
)
from test_golden import PHOTO, golden_document

LABELS = ["background", "tench", "goldfish"]
INFO = {
    "model_name": "mobilenet",
    "version": 1,
    "source": "random",
    "source_detail": "seed=42",
    "trained": False,
    "exported_at": "2026-11-30T12:49:48Z",
    "tensorflow_version": "2.20.0",
    "labels_provenance": "line 0 background, then ImageNet",
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write_version(
    root: Path, version: int = 1, labels: bytes | None = None, info: bytes | None = None
) -> Path:
    """A version folder's assets.extra, well-formed unless `labels` or `info` say otherwise."""
    folder = root / str(version)
    (folder / "assets.extra").mkdir(parents=True, exist_ok=True)
    (folder / LABELS_FILE).write_bytes(
        ("\n".join(LABELS) + "\n").encode() if labels is None else labels
    )
    (folder / EXPORT_INFO_FILE).write_bytes(json.dumps(INFO).encode() if info is None else info)
    return folder


def responses_of(assets: ModelAssets) -> dict[str, Any]:
    """Everything of the assets that routes copy into a response."""
    return {
        "model_files": assets.report(),
        "labels": list(assets.labels),
        "info": vars(assets.export_info),
        "weights": assets.weights,
        "warning": assets.warning,
        "labels_warning": assets.labels_warning,
    }


def test_a_well_formed_version_has_no_problems(tmp_path: Path) -> None:
    assets = read_assets(write_version(tmp_path), num_classes=3)
    assert assets.labels == tuple(LABELS)
    assert assets.problems == ()
    assert assets.report() == {"status": "ok", "problems": []}
    assert assets.weights == "untrained"
    assert assets.export_info.source_detail == "seed=42"
    assert assets.warning is not None
    assert "--source random" in assets.warning
    assert assets.labels_warning is None


def test_windows_line_ends_are_accepted_and_only_newline_splits(tmp_path: Path) -> None:
    labels = "background\r\nvertical\x0btab\r\nline\u2028separator\r\n".encode()
    assets = read_assets(write_version(tmp_path, labels=labels), num_classes=3)
    assert assets.labels == ("background", "vertical\x0btab", "line\u2028separator")
    assert assets.problems == ()


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ("background\ncaf\xe9\ntench\n".encode("latin-1"), "not UTF-8: byte 0xe9 at offset 14"),
        (b"", "empty"),
        (b"x" * (MAX_FILE_BYTES + 1), f"larger than {MAX_FILE_BYTES} bytes"),
    ],
    ids=["latin-1", "empty", "too-large"],
)
def test_a_bad_label_file_is_a_reported_problem(
    tmp_path: Path, labels: bytes, problem: str
) -> None:
    assets = read_assets(write_version(tmp_path, labels=labels), num_classes=3)
    assert assets.problems == (FileProblem(LABELS_FILE, problem),)
    assert assets.labels == ()
    assert assets.report() == {
        "status": "degraded",
        "problems": [{"file": "assets.extra/labels.txt", "problem": problem}],
    }
    assert assets.labels_warning == (
        f"Class names are placeholders (class_N): assets.extra/labels.txt: {problem}."
    )
    assert assets.weights == "untrained"  # export_info.json is still read


def test_a_missing_folder_reports_both_files_without_a_host_path(tmp_path: Path) -> None:
    assets = read_assets(tmp_path / "7", num_classes=1001)
    assert assets.problems == (
        FileProblem(LABELS_FILE, "missing"),
        FileProblem(EXPORT_INFO_FILE, "missing"),
    )
    assert str(tmp_path) not in orjson.dumps(responses_of(assets)).decode()


def test_a_directory_or_a_fifo_under_the_name_is_not_read(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    (folder / LABELS_FILE).unlink()
    os.mkfifo(folder / LABELS_FILE)  # opening it for reading would block without O_NONBLOCK
    (folder / EXPORT_INFO_FILE).unlink()
    (folder / EXPORT_INFO_FILE).mkdir()
    assert read_assets(folder).problems == (
        FileProblem(LABELS_FILE, "not a regular file"),
        FileProblem(EXPORT_INFO_FILE, "not a regular file"),
    )


def test_labels_that_do_not_match_the_classes_are_not_used(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    for num_classes in (2, 4):
        assets = read_assets(folder, num_classes=num_classes)
        assert assets.labels == ()
        (problem,) = assets.problems
        assert problem.file == LABELS_FILE
        assert problem.problem.startswith(f"3 labels for the model's {num_classes} classes")
        assert assets.labels_warning is not None
        assert "3 labels" in assets.labels_warning
    assert read_assets(folder, num_classes=None).labels == tuple(LABELS)  # classes unknown


def deeply_nested(depth: int) -> bytes:
    return b'{"trained": false, "source": "random", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("info", "problem"),
    [
        (deeply_nested(100_000), "not valid JSON: depth limit exceeded"),
        (b'{"trained": false, "source": "random"', "not valid JSON: "),
        (b'{"trained": false, "source": NaN}', "not valid JSON: "),
        (b'{"trained": false, "source": "\\ud800"}', "not valid JSON: "),
        (b'\xff{"trained": false}', "not valid JSON: "),
        (b'["trained", false]', "not a JSON object"),
        (b'{"source": "random"}', "`trained` is missing: weights unknown"),
        (b'{"trained": "false", "source": "random"}', "`trained` is a string, not a boolean"),
        (b'{"trained": 0, "source": "random"}', "`trained` is a number, not a boolean"),
        (b'{"trained": null, "source": "random"}', "`trained` is null, not a boolean"),
        (b'{"trained": false, "source": %d}' % 2**70, "`source` is a number, not a string"),
        (b'{"trained": false, "source": {"a": [1]}}', "`source` is an object, not a string"),
        (
            b'{"trained": false, "source_detail": "%s"}' % (b"x" * 1025),
            "`source_detail` is longer than 1024",
        ),
        (b" " * (MAX_FILE_BYTES + 1), f"larger than {MAX_FILE_BYTES} bytes"),
    ],
    ids=[
        "deep",
        "truncated",
        "nan",
        "lone-surrogate",
        "not-utf8",
        "array",
        "no-trained",
        "trained-string",
        "trained-number",
        "trained-null",
        "huge-int",
        "object-source",
        "long-string",
        "too-large",
    ],
)
def test_a_bad_export_info_is_a_reported_problem(tmp_path: Path, info: bytes, problem: str) -> None:
    assets = read_assets(write_version(tmp_path, info=info), num_classes=3)
    (reported,) = assets.problems
    assert reported.file == EXPORT_INFO_FILE
    assert reported.problem.startswith(problem), reported
    assert assets.labels == tuple(LABELS)  # labels.txt is still read
    assert assets.report()["status"] == "degraded"
    orjson.dumps(responses_of(assets))  # what responses copy always encodes


def test_wrong_typed_fields_are_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    info = {**INFO, "trained": "yes", "source_detail": 2**70, "exported_at": ["today"]}
    assets = read_assets(write_version(tmp_path, info=json.dumps(info).encode()), 3)
    assert assets.weights == "unknown"
    assert assets.warning is None
    assert vars(assets.export_info) == {
        "trained": None,
        "source": "random",
        "source_detail": None,
        "exported_at": None,
        "tensorflow_version": "2.20.0",
        "labels_provenance": INFO["labels_provenance"],
        "fault": None,
    }
    assert [p.problem for p in assets.problems] == [
        "`trained` is a string, not a boolean: weights unknown",
        "`source_detail` is a number, not a string",
        "`exported_at` is an array, not a string",
    ]


def test_a_clean_read_is_kept(tmp_path: Path) -> None:
    cache = AssetCache(clock=Clock())
    write_version(tmp_path)
    first = cache.load(tmp_path, 1, 3)
    (tmp_path / "1" / LABELS_FILE).unlink()  # files are not meant to change after export
    assert cache.load(tmp_path, 1, 3) is first


def test_a_failed_read_is_not_kept_beyond_the_retry_pause(tmp_path: Path) -> None:
    clock = Clock()
    cache = AssetCache(retry_failed_seconds=2.0, clock=clock)
    folder = write_version(tmp_path, labels=b"caf\xe9\n")
    broken = cache.load(tmp_path, 1, 1)
    assert broken.labels == ()
    (folder / LABELS_FILE).write_bytes(b"background\n")
    clock.now += 1.0
    assert cache.load(tmp_path, 1, 1) is broken  # a broken file is read at most every 2 s
    clock.now += 1.5
    fixed = cache.load(tmp_path, 1, 1)
    assert (fixed.labels, fixed.problems) == (("background",), ())


def test_a_transient_read_error_is_not_cached(tmp_path: Path) -> None:
    cache = AssetCache(retry_failed_seconds=0.0, clock=Clock())
    assets = cache.load(tmp_path, 1, 3)  # the folder is not there yet (a mount arriving late)
    assert [p.problem for p in assets.problems] == ["missing", "missing"]
    assert assets.weights == "unknown"
    write_version(tmp_path)
    assets = cache.load(tmp_path, 1, 3)
    assert assets.problems == ()
    assert assets.labels == tuple(LABELS)
    assert assets.weights == "untrained"


def test_a_label_count_fixed_later_is_seen(tmp_path: Path) -> None:
    cache = AssetCache(retry_failed_seconds=0.0, clock=Clock())
    folder = write_version(tmp_path, labels=b"background\ntench\n")
    assert cache.load(tmp_path, 1, 3).labels == ()
    (folder / LABELS_FILE).write_bytes(b"background\ntench\ngoldfish\n")
    assert cache.load(tmp_path, 1, 3).labels == tuple(LABELS)


GOLDEN_PHOTO_FILE = "assets.extra/golden_photo.jpg"


def write_golden(folder: Path, document: bytes | None = None, photo: bytes | None = PHOTO) -> Path:
    """Add a golden answer (well-formed unless told otherwise) and its photo to a version."""
    (folder / GOLDEN_FILE).write_bytes(
        json.dumps(golden_document()).encode() if document is None else document
    )
    if photo is not None:
        (folder / GOLDEN_PHOTO_FILE).write_bytes(photo)
    return folder


def test_a_version_without_a_golden_answer_has_none_and_no_problem(tmp_path: Path) -> None:
    assets = read_assets(write_version(tmp_path), num_classes=3)
    assert assets.golden is None
    assert assets.problems == ()


def test_the_golden_answer_is_read_with_its_photo(tmp_path: Path) -> None:
    assets = read_assets(write_golden(write_version(tmp_path)), num_classes=3)
    assert assets.problems == ()
    assert assets.golden is not None
    assert assets.golden.photo == PHOTO
    assert assets.golden.expected.top1 == 0
    assert assets.golden.expected.compare([0.7, 0.2, 0.1]).agrees


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b'{"format": 1, "photo": ', "not valid JSON: "),
        (
            json.dumps({**golden_document(), "photo": {"file": 7}}).encode(),
            "`photo.file` must be a string",
        ),
        (
            json.dumps({**golden_document(), "tolerance": {"l1": "small"}}).encode(),
            "`tolerance.l1` must be a number",
        ),
        (b" " * (MAX_FILE_BYTES + 1), f"larger than {MAX_FILE_BYTES} bytes"),
        (json.dumps(golden_document([0.5, 0.5])).encode(), "2 probabilities for the model's 3"),
    ],
    ids=["broken-json", "wrong-type", "wrong-tolerance-type", "huge", "other-model"],
)
def test_a_broken_golden_answer_is_a_reported_problem(
    tmp_path: Path, document: bytes, problem: str
) -> None:
    assets = read_assets(write_golden(write_version(tmp_path), document), num_classes=3)
    assert assets.golden is None
    (reported,) = assets.problems
    assert reported.file == GOLDEN_FILE
    assert reported.problem.startswith(problem), reported
    assert assets.labels == tuple(LABELS)  # the other files are still read
    assert assets.weights == "untrained"
    assert assets.report()["status"] == "degraded"
    orjson.dumps(responses_of(assets))


@pytest.mark.parametrize(
    ("photo", "problem"),
    [
        (PHOTO[:-1] + b"!", "a corrupt copy"),
        (None, "missing"),
        (b"x" * (MAX_FILE_BYTES + 1), f"larger than {MAX_FILE_BYTES} bytes"),
    ],
    ids=["corrupt-copy", "missing", "huge"],
)
def test_a_photo_that_is_not_the_recorded_one_is_a_reported_problem(
    tmp_path: Path, photo: bytes | None, problem: str
) -> None:
    assets = read_assets(write_golden(write_version(tmp_path), photo=photo), num_classes=3)
    assert assets.golden is None
    (reported,) = assets.problems
    assert reported.file == GOLDEN_PHOTO_FILE
    assert reported.problem.endswith(problem), reported
    assert str(tmp_path) not in orjson.dumps(responses_of(assets)).decode()


def test_a_golden_photo_repaired_later_is_seen(tmp_path: Path) -> None:
    cache = AssetCache(retry_failed_seconds=0.0, clock=Clock())
    folder = write_golden(write_version(tmp_path), photo=b"half a copy")
    assert cache.load(tmp_path, 1, 3).golden is None
    (folder / GOLDEN_PHOTO_FILE).write_bytes(PHOTO)
    repaired = cache.load(tmp_path, 1, 3)
    assert repaired.problems == ()
    assert repaired.golden is not None
