"""The monitoring profile's files, checked by the tools that read them.

Prometheus' config and alert rules go through `promtool` (check config, check
rules, and the unit tests in deploy/prometheus/tests/); the Grafana dashboard
must be well-formed and name only the provisioned datasource; every series the
dashboard and the rules use must be one gateway/metrics.py exports (or TF
Serving's, or Prometheus' own `up`). The same expressions are run against a real
Prometheus in test/e2e/test_prometheus_monitoring.py, which reads the files
through this module's helpers (`alert_rules`, `dashboard`, `runnable_prometheus_config`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from ruamel.yaml import YAML

import gateway.metrics
from test_deployment_files import (
    MONITORING_CONFIG_FILE,
    ROOT,
    host_path_of,
    mounts_of,
    port_bindings,
    read_compose,
    tmpfs_bytes,
)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_FILE = PROMETHEUS_DIR / "rules" / "gateway.rules.yml"
RULES_TESTS = PROMETHEUS_DIR / "tests" / "gateway.rules.test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "gateway.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "ml-inference-pipeline.yml"
MONITORING_SERVICES = ("prometheus", "grafana")

# A series name as PromQL writes it; TF Serving's start with a colon
# (TFS/util/prometheus_exporter.cc turns "/" into ":").
SERIES = re.compile(r"(?<![\w:$])(gateway_\w+|:tensorflow:[\w:]+|up)(?![\w:(])")
# Every alert is "<measure> <comparison> <threshold>" (see the rules file).
THRESHOLD = re.compile(r"\s*(?:[<>]=?|[!=]=)\s*[-+]?[0-9.]+(?:e[-+]?\d+)?\s*$")


def yaml_file(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path)


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool; fail (never skip) when it is not installed."""
    executable = shutil.which("promtool")
    if executable is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    return subprocess.run(
        [executable, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def exported_series() -> set[str]:
    """Every series name the gateway exposes at /metrics/prometheus."""
    names: set[str] = set()
    for value in vars(gateway.metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for metric in value.describe():
            if metric.type == "counter":
                names.add(f"{metric.name}_total")
            elif metric.type == "histogram":
                names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(metric.name)
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml_file(RULES_FILE)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def runnable_prometheus_config(workdir: Path, api_key: str) -> dict[str, Any]:
    """prometheus.yml as Prometheus can load it here: its key file in `workdir`, rules found."""
    config = yaml_file(PROMETHEUS_CONFIG)
    key = workdir / "gateway-scrape-key"
    key.write_text(api_key + "\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key)
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    assert isinstance(config, dict)
    return config


def write_yaml(document: dict[str, Any], path: Path) -> Path:
    YAML(typ="safe", pure=True).dump(document, path)
    return path


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    checked = write_yaml(runnable_prometheus_config(tmp_path, "a-key"), tmp_path / "prometheus.yml")
    result = promtool("check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert f"{len(alert_rules())} rules found" in result.stdout


def test_alert_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml_file(RULES_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} == tested


def test_alerts_cover_errors_latency_readiness_and_drift() -> None:
    used = {name for rule in alert_rules() for name in SERIES.findall(rule["expr"])}
    for series in (
        "gateway_predict_requests_total",
        "gateway_request_seconds_bucket",
        "gateway_model_ready",
        "gateway_golden_check_passed",
        "gateway_class_drift",
    ):
        assert series in used, f"no alert on {series}"


def test_every_alert_is_a_measure_against_a_threshold() -> None:
    for rule in alert_rules():
        assert THRESHOLD.search(rule["expr"]), f"{rule['alert']}: end with `<op> <number>`"
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]


def test_series_used_are_the_ones_the_gateway_exports() -> None:
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    used = {name for expr in exprs for name in SERIES.findall(expr)}
    gateway_used = {name for name in used if name.startswith("gateway_")}
    assert gateway_used, "the regular expression finds no series: it is broken"
    assert gateway_used <= exported_series(), gateway_used - exported_series()


def test_dashboard_has_every_panel_the_runbook_names() -> None:
    used = {name for expr in dashboard_exprs() for name in SERIES.findall(expr)}
    for series in (
        "gateway_predict_requests_total",
        "gateway_stage_seconds_bucket",
        "gateway_batch_size_bucket",
        "gateway_predictions_total",
        "gateway_shadow_comparisons_total",
        "gateway_shadow_l1_distance_bucket",
        "gateway_class_drift",
        "gateway_golden_check_passed",
        "gateway_in_flight_requests",
        ":tensorflow:serving:request_count",
        ":tensorflow:serving:request_latency_bucket",
    ):
        assert series in used, f"the dashboard shows nothing of {series}"


def test_dashboard_is_well_formed_grafana() -> None:
    document = dashboard()
    assert re.fullmatch(r"[\w-]{1,40}", document["uid"])
    assert document["title"]
    assert isinstance(document["schemaVersion"], int)
    panels = document["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "state-timeline"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_names_only_the_provisioned_datasource() -> None:
    (datasource,) = yaml_file(DATASOURCES)["datasources"]
    provisioned = {"type": datasource["type"], "uid": datasource["uid"]}
    document = dashboard()
    references = [variable["datasource"] for variable in document["templating"]["list"]]
    for panel in document["panels"]:
        references.append(panel["datasource"])
        references.extend(target["datasource"] for target in panel["targets"])
    assert references
    for reference in references:
        assert reference == provisioned, f"{reference} is not the provisioned datasource"


def test_grafana_provisioning_points_at_the_compose_services() -> None:
    compose = read_compose()["services"]
    (datasource,) = yaml_file(DATASOURCES)["datasources"]
    prometheus_port = next(
        argument.rsplit(":", 1)[1]
        for argument in compose["prometheus"]["command"]
        if argument.startswith("--web.listen-address=")
    )
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml_file(DASHBOARD_PROVIDERS)["providers"]
    grafana = compose["grafana"]
    assert host_path_of(grafana, provider["options"]["path"]) == DASHBOARD.parent
    assert host_path_of(grafana, "/etc/grafana/provisioning/datasources") == DATASOURCES.parent


def test_prometheus_scrapes_the_gateway_and_tf_serving() -> None:
    compose = read_compose()
    jobs = {job["job_name"]: job for job in yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}
    gateway_job, serving_job = jobs["gateway"], jobs["tensorflow-serving"]
    assert gateway_job["metrics_path"] == "/metrics/prometheus"
    assert gateway_job["static_configs"] == [{"targets": ["gateway:8000"]}]
    assert serving_job["static_configs"] == [{"targets": ["tensorflow-serving:8501"]}]
    monitoring = MONITORING_CONFIG_FILE.read_text(encoding="utf-8")
    assert f'path: "{serving_job["metrics_path"]}"' in monitoring
    # The gateway's API keys: Prometheus sends one as a bearer token, read from
    # the file compose writes from PROMETHEUS_API_KEY.
    authorization = gateway_job["authorization"]
    assert authorization["type"] == "Bearer"
    prometheus = compose["services"]["prometheus"]
    targets = {entry["target"]: entry["source"] for entry in prometheus["configs"]}
    source = targets[authorization["credentials_file"]]
    assert compose["configs"][source]["content"] == "${PROMETHEUS_API_KEY:-}"


@pytest.mark.parametrize("name", MONITORING_SERVICES)
def test_monitoring_service_is_opt_in_pinned_and_hardened(name: str) -> None:
    service = read_compose()["services"][name]
    assert service["profiles"] == ["monitoring"]
    repository, _, tag = service["image"].partition(":")
    assert repository in {"prom/prometheus", "grafana/grafana"}
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{service['image']} is not an exact release"
    assert service["read_only"] is True
    assert tmpfs_bytes(service, "/tmp") > 0
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert int(str(service["user"]).split(":")[0]) != 0
    assert service["deploy"]["resources"]["limits"]["memory"]
    assert "ml-network" in service["networks"]
    # Neither has authentication worth trusting on a shared interface.
    bindings = port_bindings(service)
    assert len(bindings) == 1
    assert all(host == "127.0.0.1" for host, _, _ in bindings)


def test_monitoring_configuration_is_mounted_read_only() -> None:
    compose = read_compose()["services"]
    prometheus_mounts = {
        target: read_only
        for source, target, read_only in mounts_of(compose["prometheus"])
        if source.startswith("./")
    }
    assert prometheus_mounts == {"/etc/prometheus": True}
    grafana_mounts = {
        target: read_only
        for source, target, read_only in mounts_of(compose["grafana"])
        if source.startswith("./")
    }
    assert grafana_mounts == {"/etc/grafana/provisioning": True, "/etc/grafana/dashboards": True}
