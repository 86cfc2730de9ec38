"""--monitoring_config_file: TF Serving's Prometheus page on the REST port, counting truthfully.

Expected behaviour: docs/tf-serving-protocol.md §15 (util/prometheus_exporter.cc,
model_servers/http_server.cc, prediction_service_impl.cc, servables/tensorflow/util.cc).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from double_process import Double, serve, write_config, write_models

PATH = "/monitoring/prometheus/metrics"
COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("monitoring"), {"half": [1]})


@pytest.fixture(scope="module")
def double(store: Path, grpc_port: int) -> Iterator[Double]:
    monitoring = write_config(
        store / "monitoring.config", f'prometheus_config {{ enable: true path: "{PATH}" }}\n'
    )
    process = Double(
        store / "double.log",
        "--model_name=half",
        f"--model_base_path={store / 'half'}",
        f"--port={grpc_port}",
        f"--monitoring_config_file={monitoring}",
    )
    yield from serve(process)


def scrape(client: httpx.Client, double: Double) -> Samples:
    response = client.get(double.url + PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            # prometheus_client names a counter's sample NAME_total; the page says NAME.
            name = family.name if family.type == "counter" else sample.name
            samples[(name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grpc_predict(channel: grpc.Channel, label: str = "") -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def test_requests_are_counted_by_model_and_status(
    double: Double, client: httpx.Client, grpc_port: int
) -> None:
    before = scrape(client, double)
    predict = f"{double.url}/v1/models/half:predict"
    for _ in range(3):
        assert client.post(predict, json={"instances": [[1.0]]}).status_code == 200
    missing = client.post(
        f"{double.url}/v1/models/half/versions/9:predict", json={"instances": [[1.0]]}
    )
    assert missing.status_code == 404
    assert client.get(f"{double.url}/v1/models/half").status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        grpc_predict(channel)
        grpc_predict(channel)
        with pytest.raises(grpc.RpcError):
            grpc_predict(channel, label="nightly")
    after = scrape(client, double)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew(COUNT, model_name="half", status="OK") == 6
    assert grew(COUNT, model_name="half", status="NOT_FOUND") == 1
    assert grew(COUNT, model_name="half", status="INVALID_ARGUMENT") == 1
    latency = REQUEST_LATENCY + "_count"
    assert grew(latency, model_name="half", API="predict", entrypoint="REST") == 3
    assert grew(latency, model_name="half", API="", entrypoint="REST") == 1
    assert grew(latency, model_name="half", API="Predict", entrypoint="GRPC") == 2
    assert grew(RUNTIME_LATENCY + "_count", model_name="half", API="Predict", runtime="TF1") == 5
    runs = sample(
        after, RUNTIME_LATENCY + "_count", model_name="half", API="Predict", runtime="TF1"
    )
    infinite = sample(
        after,
        RUNTIME_LATENCY + "_bucket",
        model_name="half",
        API="Predict",
        runtime="TF1",
        le="+Inf",
    )
    assert infinite == runs


def test_page_has_tf_serving_names_and_buckets(double: Double, client: httpx.Client) -> None:
    assert client.post(f"{double.url}/v1/models/half:predict", json={"instances": [[1.0]]})
    page = client.get(double.url + PATH).text
    assert f"# TYPE {COUNT} counter" in page
    assert f"# TYPE {REQUEST_LATENCY} histogram" in page
    assert "# HELP" not in page
    buckets = [
        line
        for line in page.splitlines()
        if line.startswith(REQUEST_LATENCY + '_bucket{model_name="half",API="predict"')
    ]
    limits = [line.split('le="')[1].split('"')[0] for line in buckets]
    assert len(limits) == 34
    assert limits[:6] == ["10", "18", "32.4", "58.32", "104.976", "188.957"]
    assert limits[-1] == "+Inf"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_page_passes_promtool(double: Double, client: httpx.Client) -> None:
    assert client.post(f"{double.url}/v1/models/half:predict", json={"instances": [[1.0]]})
    page = client.get(double.url + PATH).text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, text=True, timeout=30
    )
    # Exit 1 is a page that does not parse; 3 only style lints, which TF Serving's own names
    # draw (':' in names, a counter ending in _count without _total, no HELP lines).
    assert result.returncode in (0, 3), result.stdout + result.stderr
    accepted = ("no help text", "should not contain ':'", '"_total" suffix', '"_count" suffix')
    lints = (result.stdout + result.stderr).splitlines()
    assert [line for line in lints if not any(text in line for text in accepted)] == []


def test_query_string_is_refused(double: Double, client: httpx.Client) -> None:
    response = client.get(f"{double.url}{PATH}?x=1")
    assert response.status_code == 400
    assert response.text == f"Unexpected path: {PATH}?x=1. Should be {PATH}"


def test_empty_path_means_the_default_one(
    store: Path, tmp_path: Path, client: httpx.Client
) -> None:
    monitoring = write_config(tmp_path / "monitoring.config", "prometheus_config { enable: true }")
    process = Double(
        tmp_path / "default.log",
        "--model_name=half",
        f"--model_base_path={store / 'half'}",
        f"--monitoring_config_file={monitoring}",
    )
    try:
        process.wait_ready()
        response = client.get(process.url + "/monitoring/prometheus/metrics")
        assert response.status_code == 200
        assert f"# TYPE {COUNT} counter" in response.text
    finally:
        assert process.stop() == 0
