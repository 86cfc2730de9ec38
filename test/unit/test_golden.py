"""golden_answer.json read as untrusted input, and the rule that judges a served answer."""

import contextlib
import hashlib
import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.golden import (
    ExpectedAnswer,
    GoldenFileError,
    attach_photo,
    parse_expected,
)

PHOTO = b"\xff\xd8 not really a JPEG, but bytes with a digest"
PROBABILITIES = [0.7, 0.2, 0.1]


def golden_document(
    probabilities: list[float] = PROBABILITIES, l1: float = 0.1, photo: bytes = PHOTO
) -> dict[str, Any]:
    """A well-formed golden_answer.json for a model of len(probabilities) classes."""
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])
    top = [{"class_id": i, "label": f"class {i}", "probability": probabilities[i]} for i in order]
    runner_up = probabilities[order[1]] if len(order) > 1 else 0.0
    return {
        "format": 1,
        "photo": {"file": "golden_photo.jpg", "sha256": hashlib.sha256(photo).hexdigest()},
        "input": {"width": 224, "height": 224, "dtype": "uint8"},
        "computed_by": "by hand, for a test",
        "expected": {
            "top1": top[0],
            "top1_margin": probabilities[order[0]] - runner_up,
            "top5": top[:5],
            "probabilities": probabilities,
        },
        "tolerance": {"l1": l1},
    }


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def expected_answer(probabilities: list[float] = PROBABILITIES, l1: float = 0.1) -> ExpectedAnswer:
    return parse_expected(encode(golden_document(probabilities, l1)))


def test_a_well_formed_document_is_read_whole() -> None:
    answer = expected_answer()
    assert answer.photo_file == "golden_photo.jpg"
    assert answer.input_size == (224, 224)
    assert answer.probabilities == (0.7, 0.2, 0.1)
    assert (answer.top1, answer.top1_probability) == (0, 0.7)
    assert answer.top1_margin == pytest.approx(0.5)
    assert answer.top5 == ((0, 0.7), (1, 0.2), (2, 0.1))
    assert answer.l1_tolerance == 0.1
    assert answer.computed_by == "by hand, for a test"


def with_field(path: str, value: object) -> bytes:
    """The well-formed document with the field at the dotted `path` set to `value`."""
    document = golden_document()
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    node[last] = value
    return encode(document)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": NaN}', "not valid JSON"),
        (b"[1, 2]", "the document must be a JSON object"),
        (with_field("format", 2), "`format` must be 1"),
        (with_field("format", True), "`format` must be 1"),
        (with_field("photo", "golden_photo.jpg"), "`photo` must be a JSON object"),
        (with_field("photo.file", "../../etc/passwd"), "`photo.file` must be a plain file name"),
        (with_field("photo.file", 7), "`photo.file` must be a string"),
        (with_field("photo.sha256", "ABC"), "`photo.sha256` must be 64 lowercase hex digits"),
        (with_field("input.width", "224"), "`input.width` must be an integer from 1 to 8192"),
        (with_field("input.height", 10**9), "`input.height` must be an integer"),
        (with_field("expected.probabilities", []), "must be a non-empty array of numbers"),
        (with_field("expected.probabilities", [0.5, "0.5"]), "must hold numbers only"),
        (with_field("expected.probabilities", [True, 0.0]), "must hold numbers only"),
        (with_field("expected.probabilities", [1.5, -0.5]), "must lie between 0 and 1"),
        (with_field("expected.probabilities", [0.7, 0.2, 0.2]), "sum to 1.100000, not 1"),
        (with_field("expected.top1.class_id", 3), "`expected.top1.class_id` must be an integer"),
        (with_field("expected.top1.class_id", 1.0), "`expected.top1.class_id` must be an integer"),
        (with_field("expected.top1.probability", 0.69), "`expected.top1.probability` is not"),
        (
            with_field("expected.top1", {"class_id": 1, "probability": 0.2}),
            "`expected.top1` is not the most probable class",
        ),
        (with_field("expected.top1_margin", 0.4), "`expected.top1_margin` is not top-1 minus"),
        (with_field("expected.top5", [{"class_id": 0, "probability": 0.7}]), "array of 3"),
        (with_field("expected.top5", [1, 2, 3]), "`expected.top5` must be a JSON object"),
        (with_field("tolerance.l1", 0), "`tolerance.l1` must be above 0"),
        (with_field("tolerance.l1", "0.1"), "`tolerance.l1` must be a number from 0.0 to 2.0"),
        (with_field("computed_by", "x" * 2000), "`computed_by` must be a string of at most 1024"),
    ],
)
def test_a_broken_field_is_named(data: bytes, problem: str) -> None:
    with pytest.raises(GoldenFileError, match=re.escape(problem)):
        parse_expected(data)


FIELDS = (
    "format",
    "photo",
    "photo.file",
    "photo.sha256",
    "input",
    "input.width",
    "expected",
    "expected.top1",
    "expected.top1.class_id",
    "expected.top1.probability",
    "expected.top1_margin",
    "expected.top5",
    "expected.probabilities",
    "tolerance",
    "tolerance.l1",
    "computed_by",
)
JSON_VALUES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FIELDS), JSON_VALUES | st.lists(JSON_VALUES, max_size=4))
def test_any_field_value_is_read_or_refused_with_a_golden_file_error(
    path: str, value: object
) -> None:
    with contextlib.suppress(GoldenFileError):
        parse_expected(with_field(path, value))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=256))
def test_any_bytes_are_read_or_refused_with_a_golden_file_error(data: bytes) -> None:
    with contextlib.suppress(GoldenFileError):
        parse_expected(data)


def test_the_photo_must_have_the_recorded_digest() -> None:
    answer = expected_answer()
    assert attach_photo(answer, PHOTO).photo == PHOTO
    with pytest.raises(GoldenFileError, match=r"is not the [0-9a-f]{64} .*: a corrupt copy$"):
        attach_photo(answer, PHOTO[:-1] + b"!")


def test_the_golden_answer_itself_agrees() -> None:
    comparison = expected_answer().compare(np.array(PROBABILITIES, dtype=np.float32))
    assert comparison.agrees
    assert comparison.reason is None
    assert comparison.l1 < 1e-7
    assert (comparison.served_top1, comparison.served_top1_probability) == (0, pytest.approx(0.7))


def test_an_answer_within_tolerance_agrees() -> None:
    comparison = expected_answer(l1=0.1).compare([0.66, 0.23, 0.11])
    assert comparison.agrees
    assert comparison.l1 == pytest.approx(0.08)


def test_an_answer_beyond_tolerance_differs_by_l1() -> None:
    comparison = expected_answer(l1=0.1).compare([0.62, 0.25, 0.13])
    assert not comparison.agrees
    assert comparison.l1 == pytest.approx(0.16)
    assert comparison.reason is not None
    assert comparison.reason.startswith("probabilities differ from the golden answer by L1 0.1600")


def test_a_decisive_top1_that_moved_is_named_first() -> None:
    comparison = expected_answer(l1=0.1).compare([0.1, 0.2, 0.7])
    assert not comparison.agrees
    assert comparison.reason == (
        "top-1 is class 2 (0.7000) where the golden answer is class 0 (0.7000) (L1 1.2000)"
    )


def test_a_nearly_uniform_answer_is_judged_by_l1_alone() -> None:
    # Untrained weights: a margin of 0.004, far below the tolerance, so a swapped top-1
    # within tolerance is no difference: judging it would flap.
    golden = [0.336, 0.332, 0.332]
    answer = expected_answer(golden, l1=0.1)
    assert not answer.top1_decisive
    assert answer.compare([0.332, 0.336, 0.332]).agrees
    assert not answer.compare([0.2, 0.5, 0.3]).agrees


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        ([0.5, 0.5], "the version answers 2 classes; the golden answer has 3 classes"),
        ([np.nan, 0.5, 0.5], "the version answers non-finite values; the golden answer has 3"),
    ],
)
def test_an_answer_of_another_shape_differs(served: list[float], reason: str) -> None:
    comparison = expected_answer().compare(served)
    assert not comparison.agrees
    assert comparison.reason is not None
    assert comparison.reason.startswith(reason)
