"""gateway/cli/render.py and documents.py: tables, JSON Lines and problem lines as printed."""

import json
from pathlib import Path

from gateway.cli.client import Answer
from gateway.cli.documents import models_outline, outline
from gateway.cli.render import failure_line, json_line, prediction_table, untrained_warning

ANSWER = {
    "success": True,
    "filename": "cat.jpg",
    "predictions": [
        {
            "class_id": 286,
            "label": "Egyptian cat",
            "probability": 0.78125,
            "confidence_percent": 78.13,
        },
        {"class_id": 282, "label": "tiger cat", "probability": 0.1, "confidence_percent": 10.0},
    ],
    "total_time_ms": 12.5,
    "model": {
        "name": "efficientnet_lite0",
        "version": "1",
        "backend": "tfserving",
        "weights": "trained",
    },
}
UNAUTHORIZED = {
    "type": "urn:ml-inference-pipeline:problem:unauthorized",
    "title": "Missing or unknown API key",
    "status": 401,
    "detail": "Send a valid API key in the X-API-Key header (or Authorization: Bearer).",
    "code": "unauthorized",
    "success": False,
}


def test_a_table_block_has_the_file_each_ranked_class_and_the_model() -> None:
    assert prediction_table(Path("photos/cat.jpg"), ANSWER).splitlines() == [
        "photos/cat.jpg",
        "     1    286  Egyptian cat   78.12%",
        "     2    282  tiger cat      10.00%",
        "  model efficientnet_lite0 version 1 (tfserving), 12.5 ms",
    ]


def test_an_int8_answer_says_so_beside_the_backend() -> None:
    model = {"name": "efficientnet_lite0", "version": "1", "weights": "trained"}
    int8 = {**ANSWER, "model": {**model, "backend": "embedded", "precision": "int8"}}
    float32 = {**ANSWER, "model": {**model, "backend": "tfserving", "precision": "float32"}}
    assert prediction_table(Path("cat.jpg"), int8).splitlines()[-1] == (
        "  model efficientnet_lite0 version 1 (embedded, int8), 12.5 ms"
    )
    assert prediction_table(Path("cat.jpg"), float32).splitlines()[-1] == (
        "  model efficientnet_lite0 version 1 (tfserving), 12.5 ms"
    )


def test_a_failure_line_is_file_status_title_and_detail() -> None:
    line = failure_line(Path("a.jpg"), Answer(status=401, body=UNAUTHORIZED))
    assert line == (
        "a.jpg: 401 Missing or unknown API key: "
        "Send a valid API key in the X-API-Key header (or Authorization: Bearer)."
    )


def test_a_failure_without_a_problem_document_says_what_came_back() -> None:
    html = Answer(status=502, body="<html>\n<title>502 Bad Gateway</title></html>")
    assert failure_line(Path("a.jpg"), html) == "a.jpg: 502 <html>"
    unreachable = Answer(
        error="could not connect to http://127.0.0.1:9: All connection attempts failed"
    )
    assert failure_line(Path("a.jpg"), unreachable) == (
        "a.jpg: could not connect to http://127.0.0.1:9: All connection attempts failed"
    )


def test_a_json_line_carries_file_ok_status_and_the_gateways_body() -> None:
    assert json.loads(json_line(Path("photos/cat.jpg"), Answer(status=200, body=ANSWER))) == {
        "file": "photos/cat.jpg",
        "ok": True,
        "status": 200,
        "response": ANSWER,
    }
    failed = json.loads(json_line(Path("a.jpg"), Answer(error="no answer within 1 s")))
    assert failed == {
        "file": "a.jpg",
        "ok": False,
        "status": None,
        "response": None,
        "error": "no answer within 1 s",
    }


def test_a_200_that_says_success_false_is_not_ok() -> None:
    assert not Answer(status=200, body={"success": False}).ok
    assert Answer(status=200, body=ANSWER).ok


def test_only_untrained_weights_are_warned_about() -> None:
    assert untrained_warning(ANSWER) is None
    untrained = {**ANSWER, "model": {**ANSWER["model"], "weights": "untrained"}}  # type: ignore[dict-item]
    assert untrained_warning(untrained) == (
        "warning: model efficientnet_lite0 version 1 (tfserving) has UNTRAINED weights: "
        "its classes mean nothing."
    )


def test_the_outline_indents_objects_and_lists_of_objects() -> None:
    document = {
        "status": "healthy",
        "ready": True,
        "served_model": {"name": "mobilenet", "version": 1},
        "golden_checks": [{"model": "mobilenet", "passed": True}],
        "labels": ["stable", "canary"],
    }
    assert outline(document) == [
        "status: healthy",
        "ready: true",
        "served_model:",
        "  name: mobilenet",
        "  version: 1",
        "golden_checks:",
        "  - model: mobilenet",
        "    passed: true",
        "labels: stable, canary",
    ]


def test_models_read_one_line_per_model_and_per_version() -> None:
    document = {
        "default_model": "mobilenet",
        "models_from": "MODEL_NAME",
        "models": [
            {
                "name": "mobilenet",
                "default": True,
                "version_policy": "the latest 1 version(s)",
                "labels": {"stable": 1},
                "versions": [
                    {
                        "version": 1,
                        "state": "AVAILABLE",
                        "labels": ["stable"],
                        "weights": "untrained",
                        "weights_source": "random",
                    }
                ],
            }
        ],
    }
    assert models_outline(document) == [
        "default model: mobilenet",
        "mobilenet (default): the latest 1 version(s); labels stable=1",
        "  version 1  AVAILABLE  labels: stable  weights: untrained (random)",
    ]


def test_rendering_reads_fields_of_the_wrong_type_as_absent() -> None:
    odd = {
        "predictions": [{"class_id": [7], "label": None, "probability": "high"}, "tiger"],
        "model": "mobilenet",
        "total_time_ms": None,
    }
    assert prediction_table(Path("a.jpg"), odd).splitlines() == [
        "a.jpg",
        "     1    [7]  None        ?",
        "  model ? version ? (?), None ms",
    ]
    assert prediction_table(Path("a.jpg"), ["not", "an", "answer"]).splitlines() == [
        "a.jpg",
        "  model ? version ? (?), ? ms",
    ]
    assert untrained_warning({"model": ["untrained"]}) is None
    assert untrained_warning("untrained") is None


def test_a_models_document_with_odd_fields_still_outlines() -> None:
    document = {
        "default_model": "mobilenet",
        "models": [
            "broken",
            {"name": "mobilenet", "labels": ["stable"], "versions": {"1": "AVAILABLE"}},
            {"name": "resnet", "versions": [{"version": 3, "labels": "canary"}, 4]},
        ],
    }
    assert models_outline(document) == [
        "default model: mobilenet",
        "mobilenet: ",
        "resnet: ",
        "  version 3  ?  labels: canary  weights: ? (?)",
    ]
    assert outline({"checks": [{}, {"passed": True}]}) == [
        "checks:",
        "  - {}",
        "  - passed: true",
    ]


def test_an_unexpected_answer_keeps_its_status_in_the_failure_line() -> None:
    answer = Answer(status=200, body=[1]).checked(lambda body: "a JSON list, not a JSON object")
    assert not answer.ok
    assert failure_line(Path("a.jpg"), answer) == (
        "a.jpg: 200 unexpected answer from the gateway: a JSON list, not a JSON object"
    )
    # Only a 2xx is checked: a problem document is reported as the gateway worded it.
    refused = Answer(status=401, body=UNAUTHORIZED)
    assert refused.checked(lambda body: "never asked") is refused
