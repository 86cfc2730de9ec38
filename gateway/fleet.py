"""Every model and version the gateway answers for, each through its own lane.

A request names a target (gateway/target.py): a model (default MODEL_NAME), and
optionally one version or one version label. The fleet checks the target exists,
opens its lane the first time (gateway/lanes.py), and hands it back. What exists
comes from the model set (MODEL_CONFIG_FILE, or MODEL_NAME alone,
gateway/model_config.py) and from what is served:

- In-process, a model's served versions are its version folders that its
  version policy keeps, and, until one of those answers requests naming no
  version, the versions its lanes still answer with (gateway/served_versions.py);
  a label names a version through the config file, so a label's request is
  answered by that version's lane.
- With TF Serving, a version is served while TF Serving lists it AVAILABLE, and
  a label is whatever TF Serving resolves it to: a label's lane is pinned to
  `/labels/L` and follows the label when it moves, as a TF_SERVING_URL pin does.

With a config file, every served version's lane is opened ahead of requests
(in-process: loaded and warmed), so each can answer, and be checked, at once. The
fleet's watcher lists every model once per pass; each lane's backend watcher follows
its own version. In-process, a request naming only a model other than MODEL_NAME is
answered by the highest version lane held for it (no second copy); with a `stable`
label and no TF_SERVING_URL pin, MODEL_NAME's default lane follows that label, so
/health, /model and /metrics describe the version answering requests that name
nothing. MAX_LANES bounds the lanes (503 beyond). A watcher here (the only place
lanes are retired) re-reads the config file and closes lanes whose version or label
is no longer served, after a grace period for the requests they hold.
"""

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from pathlib import Path

from gateway.backend import Backend
from gateway.decode_budget import DecodeBudget
from gateway.errors import BackendUnavailable, UnknownModel
from gateway.lanes import (
    Lane,
    LaneBackendFactory,
    build_lane_backend,
    lane_settings,
    open_lane,
)
from gateway.model_config import (
    STABLE_LABEL,
    ModelConfigFile,
    ModelEntry,
    ModelSet,
    single_model,
)
from gateway.served_versions import ServedVersions
from gateway.settings import Settings
from gateway.target import Target
from gateway.tfserving.catalog import TFServingCatalog

logger = logging.getLogger(__name__)

# Lanes open at once, at most: each holds a backend (in-process, a loaded model).
MAX_LANES = 64


class Fleet:
    """Opens, finds and retires lanes; the default model's default lane is the app's backend."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        budget: DecodeBudget,
        config_file: ModelConfigFile | None = None,
        lane_backend: LaneBackendFactory = build_lane_backend,
        default_backend: Backend | None = None,
        catalog: TFServingCatalog | None = None,
    ):
        self._settings = settings
        self._lane_backend = lane_backend
        self._executor = executor
        self._budget = budget
        self._config_file = config_file
        if config_file is not None:
            config_file.require(settings.model_name)  # now, and in every reload
        self._models = config_file.models if config_file else single_model(settings)
        in_process = settings.inference_backend == "embedded"
        if not in_process and catalog is None:
            catalog = TFServingCatalog(settings)
        self.served = ServedVersions(catalog, config_file is not None, lambda: self._lanes.values())
        default = Target(settings.model_name)
        entry = self._models.models[settings.model_name]
        pinned = settings.tf_serving_version is not None or bool(settings.tf_serving_version_label)
        # The model whose default lane TF_SERVING_URL pins: its requests naming nothing get it.
        self.pinned_model = entry.name if pinned else None
        # With a `stable` label and no TF_SERVING_URL pin, MODEL_NAME's default lane follows
        # the label, so /health, /model and /metrics describe the version that answers
        # requests naming none (gateway/traffic.py, default_target).
        self._stable_alias = (
            Target(entry.name, label=STABLE_LABEL)
            if default_backend is None and STABLE_LABEL in entry.labels and not pinned
            else None
        )
        if default_backend is None:
            default_backend = self._default_backend(settings, entry, lane_backend, in_process)
        self.default_lane = open_lane(settings, default, default_backend, executor, budget)
        self._lanes: dict[Target, Lane] = {default: self.default_lane}
        self._opening: dict[Target, asyncio.Task[Lane]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def models(self) -> ModelSet:
        return self._models

    @property
    def config_error(self) -> str:
        """Why MODEL_CONFIG_FILE as it is now is not in force; "" when it is (or there is none)."""
        return self._config_file.error if self._config_file else ""

    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    def lanes_by_version(self) -> dict[tuple[str, int], Lane]:
        """One lane for each (model, version) some lane serves now."""
        found: dict[tuple[str, int], Lane] = {}
        for lane in self._lanes.values():
            version = lane.backend.served_version()
            if version is not None:
                found.setdefault((lane.target.model, version), lane)
        return found

    async def start(self) -> None:
        await self.default_lane.start()
        await self._follow()  # with a config file, in-process versions start loading now
        self._watcher = asyncio.create_task(self._watch(), name="fleet-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in [*self._opening.values(), *self._retiring]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for lane in self._lanes.values():
            await lane.close()
        await self.served.close()

    def entry(self, model: str) -> ModelEntry:
        """The configured model named `model`; UnknownModel naming those served."""
        entry = self._models.models.get(model)
        if entry is None:
            raise UnknownModel(
                f"Model {model!r} is not served here; served models: "
                f"{', '.join(self._models.names())}."
            )
        return entry

    def _default_backend(
        self, settings: Settings, entry: ModelEntry, build: LaneBackendFactory, in_process: bool
    ) -> Backend:
        """MODEL_NAME's default backend: its newest version, or the `stable` label's."""
        default = Target(entry.name)
        if self._stable_alias is None:
            return build(lane_settings(settings, entry, default), entry, default)
        if not in_process:  # pinned to /labels/stable: it follows the label as TF Serving moves it
            return build(
                lane_settings(settings, entry, self._stable_alias), entry, self._stable_alias
            )
        from gateway.embedded import EmbeddedBackend

        return EmbeddedBackend(
            lane_settings(settings, entry, default), choose=self._stable_version, follow_down=True
        )

    def _stable_version(self, model_dir: Path) -> int:
        """The version MODEL_NAME's `stable` label names now (the in-process default lane's)."""
        version = self._models.models[self._settings.model_name].labels.get(STABLE_LABEL)
        if version is None:
            raise FileNotFoundError("MODEL_CONFIG_FILE no longer gives MODEL_NAME a stable label")
        if not (model_dir / str(version)).is_dir():
            raise FileNotFoundError(f"version {version}, labelled stable, is not on disk")
        return version

    async def lane_for(self, target: Target, deadline: float | None = None) -> Lane:
        """The lane answering `target`, opened and ready; 404 for what is not served."""
        if target == self._stable_alias:
            return self.default_lane  # it follows the label
        lane = self._lanes.get(target)
        if lane is not None:
            if lane is not self.default_lane and lane.backend.served_version() is None:
                await lane.wait_ready(deadline)  # opened by another request, still loading
            return lane
        entry = self.entry(target.model)
        if self.served.in_process and target.version is None and target.label is None:
            # In-process, each version's lane holds a loaded model: another model's
            # newest is answered by that version's lane rather than a second copy.
            held = [version for model, version in self.lanes_by_version() if model == entry.name]
            if held:
                return await self.lane_for(Target(entry.name, version=max(held)), deadline)
        if target.label is not None:
            target = await self.served.label_target(entry, target.label)
            lane = self._lanes.get(target)
            if lane is not None:
                return lane
        if target.version is not None:
            await self.served.check_version(entry, target.version)
        opening = self._opening.get(target)
        if opening is None:
            if self._open_count() >= MAX_LANES:
                raise BackendUnavailable(f"{MAX_LANES} model versions are open; try again later")
            opening = self._start_opening(entry, target)
        lane = await asyncio.shield(opening)
        await lane.wait_ready(deadline)
        return lane

    def _open_count(self) -> int:
        """Lanes holding a backend: open, opening, or retiring (closed after their grace)."""
        return len(self._lanes) + len(self._opening) + len(self._retiring)

    def _start_opening(self, entry: ModelEntry, target: Target) -> "asyncio.Task[Lane]":
        task = asyncio.create_task(self._open(entry, target), name=f"open {target.describe()}")
        self._opening[target] = task

        def forget(done: "asyncio.Task[Lane]") -> None:
            self._opening.pop(target, None)
            if not done.cancelled() and (error := done.exception()) is not None:
                # A request waiting on it hears it too; a lane opened ahead is tried again.
                logger.error("opening a lane for %s failed: %s", target.describe(), error)

        task.add_done_callback(forget)
        return task

    async def _open(self, entry: ModelEntry, target: Target) -> Lane:
        settings = lane_settings(self._settings, entry, target)
        backend = self._lane_backend(settings, entry, target)
        lane = open_lane(settings, target, backend, self._executor, self._budget)
        try:
            await lane.start()
        except BaseException:
            await lane.close()
            raise
        self._lanes[target] = lane
        logger.info("opened a lane for %s", target.describe())
        return lane

    async def _watch(self) -> None:
        every = min(self._settings.status_poll_seconds, self._settings.model_config_poll_seconds)
        while True:
            await asyncio.sleep(every)
            try:
                await self._follow()
            except Exception:
                logger.exception("following the served models failed")

    async def _follow(self) -> None:
        """Re-read the config file; open lanes for the versions it serves; retire what is gone."""
        if self._config_file is not None and self._config_file.refresh():
            self._models = self._config_file.models
            logger.info("MODEL_CONFIG_FILE re-read: models %s", ", ".join(self._models.names()))
        # One look per model per pass: (versions that can answer, versions not yet gone).
        served = {name: await self.served.now(entry) for name, entry in self._models.models.items()}
        for target, lane in list(self._lanes.items()):
            if lane is not self.default_lane and not self._still_served(target, served):
                self._retire(target)
        if self._config_file is None:
            return
        for name, versions in served.items():
            for version in versions[0] if versions else ():
                target = Target(name, version=version)
                if target in self._lanes or target in self._opening:
                    continue
                if self._open_count() >= MAX_LANES:
                    logger.warning("%d lanes open: %s not opened", MAX_LANES, target.describe())
                    return
                self._start_opening(self._models.models[name], target)

    def _still_served(
        self, target: Target, served: dict[str, tuple[set[int], set[int]] | None]
    ) -> bool:
        entry = self._models.models.get(target.model)
        if entry is None:
            return False
        if self._lanes[target].settings.model_dir != entry.path:
            return False  # the model moved to another folder: reopen it there
        if target.label is not None:
            return self._config_file is None or target.label in entry.labels
        versions = served.get(target.model)
        return target.version is None or versions is None or target.version in versions[1]

    def _retire(self, target: Target) -> None:
        """Stop handing out `target`'s lane; close it once its requests have had their time."""
        lane = self._lanes.pop(target)
        logger.info("retiring the lane for %s", target.describe())
        grace = self._settings.request_timeout_seconds

        async def close_later() -> None:
            try:
                await asyncio.sleep(grace)
            finally:  # the fleet closing early cancels the wait, not the close
                await lane.close()

        task = asyncio.create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
