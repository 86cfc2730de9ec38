"""Reading request bodies the way TF Serving's RapidJSON parser does.

TFS/util/json_tensor.cc `ParseJson` parses with RapidJSON and
`kParseNanAndInfFlag`, so `NaN`, `Inf`, `-Inf`, `Infinity` and `-Infinity`
are accepted as bare tokens, and parsing stops after the first top-level value
(trailing bytes are ignored). Reference: docs/tf-serving-protocol.md §3
(JSON dialect), §4 (numbers) and §5.2 (the predict failures).

orjson is tried first because it is several times faster than the json module;
it rejects the non-finite tokens, trailing bytes and integers wider than 64 bits,
so those bodies fall back to `json.JSONDecoder.raw_decode`. Error texts are
RapidJSON's (`rapidjson/error/en.h`) and offsets are character offsets, which
match RapidJSON's byte offsets for ASCII bodies.

The module also prints values for error messages like `JsonValueToString`
(a RapidJSON PrettyWriter: four-space indent) and `WriteDecimal`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from .errors import ServingError, invalid_argument

_JSON_SPACE = " \t\n\r"
_BARE_INF = re.compile(r'"(?:[^"\\]|\\.)*"|(-?)Inf(?!inity)')
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1

_RAPIDJSON_TEXT = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body and require a top-level object, as `ParseJson` does."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _parse_leniently(body)
    if not isinstance(doc, dict):
        raise format_error(doc, "Is not object")
    return doc


def _parse_leniently(body: bytes) -> Any:
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if start == len(text):
        raise invalid_argument(f"JSON Parse error: The document is empty. at offset: {start}")
    text = _BARE_INF.sub(_spell_infinity, text)
    decoder = json.JSONDecoder(parse_int=_rapidjson_int)
    try:
        doc, _end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        message = _rapidjson_message(exc, text)
        raise invalid_argument(f"JSON Parse error: {message} at offset: {exc.pos}") from exc
    except RecursionError as exc:
        raise invalid_argument("JSON Parse error: Unspecific syntax error.") from exc
    return doc


def _spell_infinity(match: re.Match[str]) -> str:
    if match.group(1) is None:
        return match.group(0)
    return f"{match.group(1)}Infinity"


def _rapidjson_int(digits: str) -> int | float:
    # RapidJSON keeps integers that fit int64/uint64 and stores wider ones as doubles.
    value = int(digits)
    return value if _INT64_MIN <= value <= _UINT64_MAX else float(value)


def _rapidjson_message(exc: json.JSONDecodeError, text: str) -> str:
    if exc.msg.startswith("Expecting ',' delimiter"):
        if _innermost_container(text, exc.pos) == "{":
            return "Missing a comma or '}' after an object member."
        return "Missing a comma or ']' after an array element."
    for python_text, rapidjson_text in _RAPIDJSON_TEXT:
        if exc.msg.startswith(python_text):
            return rapidjson_text
    return "Invalid value."


def _innermost_container(text: str, pos: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def format_error(value: Any, message: str) -> ServingError:
    """Build json_tensor.cc's `FormatError`: the offending JSON, then the message."""
    return invalid_argument(f"JSON Value: {value_to_string(value)} {message}")


def value_to_string(value: Any) -> str:
    """Print a parsed JSON value like `JsonValueToString` (RapidJSON PrettyWriter)."""
    if isinstance(value, float):
        return format_decimal(value)
    return json.dumps(value, indent=4, ensure_ascii=False, default=str)


def json_type_name(value: Any) -> str:
    """Name a value's JSON type like json_tensor.cc `JsonTypeString`."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def format_decimal(value: float) -> str:
    """Format a double like json_tensor.cc `WriteDecimal` (shortest %g that round-trips)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    if float(text) != value:
        text = f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text
