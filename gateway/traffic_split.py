"""The routing file's model (docs/rollouts.md): parsed strictly, and the weighted choice it makes.

Strict because a typo in a rollout file is silent otherwise: `"wieght": 10` ignored
would send no traffic to the canary and nobody would know why. Every unknown key,
wrong type or impossible value is refused with a message that names where it is.

The choice is sticky: a client's key (the `sticky_header` value) is hashed with the
model's name to a point in [0, 1), and the entries' cumulative weights, in the file's
order, cut [0, 1) into ranges. Because the order never changes with the weights,
moving weight from one entry to the next only moves the boundary between them: going
from 90/10 to 80/20 moves the points in [0.8, 0.9) from stable to canary and nobody
the other way. A hash from hashlib, unlike `hash()`, is the same in every process and
every restart, so every gateway replica sends a client to the same entry.
"""

import hashlib
import json
import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

# The one Target the routing core uses too (fleet, lanes): imported, never redefined,
# so a target chosen here is the same key there.
from gateway.target import Target

INT64_MAX = 2**63 - 1  # TF Serving reads a version as int64 (docs/tf-serving-protocol.md §1)
# Label names as the project allows them: TF Serving's REST path refuses "/" and ":"
# in a label (TFS/model_servers/http_rest_api_util.cc, `/labels/([^/:]+)`); the rest
# keeps labels safe in URLs, metric labels and logs.
LABEL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# RFC 9110 §5.6.2 token: the characters a header field name may hold.
_HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"

_PATTERN_MEANING = {
    LABEL_PATTERN: "a label is 1 to 64 letters, digits, '_' or '-'",
    _HEADER_NAME_PATTERN: "not an HTTP header name",
}

Label = Annotated[StrictStr, Field(pattern=LABEL_PATTERN)]
Version = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]


class RoutingError(ValueError):
    """A routing document that cannot be used; the message says where and why."""


class _Named(BaseModel):
    """An entry that names exactly one of a version label and a version number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label | None = None
    version: Version | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "_Named":
        if (self.label is None) == (self.version is None):
            raise ValueError("name exactly one of 'label' and 'version'")
        return self

    def target(self, model: str) -> Target:
        """This entry's target for `model`."""
        return Target(model, version=self.version, label=self.label)


class SplitEntry(_Named):
    """One share of a split: weights are relative, so 90/10 and 9/1 split alike."""

    weight: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]

    @field_serializer("weight")
    def _plain_weight(self, weight: float) -> float | int:
        return int(weight) if weight.is_integer() else weight  # 90 stays 90, not 90.0


class Shadow(_Named):
    """Where a copy of a fraction of the model's successful requests goes, for comparison."""

    fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]


class ModelRouting(BaseModel):
    """One model's routing; every key optional (absent split: the model's default version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: tuple[SplitEntry, ...] | None = None
    sticky_header: Annotated[StrictStr, Field(pattern=_HEADER_NAME_PATTERN)] | None = None
    shadow: Shadow | None = None

    @field_validator("split")
    @classmethod
    def _some_weight(cls, split: tuple[SplitEntry, ...] | None) -> tuple[SplitEntry, ...] | None:
        if split is None:
            return None
        if not any(entry.weight > 0 for entry in split):
            raise ValueError("a split needs at least one entry with a positive weight")
        if not math.isfinite(sum(entry.weight for entry in split)):
            raise ValueError("the weights add up to more than a float holds")
        # Two entries for one target would make the ranges (and a later edit) ambiguous.
        seen: set[tuple[str | None, int | None]] = set()
        for entry in split:
            if (entry.label, entry.version) in seen:
                which = f"label {entry.label!r}" if entry.label else f"version {entry.version}"
                raise ValueError(f"the split names {which} twice")
            seen.add((entry.label, entry.version))
        return split


@dataclass(frozen=True)
class ModelSplit:
    """A model's split ready for choosing: its targets and their cumulative weights."""

    model: str
    targets: tuple[Target, ...]
    bounds: tuple[float, ...]  # cumulative weights, in the file's order

    @classmethod
    def of(cls, model: str, entries: tuple[SplitEntry, ...]) -> "ModelSplit":
        """The split of `entries` for `model`."""
        bounds: list[float] = []
        total = 0.0
        for entry in entries:
            total += entry.weight
            bounds.append(total)
        return cls(model, tuple(entry.target(model) for entry in entries), tuple(bounds))


class RoutingConfig(BaseModel):
    """The whole routing document: per model name, its routing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[StrictStr, ModelRouting] = Field(default_factory=dict)
    _splits: dict[str, ModelSplit] = PrivateAttr(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelRouting]) -> dict[str, ModelRouting]:
        for name in models:
            # TF Serving's REST paths cannot name such a model (http_rest_api_util.cc).
            if not name or "/" in name or ":" in name:
                raise ValueError(f"{name!r} is not a model name (empty, or holds '/' or ':')")
        return models

    def model_post_init(self, context: Any, /) -> None:
        # Built once per document, so a request's choice is a lookup and a bisect.
        for name, routing in self.models.items():
            if routing.split is not None:
                self._splits[name] = ModelSplit.of(name, routing.split)

    def split_for(self, model: str) -> ModelSplit | None:
        """The model's split, or None when requests go to its default version."""
        return self._splits.get(model)

    def to_json(self) -> bytes:
        """The document as the routing file holds it (absent keys left out)."""
        return self.model_dump_json(exclude_none=True, indent=2).encode() + b"\n"


def sticky_point(model: str, client_key: str) -> float:
    """Where `client_key` falls in [0, 1) for `model`: the same in every process."""
    data = f"{model}\x00{client_key}".encode("utf-8", "surrogatepass")
    digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    return (digest >> 11) / 2.0**53  # 53 bits: exactly representable, never 1.0


def choose(split: ModelSplit, client_key: str | None, draw: float | None = None) -> Target:
    """The target for one request: sticky by `client_key`, else by `draw` (random when None)."""
    if client_key:  # an empty header keys nobody: it would put all such clients together
        point = sticky_point(split.model, client_key)
    elif draw is not None:
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"a draw must be in [0, 1), got {draw}")
        point = draw
    else:
        point = random.random()  # noqa: S311 - spreads load, guards nothing
    total = split.bounds[-1]
    index = bisect_right(split.bounds, point * total)  # zero-weight ranges are empty: skipped
    if index == len(split.targets):  # point * total rounded up to total: the last range
        index = split.bounds.index(total)  # the last entry with a positive weight
    return split.targets[index]


def parse_routing(document: bytes | str) -> RoutingConfig:
    """The routing document in `document` (JSON), or RoutingError saying what is wrong."""
    try:
        data = json.loads(document, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RoutingError:
        raise
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RoutingError(f"not valid JSON: {exc}") from None
    return validate_routing(data)


def validate_routing(data: object) -> RoutingConfig:
    """The routing document from parsed JSON, or RoutingError saying what is wrong."""
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingError("; ".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Any) -> str:
    loc: tuple[str | int, ...] = error["loc"]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    if error["type"] == "extra_forbidden":
        parent = where.rsplit(".", 1)[0] or "the top level"
        return f"unknown key {loc[-1]!r} at {parent.lstrip('.')}"
    if not loc and error["type"] == "model_type":
        return "the document must be a JSON object"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = _PATTERN_MEANING.get(error["ctx"]["pattern"], message)
    shown = error.get("input")
    if isinstance(shown, str | int | float | bool) and error["type"] != "missing":
        message += f" (got {repr(shown)[:80]})"
    return f"{where.lstrip('.')}: {message}"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys; in a hand-edited file that is a slip.
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RoutingError(f"key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> NoReturn:
    raise RoutingError(f"{name} is not a JSON number")
