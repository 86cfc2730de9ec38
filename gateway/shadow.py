"""Shadow traffic: a copy of some successful requests sent to another version, compared, discarded.

A shadow call must never cost the client anything. `submit` only starts a task
and returns: the primary's answer is already made and goes out unchanged, whatever
the shadow does. Shadow calls are bounded (`max_in_flight`, plus a timeout each),
because they take model capacity from real requests; when the bound is reached the
copy is skipped and counted, never queued. Failures are expected while a version
rolls out (a label pointing at a version still loading), so they are counted and
logged at debug, not error.

The comparison is the top-1 class (do both versions name the same thing?) and the
L1 distance of the probability vectors (0 = identical, 2 = disjoint): enough to tell
a re-export of the same weights (L1 near 0) from a retrained model (top-1 mostly
agrees, L1 larger) from a broken one (top-1 disagrees).
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from gateway.metrics import SHADOW_COMPARISONS, SHADOW_L1_DISTANCE, SHADOW_SKIPPED

logger = logging.getLogger(__name__)

ShadowCall = Callable[[], Awaitable[tuple[np.ndarray, int]]]  # (probabilities, version)


@dataclass(frozen=True)
class Comparison:
    """How the shadow's answer differs from the primary's."""

    top1_agree: bool
    l1: float


def compare(primary: np.ndarray, shadow: np.ndarray) -> Comparison:
    """Compare two probability vectors of one image (same number of classes, else ValueError)."""
    if primary.size != shadow.size or primary.size == 0:
        raise ValueError(f"cannot compare {primary.size} classes with {shadow.size}")
    first, second = primary.ravel(), shadow.ravel()
    # float64: float32 sums of 1001 small differences lose the digits that tell versions apart.
    l1 = float(np.abs(first.astype(np.float64) - second.astype(np.float64)).sum())
    return Comparison(top1_agree=int(np.argmax(first)) == int(np.argmax(second)), l1=l1)


class ShadowRunner:
    """Runs shadow calls in the background, at most `max_in_flight` at a time."""

    def __init__(self, max_in_flight: int, timeout_seconds: float = 30.0) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max_in_flight = max_in_flight
        self._timeout = timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Shadow calls running now."""
        return len(self._tasks)

    def submit(
        self,
        model: str,
        primary_version: int,
        primary_probs: np.ndarray,
        call: ShadowCall,
        fraction: float,
        draw: float | None = None,
    ) -> bool:
        """Start a shadow call for this request with probability `fraction`; True if started.

        Call it on the event loop after the primary answered; it never waits and never
        raises for the shadow's sake. `primary_probs` must not change afterwards.
        """
        if self._closed:
            return False
        if draw is None:
            draw = random.random()  # noqa: S311 - samples traffic, guards nothing
        if draw >= fraction:
            return False
        if len(self._tasks) >= self._max_in_flight:
            SHADOW_SKIPPED.labels(model, "busy").inc()
            return False
        task = asyncio.get_running_loop().create_task(
            self._run(model, primary_version, primary_probs, call),
            name=f"shadow call for {model}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for the shadow calls running now to finish (each is bounded by its timeout)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Refuse new shadow calls, cancel the running ones and wait until they have ended."""
        self._closed = True
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self, model: str, primary_version: int, primary_probs: np.ndarray, call: ShadowCall
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                shadow_probs, shadow_version = await call()
        except TimeoutError:
            logger.debug("shadow call for %s timed out after %s s", model, self._timeout)
            SHADOW_SKIPPED.labels(model, "timeout").inc()
            return
        except Exception:  # whatever the shadow does, it is only counted
            logger.debug("shadow call for %s failed", model, exc_info=True)
            SHADOW_SKIPPED.labels(model, "error").inc()
            return
        try:
            comparison = compare(primary_probs, shadow_probs)
        except ValueError as exc:
            logger.debug("shadow answer for %s not comparable: %s", model, exc)
            SHADOW_SKIPPED.labels(model, "incomparable").inc()
            return
        labels = (model, str(primary_version), str(shadow_version))
        SHADOW_COMPARISONS.labels(*labels, "agree" if comparison.top1_agree else "disagree").inc()
        SHADOW_L1_DISTANCE.labels(*labels).observe(comparison.l1)
