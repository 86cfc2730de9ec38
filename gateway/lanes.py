"""A lane: what answers one target (a model, a version of it, or a label's version).

Each lane is the gateway as it was for one model: a backend that follows what it
serves (embedded: loads it; TF Serving: a TF_SERVING_URL pinned to the version or
label, so everything docs/tf-serving-protocol.md §1 says of pins holds per lane;
MODEL_NAME's default lane keeps TF_SERVING_URL as given), a batcher, and a
classifier sharing the process's thread pool and decode memory budget. Lanes are
opened and retired by gateway/fleet.py.
"""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.backend import Backend
from gateway.batching import Batcher
from gateway.decode_budget import DecodeBudget
from gateway.errors import BackendUnavailable
from gateway.model_config import ModelEntry
from gateway.pipeline import Classifier
from gateway.settings import Settings
from gateway.target import Target

# How often a lane opened for a request is asked whether it is ready yet.
READY_POLL_SECONDS = 0.05


@dataclass
class Lane:
    """One target's backend, batcher and classifier; started and closed together."""

    target: Target
    settings: Settings
    backend: Backend
    batcher: Batcher
    classifier: Classifier

    async def start(self) -> None:
        await self.backend.start()
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()
        await self.backend.close()

    async def wait_ready(self, deadline: float | None) -> None:
        """Return once the lane's backend is ready; BackendUnavailable at `deadline` (monotonic)."""
        while True:
            status = await self.backend.status()
            if status.ready:
                return
            if status.state in ("END", "NOT_FOUND", "UNREACHABLE") and status.detail:
                raise BackendUnavailable(f"{self.target.describe()} is not ready: {status.detail}")
            if deadline is not None and time.monotonic() + READY_POLL_SECONDS >= deadline:
                raise BackendUnavailable(f"{self.target.describe()} is still loading")
            await asyncio.sleep(READY_POLL_SECONDS)


def lane_settings(settings: Settings, entry: ModelEntry, target: Target) -> Settings:
    """The gateway's settings, aimed at `target`: its model folder and, for TF Serving, its URL."""
    values = settings.model_dump()
    values.update(model_name=entry.name, model_path=entry.path)
    if target == Target(settings.model_name):
        # The default lane: TF_SERVING_URL as given, pins included (docs/tf-serving-protocol.md §1).
        return type(settings).model_validate(values)
    parts = urlsplit(settings.tf_serving_url)
    path = f"/v1/models/{quote(entry.name, safe='')}"
    # In-process there is no URL to pin; the backend is told its version instead.
    if settings.inference_backend == "tfserving":
        if target.version is not None:
            path += f"/versions/{target.version}"
        elif target.label is not None:
            path += f"/labels/{quote(target.label, safe='')}"
    values["tf_serving_url"] = urlunsplit((parts.scheme, parts.netloc, f"{path}:predict", "", ""))
    return type(settings).model_validate(values)


# How a lane's backend is made: (the lane's settings, its model, its target). The
# seam in-process tests fake, as they fake the default backend.
LaneBackendFactory = Callable[[Settings, ModelEntry, Target], Backend]


def build_lane_backend(settings: Settings, entry: ModelEntry, target: Target) -> Backend:
    """The backend a lane for `target` runs on: TF Serving pinned to it, or in-process."""
    if settings.inference_backend == "tfserving":
        from gateway.tfserving import TFServingBackend

        return TFServingBackend(settings)
    from gateway.embedded import (
        EmbeddedBackend,
        newest_version,
        pinned_version,
        version_folders,
    )

    if target.version is not None:
        return EmbeddedBackend(settings, choose=pinned_version(target.version))

    def newest_served(model_dir: Path) -> int:
        on_disk = version_folders(model_dir)
        if not on_disk:
            return newest_version(model_dir)  # raises, saying how to export one
        served = entry.policy.served(on_disk)
        if not served:
            raise FileNotFoundError(
                f"no version of {entry.name} on disk is served by its policy "
                f"({entry.policy.describe()})"
            )
        return served[0]

    return EmbeddedBackend(settings, choose=newest_served)


def open_lane(
    settings: Settings,
    target: Target,
    backend: Backend,
    executor: Executor,
    budget: DecodeBudget,
) -> Lane:
    """A lane around `backend` (not started yet)."""
    batcher = Batcher(
        backend,
        max_size=settings.batch_max_size,
        timeout_s=settings.batch_timeout_ms / 1000.0,
        concurrency=settings.batch_concurrency,
        model=target.model,
    )
    classifier = Classifier(settings, backend, batcher, executor, budget)
    return Lane(target, settings, backend, batcher, classifier)
