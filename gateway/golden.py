"""A version's golden answer: a photograph and what the version must answer for it.

Every export writes `assets.extra/golden_answer.json` beside the photograph it
names (modelexport/golden.py). The expected answer is what a correct gateway
answers: the photograph prepared by `gateway.imaging.prepare_image` for the
recorded input size, then the version's own model. Replaying it end to end
(the gateway's decode and resize, then the backend) shows wrong weights,
wrong preprocessing or a corrupt copy.

How to judge a served answer (`ExpectedAnswer.compare` does exactly this):
- the L1 distance between the served and the expected probability vectors
  decides: above `l1_tolerance`, the version answers differently;
- the top-1 is compared only when the expected `top1_margin` (top-1 minus
  runner-up probability) exceeds `l1_tolerance`. Then an L1 within tolerance
  cannot move the top-1 (moving it takes at least the margin), so a changed
  top-1 is a sure difference and the clearer message. With a smaller margin
  (untrained weights answer nearly uniformly: a margin near 0.01) the top-1 can
  change within tolerance, and judging it would flap.

The file is input like an upload: `parse_expected` and `attach_photo` raise
`GoldenFileError` (a ValueError) with a sentence naming the field, and nothing
else; gateway/model_assets.py reads the files, bounded, and reports that
sentence as a file problem.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

GOLDEN_FILENAME = "golden_answer.json"
# The int8 copy's own answer (export_model.py --quantize int8): quantisation moves the
# probabilities by about as much as the tolerance allows (chelsea.jpg on EfficientNet-
# Lite0: L1 0.11), so an int8 copy is held to what it answered at export instead; how
# closely int8 follows float is judged at export, over many photographs (docs/int8.md).
GOLDEN_INT8_FILENAME = "golden_answer_int8.json"
FORMAT = 1
TOP_K = 5
# A recorded value may differ from the same value recomputed from the vector by float noise.
RECORDED_SLACK = 1e-6
PROBABILITY_SUM_TOLERANCE = 1e-3
MAX_INPUT_SIDE = 8192
MAX_NOTE_CHARS = 1024
PHOTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class GoldenFileError(ValueError):
    """golden_answer.json or its photograph cannot be used; the message says why."""


@dataclass(frozen=True)
class GoldenComparison:
    """How one served probability vector compares with the golden answer."""

    agrees: bool
    l1: float
    served_top1: int
    served_top1_probability: float
    reason: str | None  # None when it agrees; else one sentence for a readiness report


@dataclass(frozen=True)
class ExpectedAnswer:
    """golden_answer.json, validated: the photograph it names and the answer it expects."""

    photo_file: str  # a plain file name inside assets.extra/
    photo_sha256: str
    input_size: tuple[int, int]  # (width, height) the photograph is prepared for
    probabilities: tuple[float, ...] = field(repr=False)
    top1: int
    top1_probability: float
    top1_margin: float
    top5: tuple[tuple[int, float], ...]
    l1_tolerance: float
    computed_by: str

    @property
    def top1_decisive(self) -> bool:
        """Whether a served top-1 that differs is a difference by itself (see the module doc)."""
        return self.top1_margin > self.l1_tolerance

    def compare(self, served: Sequence[float] | np.ndarray) -> GoldenComparison:
        """Judge one served probability row against this answer (see the module docstring)."""
        row = np.asarray(served, dtype=np.float64).reshape(-1)
        expected = np.asarray(self.probabilities, dtype=np.float64)
        if row.shape != expected.shape or not np.all(np.isfinite(row)):
            what = f"{row.size} classes" if row.shape != expected.shape else "non-finite values"
            return GoldenComparison(
                False,
                float("inf"),
                -1,
                float("nan"),
                f"the version answers {what}; the golden answer has {expected.size} classes",
            )
        l1 = float(np.abs(row - expected).sum())
        top1 = int(np.argmax(row))
        answered = f"class {top1} ({row[top1]:.4f})"
        golden = f"class {self.top1} ({self.top1_probability:.4f})"
        reason: str | None = None
        if self.top1_decisive and top1 != self.top1:
            reason = f"top-1 is {answered} where the golden answer is {golden} (L1 {l1:.4f})"
        elif l1 > self.l1_tolerance:
            reason = (
                f"probabilities differ from the golden answer by L1 {l1:.4f} "
                f"(tolerance {self.l1_tolerance}); top-1 {answered}, golden {golden}"
            )
        return GoldenComparison(reason is None, l1, top1, float(row[top1]), reason)


@dataclass(frozen=True)
class GoldenAnswer:
    """The photograph's bytes, checked against the recorded SHA-256, and the expected answer."""

    photo: bytes = field(repr=False)
    expected: ExpectedAnswer


def attach_photo(
    expected: ExpectedAnswer, photo: bytes, recorded_in: str = GOLDEN_FILENAME
) -> GoldenAnswer:
    """Pair the photograph with its answer; raise GoldenFileError unless the SHA-256 matches.

    recorded_in: the golden file whose record is compared (its name goes in the message).
    """
    digest = hashlib.sha256(photo).hexdigest()
    if digest != expected.photo_sha256:
        raise GoldenFileError(
            f"sha256 {digest} is not the {expected.photo_sha256} {recorded_in} records: "
            "a corrupt copy"
        )
    return GoldenAnswer(photo, expected)


def parse_expected(data: bytes) -> ExpectedAnswer:
    """Validate golden_answer.json's bytes; raise GoldenFileError saying what is wrong."""
    try:
        # orjson refuses NaN, lone surrogates and nesting deeper than 1024.
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GoldenFileError(f"not valid JSON: {exc}") from exc
    root = _object(document, "the document")
    if root.get("format") != FORMAT or isinstance(root.get("format"), bool):
        raise GoldenFileError(f"`format` must be {FORMAT}, the only one this gateway reads")
    photo = _object(root.get("photo"), "`photo`")
    name = _text(photo, "file", "photo")
    if not PHOTO_NAME.fullmatch(name):
        raise GoldenFileError("`photo.file` must be a plain file name (letters, digits, _ . -)")
    sha256 = _text(photo, "sha256", "photo")
    if not SHA256.fullmatch(sha256):
        raise GoldenFileError("`photo.sha256` must be 64 lowercase hex digits")
    size = _object(root.get("input"), "`input`")
    width, height = (
        _integer(size, side, "input", 1, MAX_INPUT_SIDE) for side in ("width", "height")
    )
    expected = _object(root.get("expected"), "`expected`")
    probabilities = _probabilities(expected.get("probabilities"))
    top1, top1_probability = _ranked(
        _object(expected.get("top1"), "`expected.top1`"), "top1", probabilities
    )
    if probabilities[top1] != max(probabilities):
        raise GoldenFileError("`expected.top1` is not the most probable class of the vector")
    margin = _number(expected, "top1_margin", "expected", 0.0, 1.0)
    runner_up = sorted(probabilities)[-2] if len(probabilities) > 1 else 0.0
    if abs(margin - (probabilities[top1] - runner_up)) > RECORDED_SLACK:
        raise GoldenFileError("`expected.top1_margin` is not top-1 minus runner-up in the vector")
    tolerance = _object(root.get("tolerance"), "`tolerance`")
    return ExpectedAnswer(
        photo_file=name,
        photo_sha256=sha256,
        input_size=(width, height),
        probabilities=probabilities,
        top1=top1,
        top1_probability=top1_probability,
        top1_margin=margin,
        top5=_top5(expected.get("top5"), probabilities),
        l1_tolerance=_positive(_number(tolerance, "l1", "tolerance", 0.0, 2.0), "tolerance.l1"),
        computed_by=_text(root, "computed_by", None),
    )


def _probabilities(value: Any) -> tuple[float, ...]:
    where = "`expected.probabilities`"
    if not isinstance(value, list) or not value:
        raise GoldenFileError(f"{where} must be a non-empty array of numbers")
    if not all(isinstance(p, int | float) and not isinstance(p, bool) for p in value):
        raise GoldenFileError(f"{where} must hold numbers only")
    row = tuple(float(p) for p in value)
    if not all(0.0 <= p <= 1.0 for p in row):
        raise GoldenFileError(f"{where} must lie between 0 and 1")
    if abs(sum(row) - 1.0) > PROBABILITY_SUM_TOLERANCE:
        raise GoldenFileError(f"{where} sum to {sum(row):.6f}, not 1")
    return row


def _ranked(entry: dict[str, Any], where: str, row: tuple[float, ...]) -> tuple[int, float]:
    class_id = _integer(entry, "class_id", f"expected.{where}", 0, len(row) - 1)
    probability = _number(entry, "probability", f"expected.{where}", 0.0, 1.0)
    if abs(probability - row[class_id]) > RECORDED_SLACK:
        raise GoldenFileError(f"`expected.{where}.probability` is not the vector's")
    return class_id, probability


def _top5(value: Any, row: tuple[float, ...]) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, list) or len(value) != min(TOP_K, len(row)):
        raise GoldenFileError(f"`expected.top5` must be an array of {min(TOP_K, len(row))}")
    where = "`expected.top5`"
    return tuple(_ranked(_object(item, where), "top5[]", row) for item in value)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GoldenFileError(f"{where} must be a JSON object")
    return value


def _text(parent: dict[str, Any], key: str, where: str | None) -> str:
    value = parent.get(key)
    name = f"`{where}.{key}`" if where else f"`{key}`"
    if not isinstance(value, str) or len(value) > MAX_NOTE_CHARS:
        raise GoldenFileError(f"{name} must be a string of at most {MAX_NOTE_CHARS} characters")
    return value


def _integer(parent: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = parent.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise GoldenFileError(f"`{where}.{key}` must be an integer from {low} to {high}")
    return value


def _number(parent: dict[str, Any], key: str, where: str, low: float, high: float) -> float:
    value = parent.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise GoldenFileError(f"`{where}.{key}` must be a number from {low} to {high}")
    return float(value)


def _positive(value: float, name: str) -> float:
    if value <= 0.0:
        raise GoldenFileError(f"`{name}` must be above 0")
    return value
