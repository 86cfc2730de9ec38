"""Which lane a prediction goes to, and what is learned from its answer.

Before: a request that names a version or label gets it; otherwise the routing
file's split for its model picks one (sticky per client key), or else the
model's `stable` label, or else its newest version. After: the answer feeds the quality signals
(gateway/quality.py), is counted by the version that answered and the label
routed by, and a fraction of requests is shadowed to a candidate version whose
answer is only compared (gateway/shadow.py). Nothing after the answer can delay
or fail it.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gateway import metrics
from gateway.errors import BackendUnavailable, UnknownVersion
from gateway.fleet import Fleet
from gateway.lanes import Lane
from gateway.model_config import STABLE_LABEL, ModelSet
from gateway.pipeline import Classification
from gateway.quality import QualityMonitor
from gateway.routing_file import RoutingFile
from gateway.settings import Settings
from gateway.shadow import ShadowRunner
from gateway.target import Target
from gateway.traffic_split import choose

logger = logging.getLogger(__name__)

# Shadow calls running at once, at most; more are skipped (counted as busy), never
# queued. One: a shadow runs the whole pipeline again, and with four a fraction of
# 1.0 took a quarter to a half of a two-core gateway's throughput (a hostile test
# at concurrency 16); with one it is a sample whose cost is one request's at most.
SHADOW_MAX_IN_FLIGHT = 1


@dataclass(frozen=True)
class Routed:
    """Where a request goes and why: `request` (it named it), `split`, `default`, or
    `split-fallback` (the split named what is not served; `detail` says what)."""

    target: Target
    chosen_by: str
    detail: str = ""

    def report(self) -> dict[str, str]:
        body = {"chosen_by": self.chosen_by, "target": self.target.describe()}
        if self.detail:
            body["detail"] = self.detail
        return body


class Traffic:
    """The routing file, the split, the shadow runner and the quality monitor, together."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self.routing = RoutingFile(settings.routing_file)
        self.quality = QualityMonitor(settings.low_confidence_threshold, settings.drift_window)
        self.shadows = ShadowRunner(SHADOW_MAX_IN_FLIGHT, settings.request_timeout_seconds)

    async def close(self) -> None:
        await self.shadows.close()

    def route(
        self,
        requested: Target,
        headers: Mapping[str, str],
        models: ModelSet,
        pinned_model: str | None = None,
    ) -> Routed:
        """The target a request is answered by; `pinned_model`'s default is TF_SERVING_URL's pin."""
        if requested.version is not None or requested.label is not None:
            return Routed(requested, "request")
        config = self.routing.current()  # once: PUT /admin/routing may replace it meanwhile
        split = config.split_for(requested.model)
        if split is None:
            return Routed(default_target(requested.model, models, pinned_model), "default")
        sticky = config.models[requested.model].sticky_header
        key = headers.get(sticky) if sticky else None
        return Routed(choose(split, key), "split")

    async def lane_for(
        self, fleet: Fleet, routed: Routed, deadline: float | None
    ) -> tuple[Lane, Routed]:
        """The lane answering `routed`.

        A split's target that is not served (a label removed, a version retired
        before the routing file was updated) must not fail requests that named
        nothing: they are answered by the model's default lane, and counted.
        """
        try:
            return await fleet.lane_for(routed.target, deadline), routed
        except (UnknownVersion, BackendUnavailable) as exc:
            if routed.chosen_by != "split":
                raise
            model = routed.target.model
            metrics.SPLIT_FALLBACKS.labels(model).inc()
            logger.debug("split target %s unusable: %s", routed.target.describe(), exc.detail)
            target = default_target(model, fleet.models, fleet.pinned_model)
            if target == routed.target:
                target = Target(model)  # the stable label itself is what is not served
            fallback = Routed(target, "split-fallback", exc.detail)
            return await fleet.lane_for(fallback.target, deadline), fallback

    def record(
        self,
        fleet: Fleet,
        routed: Routed,
        result: Classification,
        data: bytes,
    ) -> bool:
        """Learn from a successful answer; True when it is low-confidence."""
        model = routed.target.model
        label = routed.target.label or ""
        metrics.PREDICTIONS.labels(model, str(result.version), label).inc()
        low = self.quality.observe(model, result.version, result.probabilities)
        routing = self.routing.current().models.get(model)
        if routing is not None and routing.shadow is not None:
            shadow = routing.shadow.target(model)
            if shadow != routed.target:
                self._shadow(fleet, shadow, routing.shadow.fraction, result, data)
        return low

    def _shadow(
        self,
        fleet: Fleet,
        shadow: Target,
        fraction: float,
        result: Classification,
        data: bytes,
    ) -> None:
        deadline = time.monotonic() + self._settings.request_timeout_seconds

        async def call() -> tuple[np.ndarray, int]:
            # The whole pipeline again: the candidate may want other pixels (another size).
            lane = await fleet.lane_for(shadow, deadline)
            answer = await lane.classifier.classify(data, 1, deadline)
            return answer.probabilities, answer.version

        self.shadows.submit(
            shadow.model, result.version, result.probabilities, call, fraction=fraction
        )


def default_target(model: str, models: ModelSet, pinned_model: str | None = None) -> Target:
    """What a request naming nothing gets: the pin, the `stable` label, or the newest version.

    A TF_SERVING_URL that pins a version or label pins `pinned_model`'s default lane
    (MODEL_NAME's): requests naming nothing get that pin.

    TF Serving's own default is the newest version; a rollout adds the new version
    to the policy before any traffic should reach it, so with labels the default
    follows `stable` and a new version gets requests only once a label or the
    split sends them (docs/rollouts.md).
    """
    if model == pinned_model:
        return Target(model)
    entry = models.models.get(model)
    if entry is not None and STABLE_LABEL in entry.labels:
        return Target(model, label=STABLE_LABEL)
    return Target(model)
