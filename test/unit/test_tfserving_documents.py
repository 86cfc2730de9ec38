"""Reading TF Serving's metadata and status documents, whatever shape they come in."""

import re
from collections.abc import Callable

import httpx
import pytest

from gateway.tfserving.documents import parse_signature, parse_status
from test_tfserving import metadata, status


def test_signature_gives_names_and_image_size() -> None:
    signature = parse_signature(metadata(dims=(-1, 192, 160, 3)), version=4)
    assert signature.input_name == "images"
    assert signature.output_name == "probabilities"
    assert signature.image_size == (160, 192)
    assert signature.num_classes == 1001
    assert signature.version == 4


def test_a_float_input_signature_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="DT_FLOAT"):
        parse_signature(metadata(dtype="DT_FLOAT"), version=1)


def serving_default(document: dict) -> dict:
    return document["metadata"]["signature_def"]["signature_def"]["serving_default"]  # type: ignore[no-any-return]


def unknown_rank_output(document: dict) -> None:
    output = serving_default(document)["outputs"]["probabilities"]
    output["tensor_shape"] = {"dim": [], "unknown_rank": True}


def no_outputs(document: dict) -> None:
    serving_default(document)["outputs"] = {}


def string_input(document: dict) -> None:
    serving_default(document)["inputs"]["images"] = "images:0"


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (unknown_rank_output, "output 'probabilities' has shape []"),
        (no_outputs, "no output"),
        (string_input, "input 'images' is None"),
        (lambda document: document.update(metadata=[1, 2]), "no readable 'serving_default'"),
    ],
)
def test_any_malformed_metadata_is_a_value_error_with_a_reason(
    spoil: Callable[[dict], None], reason: str
) -> None:
    document = metadata()
    spoil(document)
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_signature(document, version=1)


def test_a_list_for_a_document_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="serving_default"):
        parse_signature([1, 2, 3], version=1)


@pytest.mark.parametrize(
    ("document", "pinned", "expected"),
    [
        (status((3, "LOADING"), (2, "AVAILABLE"), (1, "AVAILABLE")), None, (True, "AVAILABLE", 2)),
        (status((2, "AVAILABLE"), (1, "END")), 1, (False, "END", 1)),
        (status((2, "LOADING")), None, (False, "LOADING", 2)),
        ({"model_version_status": []}, None, (False, "UNKNOWN", None)),
        ({"model_version_status": [{"version": "x"}]}, None, (False, "UNKNOWN", None)),
    ],
)
def test_a_status_document_names_the_highest_available_or_the_pinned_version(
    document: dict, pinned: int | None, expected: tuple[bool, str, int | None]
) -> None:
    result = parse_status(httpx.Response(200, json=document), pinned)
    assert (result.ready, result.state, result.version) == expected
