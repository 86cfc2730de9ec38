"""What operators and orchestrators read from the stack: the probes, the metrics, /model.

Liveness and readiness are what compose's and Kubernetes' health checks ask;
the JSON metrics and the Prometheus page are what dashboards scrape. Counters
are compared before and after a request of the test's own, since other tests
(and, in a deployment, other clients) share them.
"""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from processes import wait_until
from routing_helpers import ServedModel, predict, sample_values


def test_liveness_needs_no_key(stack: httpx.Client) -> None:
    # A client of its own: the session's sends the API key.
    with httpx.Client(base_url=stack.base_url, timeout=10) as anonymous:
        response = anonymous.get("/health/live")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "alive"
    assert body["uptime_seconds"] > 0


def test_readiness_is_health(stack: httpx.Client, default_model: str) -> None:
    ready = stack.get("/health/ready")
    health = stack.get("/health")
    assert (ready.status_code, health.status_code) == (200, 200)
    for body in (ready.json(), health.json()):
        assert body["status"] == "healthy"
        assert body["ready"] is True
        assert body["tf_serving"] == "connected"
        assert body["served_model"]["name"] == default_model
        assert body["served_model"]["state"] == "AVAILABLE"


def test_every_served_version_passes_its_golden_check(
    stack: httpx.Client, compose_models: tuple[ServedModel, ...]
) -> None:
    expected = sorted(
        (model.name, version) for model in compose_models for version in model.versions
    )
    seen: list[tuple[str, int]] = []

    def all_passed() -> bool:
        checks = stack.get("/health").json().get("golden_checks", [])
        seen[:] = sorted((c["model"], c["version"]) for c in checks if c["passed"] is True)
        return seen == expected

    # The gateway opens a lane per version ahead of requests; each replays its answer.
    wait_until(all_passed, timeout=60, what=f"golden checks of {expected} to pass")


def test_json_metrics_count_a_prediction(
    stack: httpx.Client, cat_jpeg: bytes, default_model: str
) -> None:
    before = stack.get("/metrics").json()
    assert predict(stack, cat_jpeg).status_code == 200
    after = stack.get("/metrics").json()
    assert after["service"] == "ml-inference-gateway"
    assert after["model"] == default_model
    assert after["requests_total"] >= before["requests_total"] + 1
    assert after["successful_requests_total"] >= before["successful_requests_total"] + 1
    assert (
        after["requests_by_outcome"]["success"]
        >= before["requests_by_outcome"].get("success", 0) + 1
    )
    assert after["average_inference_time_ms"] > 0
    served = str(stack.get("/health").json()["served_model"]["version"])
    # /metrics names the version its lane last learned, without asking TF Serving.
    wait_until(
        lambda: stack.get("/metrics").json()["model_version"] == served,
        timeout=30,
        what=f"/metrics to name version {served}",
    )


def test_prometheus_page_counts_predictions_by_model_and_version(
    stack: httpx.Client, cat_jpeg: bytes, default_model: str
) -> None:
    version = predict(stack, cat_jpeg).headers["X-Model-Version"]
    response = stack.get("/metrics/prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "gateway_predict_requests",
        "gateway_request_seconds",
        "gateway_model_ready",
    } <= families
    successes = [
        v
        for labels, v in sample_values(response.text, "gateway_predict_requests_total")
        if labels["outcome"] == "success"
    ]
    assert len(successes) == 1
    assert successes[0] >= 1
    assert [v for _, v in sample_values(response.text, "gateway_model_ready")] == [1.0]
    answered = sum(
        value
        for labels, value in sample_values(response.text, "gateway_predictions_total")
        if (labels["model"], labels["version"]) == (default_model, version)
    )
    assert answered >= 1


def test_model_describes_the_default_version(stack: httpx.Client, default_model: str) -> None:
    body = stack.get("/model").json()
    health = stack.get("/health").json()
    assert body["name"] == default_model
    assert body["version"] == health["served_model"]["version"]
    assert body["state"] == "AVAILABLE"
    assert body["backend"] == "tfserving"
    assert body["weights"] in {"trained", "untrained"}
    assert body["signature"]["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 224, 224, 3]}}
    assert body["signature"]["outputs"] == {
        "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
    }
