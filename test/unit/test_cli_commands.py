"""gateway/cli/commands.py through `main`: health, models and metrics, printed and exit-coded."""

import json
from typing import Any

import httpx
import pytest

from gateway.cli.__main__ import main

URL = "http://gateway.test"
HEALTHY = {
    "status": "healthy",
    "ready": True,
    "backend": "embedded",
    "served_model": {"name": "mobilenet", "version": 1},
}
NOT_READY = {
    "status": "unhealthy",
    "ready": False,
    "backend": "tfserving",
    "error": "no version is AVAILABLE (state LOADING)",
}
UNAUTHORIZED = {
    "title": "Missing or unknown API key",
    "status": 401,
    "detail": "Send a valid API key in the X-API-Key header (or Authorization: Bearer).",
    "code": "unauthorized",
}


def run(argv: list[str], routes: dict[str, httpx.Response]) -> int:
    """`main` against a gateway that answers each path from `routes` (404 otherwise)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return routes.get(request.url.path, httpx.Response(404, json={"title": "Not Found"}))

    return main([*argv, "--url", URL], transport=httpx.MockTransport(handler))


def test_health_exits_0_and_prints_the_document_when_healthy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["health"], {"/health": httpx.Response(200, json=HEALTHY)}) == 0
    assert capsys.readouterr().out.splitlines() == [
        "status: healthy",
        "ready: true",
        "backend: embedded",
        "served_model:",
        "  name: mobilenet",
        "  version: 1",
    ]


def test_health_exits_1_when_not_ready_and_still_prints_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["health", "--json"], {"/health": httpx.Response(503, json=NOT_READY)}) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == NOT_READY
    assert captured.err == "/health: 503 no version is AVAILABLE (state LOADING)\n"


def test_health_of_an_unreachable_gateway_exits_1_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    assert main(["health", "--url", URL], transport=httpx.MockTransport(refuse)) == 1
    assert capsys.readouterr().err == f"/health: could not connect to {URL}: Connection refused\n"


def test_models_print_one_line_per_version_or_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    document: dict[str, Any] = {
        "default_model": "mobilenet",
        "models": [
            {
                "name": "mobilenet",
                "default": True,
                "version_policy": "all versions",
                "labels": {},
                "versions": [
                    {"version": 2, "state": "AVAILABLE", "labels": [], "weights": "trained"}
                ],
            }
        ],
    }
    routes = {"/models": httpx.Response(200, json=document)}
    assert run(["models"], routes) == 0
    assert capsys.readouterr().out.splitlines() == [
        "default model: mobilenet",
        "mobilenet (default): all versions",
        "  version 2  AVAILABLE  labels: -  weights: trained (?)",
    ]
    assert run(["models", "--json"], routes) == 0
    assert json.loads(capsys.readouterr().out) == document


def test_models_behind_a_key_exit_1_with_the_401_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["models"], {"/models": httpx.Response(401, json=UNAUTHORIZED)}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"/models: 401 Missing or unknown API key: {UNAUTHORIZED['detail']}\n"


def test_metrics_as_json_or_as_the_prometheus_page(capsys: pytest.CaptureFixture[str]) -> None:
    page = "# HELP gateway_requests_total Requests.\ngateway_requests_total 3.0\n"
    routes = {
        "/metrics": httpx.Response(200, json={"requests_total": 3}),
        "/metrics/prometheus": httpx.Response(200, text=page),
    }
    assert run(["metrics"], routes) == 0
    assert json.loads(capsys.readouterr().out) == {"requests_total": 3}
    assert run(["metrics", "--prometheus"], routes) == 0
    assert capsys.readouterr().out == page


@pytest.mark.parametrize(
    ("argv", "path", "answer", "fault"),
    [
        (["health"], "/health", httpx.Response(200, text="OK"), 'text "OK", not a JSON object'),
        (["health"], "/health", httpx.Response(200, json={"ok": True}), 'no "status" field'),
        (["models"], "/models", httpx.Response(200, json=[]), "a JSON list, not a JSON object"),
        (["models"], "/models", httpx.Response(200, json={"models": 3}), 'no "models" list'),
        (
            ["models"],
            "/models",
            httpx.Response(200, json={"models": [None]}),
            "model 1 is the JSON value null, not an object",
        ),
        (["metrics"], "/metrics", httpx.Response(200, json=[1]), "a JSON list, not a JSON object"),
        (
            ["metrics", "--prometheus"],
            "/metrics/prometheus",
            httpx.Response(200, json={"requests_total": 3}),
            "a JSON object, not the Prometheus text page",
        ),
    ],
)
def test_a_2xx_that_is_not_the_document_asked_for_exits_1_saying_so(
    argv: list[str],
    path: str,
    answer: httpx.Response,
    fault: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(argv, {path: answer}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{path}: 200 unexpected answer from the gateway: {fault}\n"
