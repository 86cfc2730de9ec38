"""The request metrics TF Serving exports, counted by the double, and their Prometheus page.

What is counted, where, and under which labels, follows TF Serving:
- `/tensorflow/serving/request_count` {model_name, status}: every REST request
  that reaches the /v1 handler (model_servers/http_server.cc `ProcessRequest`;
  the model name as decoded from the path, "" when the path did not parse) and
  every gRPC Predict (prediction_service_impl.cc); status is the
  tensorflow.error.Code name. gRPC GetModelMetadata and GetModelStatus are not
  counted.
- `/tensorflow/serving/request_latency` {model_name, API, entrypoint}: the same
  requests, successful ones only, in microseconds; API is the REST verb
  ("predict", "" for GET) or "Predict" over gRPC; entrypoint "REST" or "GRPC".
- `/tensorflow/serving/runtime_latency` {model_name, API, runtime}: the model
  run of a successful predict, "Predict" / "TF1" (servables/tensorflow/predict_util.cc).
Both latencies are TensorFlow Samplers with `Buckets::Exponential(10, 1.8, 33)`
(servables/tensorflow/util.cc): limits 10 x 1.8^i, then DBL_MAX; a value
lands in the first bucket whose limit is greater than it.

The page follows util/prometheus_exporter.cc: metrics in name order, every
character of the name outside [a-zA-Z0-9_] turned into ':' (so
`:tensorflow:serving:request_count`), a `# TYPE` line and no `# HELP`;
counters as integers; histogram buckets cumulative with limits and `_sum`
printed like absl::StrCat (six significant digits), the last bucket `+Inf`.
Label values escape backslash and double quote. Reference:
docs/tf-serving-protocol.md §15.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

REQUEST_COUNT = "/tensorflow/serving/request_count"
REQUEST_LATENCY = "/tensorflow/serving/request_latency"
RUNTIME_LATENCY = "/tensorflow/serving/runtime_latency"
_LABELS = {
    REQUEST_COUNT: ("model_name", "status"),
    REQUEST_LATENCY: ("model_name", "API", "entrypoint"),
    RUNTIME_LATENCY: ("model_name", "API", "runtime"),
}
_BUCKET_LIMITS = [10 * 1.8**i for i in range(33)]
_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[str, ...]


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKET_LIMITS) + 1))
    total: float = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_right(_BUCKET_LIMITS, value)] += 1
        self.total += value


class Metrics:
    """Thread-safe counters and histograms, one set per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, int]] = {REQUEST_COUNT: {}}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {
            REQUEST_LATENCY: {},
            RUNTIME_LATENCY: {},
        }

    def record_request(
        self, model_name: str, api: str, entrypoint: str, code: str, micros: int
    ) -> None:
        """Count one request with its outcome; time it if it succeeded (RecordRequestLatency)."""
        with self._lock:
            counts = self._counters[REQUEST_COUNT]
            key = (model_name, code)
            counts[key] = counts.get(key, 0) + 1
            if code == "OK":
                self._sample(REQUEST_LATENCY, (model_name, api, entrypoint), micros)

    @contextmanager
    def runtime(self, model_name: str) -> Iterator[None]:
        """Time a model run; only one that succeeds is recorded (RecordRuntimeLatency)."""
        start = time.perf_counter()
        yield
        micros = int((time.perf_counter() - start) * 1e6)
        with self._lock:
            self._sample(RUNTIME_LATENCY, (model_name, "Predict", "TF1"), micros)

    def counter_value(self, name: str) -> int:
        """The value of a counter's first point, 0 if none (model_service_impl.cc `GetMetrics`)."""
        with self._lock:
            points = self._counters.get(name, {})
            return points[min(points)] if points else 0

    def page(self) -> str:
        """The Prometheus text page (PrometheusExporter::GeneratePage)."""
        lines: list[str] = []
        with self._lock:
            for name in sorted([*self._counters, *self._histograms]):
                metric = _NAME_CHARACTERS.sub(":", name)
                if name in self._counters:
                    lines.append(f"# TYPE {metric} counter")
                    for labels, value in sorted(self._counters[name].items()):
                        lines.append(f"{metric}{{{_render(name, labels)}}} {value}")
                else:
                    lines.append(f"# TYPE {metric} histogram")
                    for labels, histogram in sorted(self._histograms[name].items()):
                        lines.extend(_histogram_lines(metric, _render(name, labels), histogram))
        return "\n".join(lines) + "\n"

    def _sample(self, name: str, labels: Labels, value: float) -> None:
        self._histograms[name].setdefault(labels, _Histogram()).add(value)


def _histogram_lines(metric: str, labels: str, histogram: _Histogram) -> Iterator[str]:
    prefix = f"{metric}_bucket{{{labels},"
    cumulative = 0
    for index, count in enumerate(histogram.counts):
        cumulative += count
        limit = _number(_BUCKET_LIMITS[index]) if index < len(_BUCKET_LIMITS) else "+Inf"
        yield f'{prefix}le="{limit}"}} {cumulative}'
    yield f"{metric}_sum{{{labels}}} {_number(histogram.total)}"
    yield f"{metric}_count{{{labels}}} {cumulative}"


def _render(name: str, values: Labels) -> str:
    pairs = zip(_LABELS[name], values, strict=True)
    return ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _number(value: float) -> str:
    """Format like absl::StrCat(double): %g with six significant digits."""
    return f"{value:.6g}"
