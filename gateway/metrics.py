"""Where metrics are defined: once, at module level, in Prometheus' default registry.

`/metrics` answers JSON computed from these same series (the original
contract); `/metrics/prometheus` exposes them for scrapers.
"""

import time

from prometheus_client import Counter, Gauge, Histogram

PROCESS_STARTED = time.time()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PREDICT_REQUESTS = Counter(
    "gateway_predict_requests",
    "POST /predict requests by outcome: success or the error code returned",
    ["outcome"],
)
DECODE_SECONDS = Histogram(
    "gateway_decode_seconds",
    "Decoding and resizing one upload into model input",
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "gateway_inference_seconds",
    "Waiting for the model backend to score one image",
    buckets=_LATENCY_BUCKETS,
)
REQUEST_SECONDS = Histogram(
    "gateway_request_seconds",
    "Whole POST /predict handling, upload read to response",
    buckets=_LATENCY_BUCKETS,
)
TFLITE_CALLS = Counter(
    "gateway_tflite_calls",
    "Embedded TFLite model calls by interpreter: wide (all threads, the model was idle) "
    "or narrow (one of the copies that overlapping calls share the threads among)",
    ["interpreter"],
)
MODEL_READY = Gauge("gateway_model_ready", "1 when a model version is AVAILABLE, else 0")
DECODE_MEMORY_RESERVED = Gauge(
    "gateway_decode_memory_reserved_bytes",
    "Decode memory held by admitted decodes, out of DECODE_MEMORY_BUDGET_MB",
)


def record_model_ready(ready: bool) -> None:
    """Set gateway_model_ready from a readiness just learned (the status poller's or /health's)."""
    MODEL_READY.set(1 if ready else 0)


def counts_by_outcome() -> dict[str, int]:
    """Current /predict counts keyed by outcome."""
    counts: dict[str, int] = {}
    for metric in PREDICT_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["outcome"]] = int(sample.value)
    return counts


def histogram_mean_ms(histogram: Histogram) -> float | None:
    """Mean of a histogram in milliseconds, or None before its first observation."""
    total = count = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return round(total / count * 1000.0, 2) if count else None
