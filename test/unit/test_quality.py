"""Quality signals: low confidence flagged and counted, class drift against a baseline, bounded."""

import random
from collections import Counter
from itertools import count

import numpy as np
import pytest
from prometheus_client import REGISTRY

from gateway.metrics import CLASS_DRIFT
from gateway.quality import QualityMonitor

CLASSES = 1001
_models = count()


def fresh_model() -> str:
    """A model name no other test used: the metrics are process-wide."""
    return f"qualitytest{next(_models)}"


def sample(name: str, model: str, version: int) -> float | None:
    return REGISTRY.get_sample_value(name, {"model": model, "version": str(version)})


def drift(model: str, version: int) -> float | None:
    # The gauge alone, not the whole registry: this is read thousands of times.
    wanted = {"model": model, "version": str(version)}
    for metric in CLASS_DRIFT.collect():
        for point in metric.samples:
            if point.labels == wanted:
                return point.value
    return None


def answer(top1: int, confidence: float = 0.9) -> np.ndarray:
    """Probabilities over CLASSES with `top1` first at `confidence`, the rest spread evenly."""
    probs = np.full(CLASSES, (1.0 - confidence) / (CLASSES - 1), dtype=np.float32)
    probs[top1] = confidence
    return probs


def total_variation(window: list[int], reference: dict[int, float]) -> float:
    """The distance computed the slow, obvious way."""
    shares = {k: n / len(window) for k, n in Counter(window).items()}
    total = sum(reference.values())
    ref = {k: v / total for k, v in reference.items()}
    return 0.5 * sum(abs(shares.get(k, 0.0) - ref.get(k, 0.0)) for k in shares.keys() | ref.keys())


def test_a_top1_below_the_threshold_is_flagged_and_counted() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=10)
    assert monitor.observe(model, 1, answer(3, confidence=0.4))
    assert not monitor.observe(model, 1, answer(3, confidence=0.5))  # below, not at
    assert not monitor.observe(model, 1, answer(3, confidence=0.9))
    assert sample("gateway_low_confidence_predictions_total", model, 1) == 1
    assert sample("gateway_top1_confidence_count", model, 1) == 3
    assert sample("gateway_top1_confidence_sum", model, 1) == pytest.approx(1.8)
    assert sample("gateway_top1_confidence_bucket", model, 1) is None  # needs le=


def test_a_nan_answer_has_no_confidence() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.1, window=10)
    assert monitor.observe(model, 1, np.full(5, np.nan, dtype=np.float32))
    assert sample("gateway_top1_confidence_sum", model, 1) == 0.0


def test_a_batch_of_one_is_one_prediction() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=10)
    assert not monitor.observe(model, 1, answer(7).reshape(1, CLASSES))
    assert sample("gateway_top1_confidence_count", model, 1) == 1


def test_drift_appears_with_the_first_full_window_which_is_the_baseline() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=4)
    for top1 in (1, 1, 2):
        monitor.observe(model, 1, answer(top1))
        assert drift(model, 1) is None
    monitor.observe(model, 1, answer(2))
    assert drift(model, 1) == 0.0  # the baseline {1: 1/2, 2: 1/2} against itself
    monitor.observe(model, 1, answer(3))  # window 1, 2, 2, 3
    assert drift(model, 1) == pytest.approx(0.25)
    for _ in range(3):
        monitor.observe(model, 1, answer(3))
    assert drift(model, 1) == 1.0  # only 3 now: nothing in common with the baseline


def test_each_version_has_its_own_baseline() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=2)
    for top1 in (1, 1, 2, 2):
        monitor.observe(model, 1, answer(top1))
    for top1 in (2, 2, 2):
        monitor.observe(model, 2, answer(top1))
    assert drift(model, 1) == 1.0
    assert drift(model, 2) == 0.0


def test_a_reference_set_for_a_version_replaces_its_baseline() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=4)
    monitor.set_reference(model, 1, {1: 3.0, 2: 1.0})  # normalised: 0.75 / 0.25
    for top1 in (1, 1, 2, 2):
        monitor.observe(model, 1, answer(top1))
    assert drift(model, 1) == pytest.approx(0.25)

    for top1 in (5, 5, 5, 5):
        monitor.observe(model, 2, answer(top1))
    assert drift(model, 2) == 0.0
    monitor.set_reference(model, 2, {5: 0.5, 6: 0.5})  # after the baseline: from now on
    monitor.observe(model, 2, answer(5))
    assert drift(model, 2) == pytest.approx(0.5)


@pytest.mark.parametrize("shares", [{}, {1: 0.0}, {1: -0.5, 2: 1.0}, {1: float("nan")}])
def test_a_reference_must_be_a_distribution(shares: dict[int, float]) -> None:
    with pytest.raises(ValueError, match="reference shares"):
        QualityMonitor(threshold=0.5, window=4).set_reference("m", 1, shares)


@pytest.mark.parametrize("given_reference", [False, True])
def test_the_incremental_drift_equals_the_recomputed_one_at_every_step(
    given_reference: bool,
) -> None:
    model, window = fresh_model(), 50
    rng = random.Random(7)  # noqa: S311 - a stream that wanders: classes shift as it goes
    monitor = QualityMonitor(threshold=0.5, window=window)
    reference = {k: rng.random() for k in range(0, 60, 3)}
    if given_reference:
        monitor.set_reference(model, 1, reference)
    seen: list[int] = []
    for step in range(3000):
        top1 = rng.randrange(step // 100, step // 100 + 40)
        monitor.observe(model, 1, answer(top1))
        seen.append(top1)
        if len(seen) < window:
            assert drift(model, 1) is None
            continue
        if not given_reference and len(seen) == window:
            reference = dict(Counter(seen))
        expected = total_variation(seen[-window:], reference)
        assert drift(model, 1) == pytest.approx(expected, abs=1e-9)


def test_the_least_recently_seen_version_is_evicted_with_its_gauge() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=1, max_tracked=2)
    monitor.observe(model, 1, answer(1))
    monitor.observe(model, 2, answer(1))
    monitor.observe(model, 1, answer(1))  # 1 is now the more recent
    monitor.observe(model, 3, answer(1))
    assert monitor.tracked == [(model, "1"), (model, "3")]
    assert drift(model, 2) is None
    assert drift(model, 1) == 0.0
    for version in range(4, 100):
        monitor.observe(model, version, answer(version % CLASSES))
    assert len(monitor.tracked) == 2
    assert drift(model, 1) is None
    assert drift(model, 99) == 0.0


def test_a_given_reference_outlives_the_eviction_of_its_window() -> None:
    model = fresh_model()
    monitor = QualityMonitor(threshold=0.5, window=1, max_tracked=1)
    monitor.set_reference(model, 1, {9: 1.0})
    monitor.observe(model, 2, answer(4))  # evicts version 1's window
    monitor.observe(model, 1, answer(4))
    assert drift(model, 1) == 1.0  # still against the given reference, not a new baseline


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        QualityMonitor(threshold=0.5, window=0)
    with pytest.raises(ValueError, match="at least 1"):
        QualityMonitor(threshold=0.5, window=10, max_tracked=0)
