"""Signals of answer quality without ground truth: low confidence and class-distribution drift.

Confidence: every prediction's top-1 probability goes into a histogram, and one
below LOW_CONFIDENCE_THRESHOLD is counted (and flagged to the caller, who may tell
the client).

Drift: per (model, version), the top-1 classes of the last `window` predictions,
against a reference distribution: the version's first full window (its baseline),
unless one was set for it. The gauge is the total variation distance between the
two, half the L1 distance of the class shares: 0 when the recent mix of classes is
the reference's, 1 when they share no class. It appears once a full window has been
seen. An upstream change (a new camera, a broken resize, a different user base)
shifts the mix of answers long before anyone reports wrong ones.

It runs on every request, so each call is O(1) amortised: the window is a ring of
ints, class counts change by one in and one out, and the distance is kept as a sum
of |count - expected| updated for those two classes only. A float reference makes
that sum drift by rounding, so it is recomputed from scratch once per window
(O(classes) every `window` calls). Memory is bounded whatever arrives: `window`
ints and at most `window` counts per version, and at most `max_tracked` versions,
the least recently seen evicted with its gauge series.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from gateway.metrics import CLASS_DRIFT, LOW_CONFIDENCE, TOP1_CONFIDENCE

DEFAULT_MAX_TRACKED = 64  # (model, version) pairs; a rollout has two or three per model


class _Window:
    """One version's recent top-1 classes, and their distance to a reference."""

    def __init__(self, size: int, reference: dict[int, float] | None) -> None:
        self._ring = np.zeros(size, dtype=np.int64)
        self._size = size
        self._filled = 0  # grows to `size`, then the ring overwrites its oldest entry
        self._next = 0
        self._counts: dict[int, int] = {}
        self._expected: dict[int, float] | None = None  # reference share x window size
        self._distance_sum = 0.0  # sum over classes of |count - expected|
        self._since_recompute = 0
        if reference is not None:
            self.set_reference(reference)

    def add(self, klass: int) -> float | None:
        """Record one top-1 class; the drift once the window is full, else None."""
        if self._filled == self._size:
            self._change(int(self._ring[self._next]), -1)
        else:
            self._filled += 1
        self._ring[self._next] = klass
        self._next = (self._next + 1) % self._size
        self._change(klass, +1)
        if self._filled < self._size:
            return None
        if self._expected is None:  # the first full window is this version's baseline
            self._expected = {k: float(count) for k, count in self._counts.items()}
            self._distance_sum = 0.0
        self._since_recompute += 1
        if self._since_recompute >= self._size:
            self._recompute()
        return min(1.0, max(0.0, self._distance_sum / (2.0 * self._size)))

    def set_reference(self, shares: dict[int, float]) -> None:
        """Use `shares` (normalised here) as the reference from now on."""
        total = sum(shares.values())
        self._expected = {k: share / total * self._size for k, share in shares.items() if share}
        self._recompute()

    def _change(self, klass: int, delta: int) -> None:
        before = self._counts.get(klass, 0)
        after = before + delta
        if after:
            self._counts[klass] = after
        else:
            del self._counts[klass]  # keeps the counts at most `window` entries
        if self._expected is not None:
            expected = self._expected.get(klass, 0.0)
            self._distance_sum += abs(after - expected) - abs(before - expected)

    def _recompute(self) -> None:
        expected = self._expected or {}
        total = sum(abs(count - expected.get(k, 0.0)) for k, count in self._counts.items())
        total += sum(share for k, share in expected.items() if k not in self._counts)
        self._distance_sum = total
        self._since_recompute = 0


@dataclass
class _Tracked:
    """One version's window and its series, looked up once: `labels()` costs microseconds."""

    window: _Window
    confidence: Histogram
    low_confidence: Counter
    drift: Gauge | None = None  # created at the first full window, so absent until then


class QualityMonitor:
    """Confidence and drift of every prediction, per model and version."""

    def __init__(
        self, threshold: float, window: int, max_tracked: int = DEFAULT_MAX_TRACKED
    ) -> None:
        if window < 1 or max_tracked < 1:
            raise ValueError("window and max_tracked must be at least 1")
        self._threshold = threshold
        self._window_size = window
        self._max_tracked = max_tracked
        self._tracked: OrderedDict[tuple[str, str], _Tracked] = OrderedDict()
        # Set by an operator, not by traffic: kept when the version's window is evicted.
        self._references: dict[tuple[str, str], dict[int, float]] = {}

    def observe(self, model: str, version: int, probabilities: np.ndarray) -> bool:
        """Record one prediction's probabilities; True when its top-1 is low-confidence."""
        scores = probabilities.ravel()
        top1 = int(np.argmax(scores))
        confidence = float(scores[top1])
        if not math.isfinite(confidence):  # a NaN answer is no confidence at all
            confidence = 0.0
        tracked = self._track((model, str(version)))
        tracked.confidence.observe(confidence)
        low = confidence < self._threshold
        if low:
            tracked.low_confidence.inc()
        drift = tracked.window.add(top1)
        if drift is not None:
            if tracked.drift is None:
                tracked.drift = CLASS_DRIFT.labels(model, str(version))
            tracked.drift.set(drift)
        return low

    def set_reference(self, model: str, version: int, shares: dict[int, float]) -> None:
        """Measure the version's drift against `shares` (class -> share) instead of its baseline."""
        values = list(shares.values())
        if not all(math.isfinite(share) and share >= 0 for share in values) or sum(values) <= 0:
            raise ValueError("reference shares must be finite, non-negative and not all zero")
        key = (model, str(version))
        self._references[key] = dict(shares)
        if key in self._tracked:
            self._tracked[key].window.set_reference(shares)

    @property
    def tracked(self) -> list[tuple[str, str]]:
        """The (model, version) pairs with a window now, least recently seen first."""
        return list(self._tracked)

    def _track(self, key: tuple[str, str]) -> _Tracked:
        tracked = self._tracked.get(key)
        if tracked is not None:
            self._tracked.move_to_end(key)
            return tracked
        if len(self._tracked) >= self._max_tracked:
            evicted, _ = self._tracked.popitem(last=False)
            CLASS_DRIFT.remove(*evicted)  # a series never set is no error
        tracked = _Tracked(
            _Window(self._window_size, self._references.get(key)),
            TOP1_CONFIDENCE.labels(*key),
            LOW_CONFIDENCE.labels(*key),
        )
        self._tracked[key] = tracked
        return tracked
