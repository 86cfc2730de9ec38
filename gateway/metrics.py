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
    "POST /predict and /predict/batch requests by outcome: success or the error code returned",
    ["outcome"],
)
# A batch is one request above; each of its images is counted here, by its own outcome.
BATCH_IMAGES = Counter(
    "gateway_batch_images",
    "Images in POST /predict/batch requests by outcome: success or the image's error code",
    ["outcome"],
)
# How a POST /predict carried its image: a multipart form or the raw body.
UPLOAD_ENCODINGS = Counter(
    "gateway_upload_encodings",
    "POST /predict uploads by how the image was sent: multipart or raw",
    ["encoding"],
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
TF_SERVING_RETRIES = Counter(
    "gateway_tf_serving_retries",
    "gRPC predict calls sent once more after a failed first attempt, by its status: "
    "unavailable, not_found or deadline_exceeded",
    ["reason"],
)


# Per model and version: where a request's time goes, and how the models answer.
# `version` is the version that answered, as a string; `label` the version label
# the request was routed by ("" when it named none).
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
IN_FLIGHT = Gauge("gateway_in_flight_requests", "POST /predict requests being handled now")
STAGE_SECONDS = Histogram(
    "gateway_stage_seconds",
    "Time per request in each stage: upload, decode, queue, model, ranking, total",
    ["model", "stage"],
    buckets=_STAGE_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "gateway_queue_wait_seconds",
    "Time an image waits in the batcher before its model call starts",
    ["model"],
    buckets=_STAGE_BUCKETS,
)
BATCH_SIZE = Histogram(
    "gateway_batch_size",
    "Images per model call",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
OVERHEAD_SECONDS = Histogram(
    "gateway_overhead_seconds",
    "Gateway time per successful request: total minus the model call",
    ["model", "version"],
    buckets=_STAGE_BUCKETS,
)
PREDICTIONS = Counter(
    "gateway_predictions",
    "Successful predictions by the model and version that answered, and the label routed by",
    ["model", "version", "label"],
)
TOP1_CONFIDENCE = Histogram(
    "gateway_top1_confidence",
    "The top-1 probability of each prediction",
    ["model", "version"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
LOW_CONFIDENCE = Counter(
    "gateway_low_confidence_predictions",
    "Predictions whose top-1 probability is below LOW_CONFIDENCE_THRESHOLD",
    ["model", "version"],
)
CLASS_DRIFT = Gauge(
    "gateway_class_drift",
    "Distance (0 = same, 1 = disjoint) between recent top-1 classes and the reference distribution",
    ["model", "version"],
)
SHADOW_COMPARISONS = Counter(
    "gateway_shadow_comparisons",
    "Shadow requests answered, by whether the shadow's top-1 equals the primary's",
    ["model", "primary_version", "shadow_version", "top1"],
)
SHADOW_L1_DISTANCE = Histogram(
    "gateway_shadow_l1_distance",
    "L1 distance between the primary's and the shadow's probabilities",
    ["model", "primary_version", "shadow_version"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
)
SHADOW_SKIPPED = Counter(
    "gateway_shadow_skipped",
    "Shadow requests not made or not compared, by reason",
    ["model", "reason"],
)
SPLIT_FALLBACKS = Counter(
    "gateway_split_fallbacks",
    "Requests the canary split sent to a version or label not served, answered by the default",
    ["model"],
)
GOLDEN_CHECK_PASSED = Gauge(
    "gateway_golden_check_passed",
    "1 when the version's golden answer was reproduced end to end at the last check, else 0",
    ["model", "version"],
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
