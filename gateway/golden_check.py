"""Readiness that checks answers: each served version replays its golden answer end to end.

Every exported version carries a photograph and the answer a correct gateway
gives for it (gateway/golden.py; written by modelexport/golden.py). The check
sends the photograph through the version's own lane (the gateway's decode and
resize, the batcher, the model server) and judges the answer with the golden
answer's own rule. A version whose weights, preprocessing or files are not what
was exported answers differently, and readiness says which version and why.

Checks are cached for GOLDEN_CHECK_SECONDS per version, and a version is checked
by one task at a time however many probes ask, so readiness probes cost no model
calls between checks. A version without a golden answer (exported before there
were any, or from elsewhere) is reported as such and does not fail readiness.
Replays go through the lane's classifier like a request, so they are counted in
the decode, queue, model and ranking timings too (not in the request counters).
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from gateway import metrics
from gateway.errors import GatewayError
from gateway.fleet import Fleet
from gateway.lanes import Lane
from gateway.model_assets import (
    EXPORT_INFO_FILE,
    GOLDEN_FILE,
    GOLDEN_INT8_FILE,
    LABELS_FILE,
    load_assets,
)
from gateway.settings import Settings

logger = logging.getLogger(__name__)

# How long a probe waits for a version's first check before answering without it.
FIRST_CHECK_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class GoldenResult:
    """One version's last check: passed, failed (with the reason), or nothing to check."""

    model: str
    version: int
    passed: bool | None  # None: the version has no golden answer
    detail: str
    checked_at: float  # time.time()
    l1: float | None = None

    def report(self) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.model,
            "version": self.version,
            "passed": self.passed,
            "detail": self.detail,
            "checked_at": round(self.checked_at, 3),
        }
        if self.l1 is not None:
            body["l1"] = round(self.l1, 6)
        return body


class GoldenChecker:
    """Runs and caches golden checks, one at a time per (model, version)."""

    def __init__(self, settings: Settings):
        self._every = settings.golden_check_seconds
        self._timeout = settings.request_timeout_seconds
        self._results: dict[tuple[str, int], GoldenResult] = {}
        self._running: dict[tuple[str, int], asyncio.Task[GoldenResult]] = {}
        self._checking: set[tuple[str, int]] = set()  # started and not forgotten since

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def check(self, lane: Lane) -> GoldenResult | None:
        """The lane's served version's last result; the first is waited for, up to a second.

        A stale result is returned as it is while a fresh check runs in the
        background, so a probe waits on a model call only for a version never checked.
        """
        version = lane.backend.served_version()
        if version is None:
            return None
        key = (lane.target.model, version)
        cached = self._results.get(key)
        if cached is not None and time.time() - cached.checked_at < self._every:
            return cached
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._check(lane, version), name=f"golden {key}")
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        if cached is not None:
            return cached
        try:
            # Probes time out in about a second: the first check reports once it is done.
            return await asyncio.wait_for(asyncio.shield(task), FIRST_CHECK_WAIT_SECONDS)
        except TimeoutError:
            return GoldenResult(key[0], version, None, "the first check is running", time.time())

    def forget_except(self, served: set[tuple[str, int]]) -> None:
        """Drop results (and gauge series) of versions no longer served."""
        self._checking &= served
        for key in [key for key in self._results if key not in served]:
            del self._results[key]
            with contextlib.suppress(KeyError):  # no series when it never passed or failed
                metrics.GOLDEN_CHECK_PASSED.remove(key[0], str(key[1]))

    async def _check(self, lane: Lane, version: int) -> GoldenResult:
        model = lane.target.model
        self._checking.add((model, version))
        result = await self._replay(lane, model, version)
        if (model, version) not in self._checking:
            return result  # forgotten meanwhile: the version is no longer served
        self._checking.discard((model, version))
        self._results[(model, version)] = result
        if result.passed is not None:
            metrics.GOLDEN_CHECK_PASSED.labels(model, str(version)).set(1 if result.passed else 0)
        if result.passed is False:
            logger.error("golden check failed for %s version %s: %s", model, version, result.detail)
        return result

    async def _replay(self, lane: Lane, model: str, version: int) -> GoldenResult:
        now = time.time()
        try:
            signature = await lane.backend.signature()
        except GatewayError as exc:
            return GoldenResult(model, version, None, f"not checked: {exc.detail}", now)
        assets = load_assets(lane.settings.model_dir, version, signature.num_classes)
        # An int8 copy answers a little differently by design: it has an answer of its own.
        int8 = lane.backend.describe().get("precision") == "int8"
        # Every problem but the labels', the provenance's and the golden answer not replayed
        # here is one of this check's files (the photograph's name comes from its answer).
        ignored = (LABELS_FILE, EXPORT_INFO_FILE, GOLDEN_FILE if int8 else GOLDEN_INT8_FILE)
        broken = [p for p in assets.problems if p.file not in ignored]
        if broken:
            detail = f"its golden answer is unusable: {broken[0].file}: {broken[0].problem}"
            return GoldenResult(model, version, False, detail, now)
        golden = assets.golden_int8 if int8 else assets.golden
        if golden is None:
            which = "no int8 golden answer" if int8 else "no golden answer"
            return GoldenResult(model, version, None, f"the version has {which}", now)
        if signature.image_size != golden.expected.input_size:
            detail = (
                f"the model takes {signature.image_size} pixels, its golden answer was "
                f"computed at {golden.expected.input_size}: not this version's answer"
            )
            return GoldenResult(model, version, False, detail, now)
        deadline = time.monotonic() + self._timeout
        try:
            answer = await lane.classifier.classify(golden.photo, 1, deadline)
        except GatewayError as exc:
            return GoldenResult(model, version, None, f"not checked: {exc.detail}", now)
        if answer.version != version:
            detail = f"not checked: version {answer.version} answered instead"
            return GoldenResult(model, version, None, detail, now)
        comparison = golden.expected.compare(answer.probabilities)
        if comparison.agrees:
            whose = "the int8 copy's golden answer" if int8 else "the golden answer"
            detail = f"the golden photograph's answer matches {whose} (L1 {comparison.l1:.4f})"
            return GoldenResult(model, version, True, detail, now, comparison.l1)
        reason = comparison.reason or "it answers differently"
        return GoldenResult(model, version, False, reason, now, comparison.l1)


async def golden_results(checker: GoldenChecker, fleet: Fleet) -> list[GoldenResult]:
    """Every served version's result (cached; a version's first check awaited up to 1 s)."""
    lanes = fleet.lanes_by_version()
    checker.forget_except(set(lanes))
    found = await asyncio.gather(*(checker.check(lane) for lane in lanes.values()))
    return sorted((r for r in found if r is not None), key=lambda r: (r.model, -r.version))
