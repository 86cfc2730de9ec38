"""Reading deploy/nginx/nginx.conf's directives, for the checks that hold it to the gateway.

Just enough of nginx's syntax for this one file: comments dropped, simple
`name arguments;` lines, blocks found by their opening line, and the fixed
answers (`return STATUS 'body';`) nginx sends itself instead of a replica.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from nginx_front import CONFIG


def uncommented(text: str | None = None) -> str:
    """The configuration (the shipped file unless `text` is given) without its comments."""
    return re.sub(r"#[^\n]*", "", CONFIG.read_text() if text is None else text)


def directives(config: str, name: str) -> list[str]:
    """The arguments of every `name ...;` in the config, in order."""
    return [m.strip() for m in re.findall(rf"(?m)^\s*{name}\s+([^;{{]*);", config)]


def seconds(text: str) -> float:
    """An nginx time (`35s`, `2m`, `500ms`) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m)?", text)
    assert match, f"unexpected nginx time {text!r}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2) or "s"]


def block(config: str, opening: str) -> str:
    """The text inside the block whose opening line is `opening {` (a regex), nested braces too."""
    match = re.search(rf"(?m)^\s*{opening}\s*\{{", config)
    assert match, f"no block {opening!r}"
    depth, start = 1, match.end()
    for index in range(start, len(config)):
        depth += {"{": 1, "}": -1}.get(config[index], 0)
        if depth == 0:
            return config[start:index]
    raise AssertionError(f"block {opening!r} is not closed")


@dataclass(frozen=True)
class FixedAnswer:
    """What a named location answers by itself: status, media type, added headers, JSON body."""

    status: int
    media_type: str
    headers: dict[str, str]
    body: dict[str, Any]


def fixed_answer(config: str, location: str) -> FixedAnswer:
    """The answer `location @NAME { ... return STATUS '...'; }` sends."""
    inside = block(config, rf"location\s+{re.escape(location)}")
    answer = re.search(r"return\s+(\d+)\s+'([^']*)';", inside)
    assert answer, f"{location} returns no fixed answer"
    (media_type,) = directives(inside, "default_type")
    # `types { }` empties the extension map: default_type whatever the URI ends in.
    assert re.search(r"types\s*\{\s*\}", inside), f"{location} keeps the extension types"
    headers = {}
    for header in directives(inside, "add_header"):
        name, value, *flags = header.split()
        # `always`: added to error statuses too, which is all these answers are.
        assert flags == ["always"], header
        headers[name] = value
    return FixedAnswer(int(answer.group(1)), media_type, headers, json.loads(answer.group(2)))
