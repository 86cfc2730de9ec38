"""The gateway's own per-stage timings, read from /metrics/prometheus before and after a run."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

_STAGES = {
    "decode": "gateway_decode_seconds",
    "inference": "gateway_inference_seconds",
    "request": "gateway_request_seconds",
}


def read_stage_totals(base_url: str) -> dict[str, tuple[float, float]] | None:
    """(sum of seconds, count) per stage, or None when the server has no such metrics."""
    try:
        response = httpx.get(f"{base_url}/metrics/prometheus", timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    # Unlabelled samples only: the histograms' _sum and _count (their buckets carry `le`).
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }
    totals = {}
    for stage, metric in _STAGES.items():
        if f"{metric}_count" not in values:
            return None
        totals[stage] = (values[f"{metric}_sum"], values[f"{metric}_count"])
    return totals


def stage_means_ms(
    before: dict[str, tuple[float, float]] | None, after: dict[str, tuple[float, float]] | None
) -> dict[str, float]:
    """Mean milliseconds per stage over the requests between two readings."""
    if before is None or after is None:
        return {}
    means = {}
    for stage, (total, count) in after.items():
        earlier_total, earlier_count = before[stage]
        if count > earlier_count:
            means[stage] = (total - earlier_total) / (count - earlier_count) * 1000.0
    return means
