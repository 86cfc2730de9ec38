"""One measured run summarised: how many, how fast, and the latency percentiles."""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """Throughput and latency of one fixed-time run (latencies in milliseconds)."""

    calls: int  # requests sent or model calls made
    items: int  # images answered successfully
    failures: int  # non-200 answers, connection errors and timeouts
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def per_second(self) -> float:
        """Images (= successful requests) per second."""
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The fields plus the derived rate, for the results file."""
        return {**asdict(self), "per_second": round(self.per_second, 3)}


def summarise(
    latencies_ms: Sequence[float], items: int, failures: int, elapsed_s: float
) -> Measurement:
    """Summarise a run from its per-call latencies."""
    ordered = sorted(latencies_ms)
    return Measurement(
        calls=len(ordered),
        items=items,
        failures=failures,
        elapsed_s=elapsed_s,
        p50_ms=percentile(ordered, 50.0),
        p99_ms=percentile(ordered, 99.0),
        mean_ms=sum(ordered) / len(ordered) if ordered else math.nan,
    )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]
