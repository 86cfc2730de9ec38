"""The dashboard and the alerts, evaluated by a real Prometheus scraping a live stack.

Debian's `prometheus` binary runs deploy/prometheus/prometheus.yml with only the
targets, the key file and the intervals changed (1 s, so the test waits seconds,
not minutes). It scrapes a gateway with API keys on, a canary split and shadow
traffic, and the TF Serving double serving two versions of one model from a
models.config and a monitoring.config. After real traffic (successes on both
labels, errors of several codes) every dashboard expression and every alert's
measure must return data through Prometheus' HTTP API, and every series the
dashboard names must be one Prometheus has scraped. A panel that shows nothing
in production fails here instead.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import text_format

from gateway.tfserving.protos.model_server_config_pb2 import ModelServerConfig
from processes import (
    MODEL_NAME,
    ROOT,
    Process,
    answers,
    child_env,
    free_port,
    gateway_for,
    set_faults,
    tfserving_double,
    wait_until,
)
from test_deployment_files import MODELS_CONFIG_FILE, MONITORING_CONFIG_FILE
from test_monitoring_files import (
    SERIES,
    THRESHOLD,
    alert_rules,
    dashboard,
    dashboard_exprs,
    runnable_prometheus_config,
    write_yaml,
)

API_KEY = "monitoring-test-key"
# Grafana fills these before it sends a query; Prometheus needs values.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
SUCCESSES_PER_LABEL = 6
SPLIT_SUCCESSES = 8


def dashboard_queries() -> list[Any]:
    """One pytest param per dashboard target, named by its panel and refId."""
    return [
        pytest.param(target["expr"], id=f"{panel['id']}{target['refId']}-{panel['title'][:40]}")
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def alert_measures() -> list[Any]:
    """One pytest param per alert: its expression without the threshold comparison."""
    return [
        pytest.param(THRESHOLD.sub("", rule["expr"]), id=rule["alert"]) for rule in alert_rules()
    ]


def for_prometheus(expr: str) -> str:
    """The expression as Grafana sends it, its variables filled."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def serving_root(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mobilenet versions 1 and 2 (the same export twice): a stable and a canary."""
    root = tmp_path_factory.mktemp("monitored-models")
    for version in ("1", "2"):
        shutil.copytree(model_root / MODEL_NAME / "1", root / MODEL_NAME / version)
    return root


@pytest.fixture(scope="module")
def models_config(serving_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/tfserving/models.config's mobilenet entry, moved to this tree, canary on 2."""
    config = ModelServerConfig()
    text_format.Parse(MODELS_CONFIG_FILE.read_text(encoding="utf-8"), config)
    (entry,) = [c for c in config.model_config_list.config if c.name == MODEL_NAME]
    entry.base_path = str(serving_root / MODEL_NAME)
    del entry.model_version_policy.specific.versions[:]
    entry.model_version_policy.specific.versions.extend([1, 2])
    entry.version_labels["stable"] = 1
    entry.version_labels["canary"] = 2
    del config.model_config_list.config[:]
    config.model_config_list.config.append(entry)
    path = tmp_path_factory.mktemp("tfserving-config") / "models.config"
    path.write_text(text_format.MessageToString(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def monitored_double(serving_root: Path, models_config: Path, logs: Path) -> Iterator[Process]:
    """The double with compose's --model_config_file and --monitoring_config_file flags."""
    process = tfserving_double(
        serving_root / MODEL_NAME,
        logs / "double-monitored.log",
        model_config_file=str(models_config),
        monitoring_config_file=str(MONITORING_CONFIG_FILE),
        # As compose passes it: the start-up config labels versions not yet loaded.
        allow_version_labels_for_unavailable_models="true",
    )
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def monitored_gateway(
    monitored_double: Process,
    serving_root: Path,
    models_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[Process]:
    """A gateway with API keys, the models.config, and a 50/50 canary split shadowed to canary."""
    routing = tmp_path_factory.mktemp("routing") / "routing.json"
    routing.write_text(
        json.dumps(
            {
                "models": {
                    MODEL_NAME: {
                        "split": [
                            {"label": "stable", "weight": 50},
                            {"label": "canary", "weight": 50},
                        ],
                        "shadow": {"label": "canary", "fraction": 1.0},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    process = gateway_for(
        monitored_double,
        serving_root,
        logs / "gateway-monitored.log",
        API_KEYS=API_KEY,
        MODEL_CONFIG_FILE=str(models_config),
        ROUTING_FILE=str(routing),
        GOLDEN_CHECK_SECONDS="1",
        # The drift gauge appears once a version has seen a full window of answers.
        DRIFT_WINDOW="5",
    )
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def prometheus(
    monitored_gateway: Process,
    monitored_double: Process,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[str]:
    """Debian's prometheus on deploy/prometheus/prometheus.yml, pointed at the live processes."""
    executable = shutil.which("prometheus")
    if executable is None:
        pytest.fail("prometheus is missing: apt-get install prometheus (.ci/run installs it)")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = runnable_prometheus_config(workdir, API_KEY)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {
        "gateway": monitored_gateway.url.removeprefix("http://"),
        "tensorflow-serving": monitored_double.url.removeprefix("http://"),
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config_path = write_yaml(config, workdir / "prometheus.yml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = Process(
        [
            executable,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        child_env(),
        logs / "prometheus.log",
        ready=answers(f"{url}/-/ready", 200),
        url=url,
    )
    yield process.start(timeout=60).url
    process.stop()


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """Evaluate an instant query; fail on a PromQL error, return the result vector."""
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scalar(prometheus_url: str, expr: str) -> float | None:
    result = query(prometheus_url, expr)
    return float(result[0]["value"][1]) if result else None


def predict(gateway: Process, *, key: str | None = API_KEY, **params: str) -> httpx.Response:
    """POST the cat to /predict with these query parameters."""
    headers = {"X-API-Key": key} if key else {}
    files = {"file": ("cat.jpg", (ROOT / "test" / "cat.jpg").read_bytes(), "image/jpeg")}
    response = httpx.post(
        f"{gateway.url}/predict", params=params, files=files, headers=headers, timeout=30
    )
    return response


def expect(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text


@pytest.fixture(scope="module")
def scraped(prometheus: str, monitored_gateway: Process, monitored_double: Process) -> str:
    """Drive traffic of every kind through the gateway, then wait until Prometheus holds it."""
    sent = 0

    def routed(label: str) -> bool:
        nonlocal sent
        sent += 1
        return predict(monitored_gateway, label=label).status_code == 200

    # Ready is "a version is AVAILABLE"; the labels may arrive a moment later.
    # Every attempt is counted: the 404s are part of the traffic Prometheus sees.
    wait_until(
        lambda: routed("stable") and routed("canary"),
        timeout=20,
        what="the gateway to route both labels",
    )
    for label in ("stable", "canary"):
        for _ in range(SUCCESSES_PER_LABEL):
            expect(predict(monitored_gateway, label=label), 200)
            sent += 1
    for _ in range(SPLIT_SUCCESSES):
        expect(predict(monitored_gateway), 200)
        sent += 1
    # Errors of several codes: the client's and the server's.
    not_an_image = httpx.post(
        f"{monitored_gateway.url}/predict",
        files={"file": ("notes.txt", b"just text", "text/plain")},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert not_an_image.status_code == 415
    expect(predict(monitored_gateway, top_k="0"), 422)
    expect(predict(monitored_gateway, key=None), 401)
    expect(predict(monitored_gateway, model="no_such_model"), 404)
    set_faults(monitored_double, error={"status": 500, "message": "injected by the test"})
    try:
        expect(predict(monitored_gateway, label="stable"), 502)
    finally:
        httpx.delete(f"{monitored_double.control_url}/faults").raise_for_status()
    sent += 5
    # Prometheus has the traffic once its last scrape of the counter adds up.
    wait_until(
        lambda: scalar(prometheus, "sum(gateway_predict_requests_total)") == sent,
        timeout=30,
        what=f"Prometheus to scrape all {sent} requests",
    )
    wait_until(
        lambda: scalar(prometheus, 'min(up{job="tensorflow-serving"})') == 1,
        timeout=30,
        what="Prometheus to scrape TF Serving's metrics",
    )
    # rate() needs two samples after the traffic; the rules, one evaluation.
    scrapes = scalar(prometheus, 'count_over_time(up{job="gateway"}[1h])') or 0.0
    wait_until(
        lambda: (scalar(prometheus, 'count_over_time(up{job="gateway"}[1h])') or 0) >= scrapes + 2,
        timeout=30,
        what="two more scrapes",
    )
    return prometheus


def test_gateway_scrape_is_authorized(scraped: str) -> None:
    # The bearer token from credentials_file got through the gateway's API keys.
    assert scalar(scraped, 'up{job="gateway"}') == 1


@pytest.mark.parametrize("expr", dashboard_queries())
def test_dashboard_expression_returns_data(scraped: str, expr: str) -> None:
    assert query(scraped, for_prometheus(expr)), f"no data for {expr}"


@pytest.mark.parametrize("expr", alert_measures())
def test_alert_measure_returns_data(scraped: str, expr: str) -> None:
    assert query(scraped, expr), f"no data for {expr}"


def test_dashboard_series_are_all_scraped(scraped: str) -> None:
    response = httpx.get(f"{scraped}/api/v1/label/__name__/values", timeout=10)
    known = set(response.json()["data"])
    used = {name for expr in dashboard_exprs() for name in SERIES.findall(expr)}
    assert used - known == set()


def test_rules_load_and_evaluate_cleanly(scraped: str) -> None:
    groups = httpx.get(f"{scraped}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {param.id for param in alert_measures()}
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_canary_split_shows_both_labels(scraped: str) -> None:
    result = query(scraped, "sum by (label, version) (gateway_predictions_total)")
    seen = {(sample["metric"]["label"], sample["metric"]["version"]) for sample in result}
    assert {("stable", "1"), ("canary", "2")} <= seen
