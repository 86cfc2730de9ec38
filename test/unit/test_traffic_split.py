"""The routing document: refused loudly when wrong; a sticky split that moves clients one way."""

import json
from typing import Any

import pytest

from gateway.target import Target
from gateway.traffic_split import (
    ModelSplit,
    RoutingConfig,
    RoutingError,
    SplitEntry,
    choose,
    parse_routing,
    sticky_point,
    validate_routing,
)

AGREED_EXAMPLE = """
{
  "models": {
    "mobilenet": {
      "split": [{"label": "stable", "weight": 90}, {"label": "canary", "weight": 10}],
      "sticky_header": "X-Client-ID",
      "shadow": {"label": "canary", "fraction": 0.1}
    }
  }
}
"""
KEYS = [f"client-{n}" for n in range(10_000)]


def routing(**fields: Any) -> dict[str, Any]:
    return {"models": {"mobilenet": fields}}


def refusal(data: object) -> str:
    with pytest.raises(RoutingError) as caught:
        validate_routing(data)
    return str(caught.value)


def split_of(*weights: tuple[str, float]) -> ModelSplit:
    entries = tuple(SplitEntry(label=label, weight=weight) for label, weight in weights)
    return ModelSplit.of("mobilenet", entries)


def test_the_agreed_example_parses() -> None:
    config = parse_routing(AGREED_EXAMPLE)
    model = config.models["mobilenet"]
    assert model.sticky_header == "X-Client-ID"
    assert model.shadow is not None
    assert model.shadow.target("mobilenet") == Target("mobilenet", label="canary")
    assert model.shadow.fraction == 0.1
    split = config.split_for("mobilenet")
    assert split is not None
    assert split.targets == (
        Target("mobilenet", label="stable"),
        Target("mobilenet", label="canary"),
    )


def test_a_model_without_split_and_an_empty_document_route_to_defaults() -> None:
    assert parse_routing("{}").models == {}
    config = parse_routing('{"models": {"mobilenet": {"sticky_header": "X-Client-ID"}}}')
    assert config.split_for("mobilenet") is None
    assert config.split_for("other") is None


def test_the_document_survives_a_round_trip_with_weights_as_written() -> None:
    config = parse_routing(AGREED_EXAMPLE)
    written = config.to_json()
    assert parse_routing(written) == config
    assert json.loads(written) == json.loads(AGREED_EXAMPLE)  # 90 stays 90, nulls left out


@pytest.mark.parametrize(
    ("data", "key", "where"),
    [
        ({"modles": {}}, "modles", "the top level"),
        (routing(spilt=[]), "spilt", "models.mobilenet"),
        (routing(split=[{"label": "a", "wieght": 1}]), "wieght", "models.mobilenet.split[0]"),
        (
            routing(shadow={"label": "a", "fraction": 0.1, "pct": 5}),
            "pct",
            "models.mobilenet.shadow",
        ),
    ],
)
def test_an_unknown_key_is_refused_by_name_and_place(data: object, key: str, where: str) -> None:
    assert f"unknown key {key!r} at {where}" in refusal(data)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"label": "a", "weight": -1}, "greater than or equal to 0"),
        ({"label": "a", "weight": "10"}, "valid number"),
        ({"label": "a", "weight": True}, "valid number"),
        ({"label": "a"}, "weight: Field required"),
        ({"weight": 1}, "exactly one of 'label' and 'version'"),
        ({"label": "a", "version": 2, "weight": 1}, "exactly one of 'label' and 'version'"),
        ({"version": 0, "weight": 1}, "greater than or equal to 1"),
        ({"version": 2**63, "weight": 1}, "less than or equal to 9223372036854775807"),
        ({"version": "3", "weight": 1}, "valid integer (got '3')"),
        ({"version": 3.0, "weight": 1}, "valid integer"),
        ({"label": "", "weight": 1}, "a label is 1 to 64 letters"),
        ({"label": "a" * 65, "weight": 1}, "a label is 1 to 64 letters"),
        ({"label": "can/ary", "weight": 1}, "a label is 1 to 64 letters"),
        ({"label": "canäry", "weight": 1}, "a label is 1 to 64 letters"),
        ({"label": "canary\n", "weight": 1}, "a label is 1 to 64 letters"),
    ],
)
def test_a_bad_split_entry_is_refused_with_its_place(entry: object, expected: str) -> None:
    message = refusal(routing(split=[entry]))
    assert message.startswith("models.mobilenet.split[0]")
    assert expected in message


def test_the_limits_themselves_are_accepted() -> None:
    config = validate_routing(
        routing(
            split=[
                {"version": 2**63 - 1, "weight": 0},
                {"label": "a_B-9" * 12 + "abcd", "weight": 1},
            ],
            shadow={"version": 1, "fraction": 1},
        )
    )
    split = config.split_for("mobilenet")
    assert split is not None
    assert split.targets[0] == Target("mobilenet", version=2**63 - 1)
    assert validate_routing(routing(shadow={"version": 1, "fraction": 0})).models


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ([], "at least one entry with a positive weight"),
        ([{"label": "a", "weight": 0}, {"label": "b", "weight": 0}], "at least one entry"),
        ([{"label": "a", "weight": 1}, {"label": "a", "weight": 2}], "names label 'a' twice"),
        ([{"version": 4, "weight": 1}, {"version": 4, "weight": 2}], "names version 4 twice"),
        ([{"label": "a", "weight": 1e308}, {"label": "b", "weight": 1e308}], "add up to more"),
    ],
)
def test_a_split_that_cannot_choose_is_refused(split: object, expected: str) -> None:
    assert expected in refusal(routing(split=split))


@pytest.mark.parametrize("header", ["", "X Client", "X-Client:", "X-Clïent", "a" * 257])
def test_the_sticky_header_must_be_a_header_name(header: str) -> None:
    assert "sticky_header: not an HTTP header name" in refusal(routing(sticky_header=header))


@pytest.mark.parametrize("fraction", [-0.1, 1.01, "0.5", None])
def test_the_shadow_fraction_is_between_0_and_1(fraction: object) -> None:
    assert "models.mobilenet.shadow.fraction" in refusal(
        routing(shadow={"label": "canary", "fraction": fraction})
    )


@pytest.mark.parametrize("name", ["", "a/b", "a:b"])
def test_a_model_name_tf_serving_cannot_route_is_refused(name: str) -> None:
    assert "is not a model name" in refusal({"models": {name: {}}})


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("[]", "the document must be a JSON object"),
        ("{", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        ('{"models": {"a": {}, "a": {}}}', "key 'a' appears twice"),
        ('{"models": {"a": {"split": [{"label": "x", "weight": NaN}]}}}', "NaN is not a JSON"),
        ('{"models": {"a": {"split": [{"label": "x", "weight": 1e999}]}}}', "finite number"),
    ],
)
def test_a_document_that_is_not_the_format_is_refused(document: str | bytes, expected: str) -> None:
    with pytest.raises(RoutingError) as caught:
        parse_routing(document)
    assert expected in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:
    message = refusal(routing(split=[{"label": "a/b", "weight": -1}], sticky_header="X Y"))
    assert "split[0].label" in message
    assert "split[0].weight" in message
    assert "sticky_header" in message


def test_the_sticky_point_is_the_same_in_every_process_and_release() -> None:
    # Pinned values: a change to the hash would move every client at the next deploy.
    assert sticky_point("mobilenet", "client-1") == 0.95289859232376
    assert sticky_point("efficientnet_lite0", "client-1") != sticky_point("mobilenet", "client-1")
    assert all(0.0 <= sticky_point("mobilenet", key) < 1.0 for key in KEYS)


def test_a_90_10_split_sends_about_a_tenth_of_clients_to_canary_and_each_always_the_same() -> None:
    split = split_of(("stable", 90), ("canary", 10))
    first = [choose(split, key) for key in KEYS]
    canary = sum(target.label == "canary" for target in first) / len(KEYS)
    assert abs(canary - 0.10) <= 0.015
    assert [choose(split, key) for key in KEYS] == first
    assert [choose(split_of(("stable", 9), ("canary", 1)), key) for key in KEYS] == first


def test_growing_the_canary_moves_clients_only_from_stable_to_canary() -> None:
    before = [choose(split_of(("stable", 90), ("canary", 10)), key).label for key in KEYS]
    after = [choose(split_of(("stable", 80), ("canary", 20)), key).label for key in KEYS]
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert set(moved) == {("stable", "canary")}  # nobody on canary went back
    assert abs(len(moved) / len(KEYS) - 0.10) <= 0.015
    assert abs(after.count("canary") / len(KEYS) - 0.20) <= 0.015


def test_without_a_key_the_draw_decides_against_cumulative_weights() -> None:
    split = split_of(("stable", 90), ("canary", 10))
    assert choose(split, None, draw=0.0).label == "stable"
    assert choose(split, None, draw=0.8999).label == "stable"
    assert choose(split, None, draw=0.9).label == "canary"
    assert choose(split, "", draw=0.95).label == "canary"  # an empty header keys nobody
    assert choose(split, None).label in {"stable", "canary"}
    for draw in (-0.1, 1.0):
        with pytest.raises(ValueError, match="draw"):
            choose(split, None, draw=draw)


def test_a_zero_weight_entry_is_never_chosen() -> None:
    split = split_of(("off", 0), ("stable", 1), ("dark", 0), ("canary", 1), ("gone", 0))
    draws = [n / 1000 for n in range(1000)] + [1.0 - 2.0**-53]
    assert {choose(split, None, draw=d).label for d in draws} == {"stable", "canary"}
    assert {choose(split, key).label for key in KEYS[:2000]} == {"stable", "canary"}
    assert choose(split_of(("only", 0.3), ("never", 0)), None, draw=1.0 - 2.0**-53).label == "only"


def test_choose_names_the_model_of_the_split() -> None:
    config = validate_routing({"models": {"resnet": {"split": [{"version": 7, "weight": 1}]}}})
    split = config.split_for("resnet")
    assert split is not None
    assert choose(split, "anyone") == Target("resnet", version=7)


def test_the_config_is_immutable() -> None:
    config = RoutingConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.models = {}  # type: ignore[misc]
