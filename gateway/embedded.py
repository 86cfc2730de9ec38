"""The embedded backend: the newest model version, run in this process.

Loading and warm-up happen off the event loop, on a thread of their own, while
liveness already answers and inference keeps all of its threads; readiness
turns true only once a warm-up inference has run, so the first real request is
not the slow one. Like TF Serving's `latest` policy, a newer version folder is
loaded in the background and swapped in only once warm; requests keep using
the old one meanwhile, even if its folder is deleted.

A version that fails to load is tried again with exponential back-off, for as
long as it is the newest: a folder copied in non-atomically, incomplete when
first seen, is served once complete, without a restart. (TF Serving gives up
after `--max_num_load_retries`; docs/tf-serving-protocol.md §10.)
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendError, BackendUnavailable
from gateway.runtimes import ModelFileProblem, Precision, Runtime, load_runtime
from gateway.serving_documents import metadata_document, status_document
from gateway.settings import Settings

logger = logging.getLogger(__name__)

# How a version folder becomes a runtime:
# (folder, EMBEDDED_RUNTIME, threads, copies, EMBEDDED_PRECISION).
# The seam tests fake, as httpx's tests fake its transport.
RuntimeLoader = Callable[
    [Path, Literal["auto", "tflite", "tensorflow"], int, int, Precision], Runtime
]
# Which version folder to serve, given the model's folder: the newest (the default),
# or one a request pinned (gateway/fleet.py). Raises FileNotFoundError saying why none.
VersionChooser = Callable[[Path], int]


@dataclass(frozen=True)
class _Loaded:
    signature: ModelSignature
    runtime: Runtime


@dataclass(frozen=True)
class _Failure:
    """The newest version's last failed load, and when to try it again."""

    version: int
    message: str  # names no host path: it reaches /health
    attempts: int
    delay: float  # seconds between this attempt and the next
    retry_at: float  # on the event loop's clock


class EmbeddedBackend:
    """Runs the model in-process; same API and responses as the TF Serving path."""

    name = "embedded"

    def __init__(
        self,
        settings: Settings,
        load: RuntimeLoader = load_runtime,
        choose: "VersionChooser | None" = None,
        follow_down: bool = False,
    ):
        self._settings = settings
        self._load_runtime = load
        self._choose = choose or newest_version
        # Newest-version choosers only move up (a newer folder); a label may also move
        # back to an older version, which must then be loaded too.
        self._follow_down = follow_down
        # One thread per model call that may run at once (the batcher's concurrency),
        # and one for loads and warm-ups, so a version warming up takes none of them.
        self._executor = ThreadPoolExecutor(
            max_workers=settings.batch_concurrency, thread_name_prefix="embedded-model"
        )
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-load")
        self._loaded: _Loaded | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._loading: int | None = None  # the version being loaded now
        self._failure: _Failure | None = None
        self._missing = ""  # why there is no version folder at all, when there is none

    def describe(self) -> dict[str, str]:
        runtime = self._loaded.runtime.name if self._loaded else self._settings.embedded_runtime
        # The setting, not the loaded copy: both are the same once a version is loaded,
        # and int8 never falls back to float32 (runtimes.load_runtime).
        return {"backend": self.name, "runtime": runtime, "precision": self.precision}

    @property
    def precision(self) -> str:
        """The number format the model answers in: float32, or int8 when asked for."""
        return self._settings.embedded_precision

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._follow_versions())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def status(self) -> ModelStatus:
        """What is serving and what failed; loads are started by the watcher, never here."""
        failure = self._failure
        if self._loaded is not None:
            version = self._loaded.signature.version
            document = status_document(version, "AVAILABLE")
            if failure is None and self._missing:
                detail = f"{self._missing}; version {version} keeps serving from memory"
                return ModelStatus(True, "AVAILABLE", version, detail, document)
            if failure is None:
                return ModelStatus(True, "AVAILABLE", version, document=document)
            # TF Serving lists every version it has seen, highest first; a failed one as END.
            failed = status_document(failure.version, "END", failure.message)
            entries = failed["model_version_status"] + document["model_version_status"]
            detail = f"{self._describe(failure)}; version {version} keeps serving"
            return ModelStatus(
                True, "AVAILABLE", version, detail, {"model_version_status": entries}
            )
        if failure is not None:
            document = status_document(failure.version, "END", failure.message)
            return ModelStatus(False, "END", failure.version, self._describe(failure), document)
        if self._missing:
            return ModelStatus(False, "END", None, self._missing, status_document(None, "END"))
        loading = self._loading
        detail = "the model is loading and warming up"
        return ModelStatus(False, "LOADING", loading, detail, status_document(loading, "LOADING"))

    async def signature(self) -> ModelSignature:
        if self._loaded is None:
            status = await self.status()
            raise BackendUnavailable(f"The embedded model is not ready: {status.detail}.")
        return self._loaded.signature

    def served_version(self) -> int | None:
        return self._loaded.signature.version if self._loaded else None

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        loaded = self._loaded
        if loaded is None:
            raise BackendUnavailable("The embedded model is not ready yet.")
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(self._executor, loaded.runtime.run, images)
        except Exception as exc:
            logger.exception("embedded inference failed")
            raise BackendError("The embedded model failed to run this batch.") from exc
        return BatchPrediction(probabilities, loaded.signature.version)

    async def _follow_versions(self) -> None:
        """Load the newest version, then keep following the folder (the only place loads start)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._load_newest()
            except Exception:
                logger.exception("embedded backend: following model versions failed")
            await asyncio.sleep(self._next_check_in(loop.time()))

    async def _load_newest(self) -> None:
        """Load the newest version folder if it is newer than the one serving and is due."""
        loop = asyncio.get_running_loop()
        try:
            newest = self._choose(self._settings.model_dir)
        except FileNotFoundError as exc:
            # Every folder gone: keep serving the version in memory, and forget a failed
            # load, whose folder has gone with the rest (its retry would never come).
            self._missing, self._failure = str(exc), None
            return
        self._missing = ""
        current = self._loaded.signature.version if self._loaded else 0
        served = newest == current if self._follow_down else newest <= current
        failure = self._failure
        if failure is not None and (failure.version != newest or served):
            self._failure = failure = None  # no longer the version wanted: forget it
        if served or (failure is not None and loop.time() < failure.retry_at):
            return
        self._loading = newest
        try:
            loaded = await loop.run_in_executor(self._loader, self._load_version, newest)
        except Exception as exc:
            self._failure = self._record_failure(newest, exc, failure, loop.time())
            return
        finally:
            self._loading = None
        self._loaded, self._failure = loaded, None
        logger.info("embedded backend serving on %s: %s", loaded.runtime.name, loaded.signature)

    def _record_failure(
        self, version: int, exc: Exception, previous: _Failure | None, now: float
    ) -> _Failure:
        settings = self._settings
        attempts = previous.attempts + 1 if previous else 1
        delay = min(
            previous.delay * 2 if previous else settings.embedded_load_retry_seconds,
            settings.embedded_load_retry_max_seconds,
        )
        logger.error(
            "embedded backend: loading version %s failed (attempt %d; next in %.1f s): %s",
            version,
            attempts,
            delay,
            exc,
        )
        # Library errors may name host paths, so they stay in the log.
        message = f"version {version} could not be loaded ({type(exc).__name__}; see the log)"
        if isinstance(exc, ModelFileProblem):
            message = f"version {version} could not be loaded: {exc}"
        return _Failure(version, message, attempts, delay, now + delay)

    def _describe(self, failure: _Failure) -> str:
        if self._loading == failure.version:
            return f"{failure.message}; trying again now (attempt {failure.attempts + 1})"
        wait = max(0.0, failure.retry_at - asyncio.get_running_loop().time())
        return f"{failure.message}; trying again in {wait:.1f} s (attempt {failure.attempts + 1})"

    def _next_check_in(self, now: float) -> float:
        """Seconds until the folder is looked at again: the poll period, or sooner for a retry."""
        poll = self._settings.status_poll_seconds
        if self._failure is None:
            return poll
        return min(poll, max(0.0, self._failure.retry_at - now))

    def _load_version(self, version: int) -> _Loaded:
        """Load and warm one version (blocking; runs on the loader thread)."""
        settings = self._settings
        runtime = self._load_runtime(
            settings.model_dir / str(version),
            settings.embedded_runtime,
            settings.inference_threads,
            settings.batch_concurrency,
            settings.embedded_precision,
        )
        tensors = runtime.tensors
        runtime.warm(tuple(sorted({1, settings.batch_max_size})))
        signature = ModelSignature(
            version=version,
            input_name=tensors.input_name,
            output_name=tensors.output_name,
            image_size=tensors.image_size,
            num_classes=tensors.num_classes,
        )
        metadata = metadata_document(settings.model_name, signature)
        return _Loaded(replace(signature, metadata=metadata), runtime)


# Version folders as the gateway names them: ASCII digits, no leading zero, within
# int64. TF Serving also parses "01" (as 1) or "+2"; the gateway reads a version's
# files from the folder named after its number, so it leaves such names alone, as it
# does "²" (a digit to str.isdigit, not to int) and numbers past int64.
VERSION_FOLDER = re.compile(r"[1-9][0-9]{0,17}|0")


def version_folders(model_dir: Path) -> list[int]:
    """Every version folder's number, unsorted; FileNotFoundError if the folder cannot be listed."""
    try:
        children = [child for child in model_dir.iterdir() if child.is_dir()]
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot list MODEL_BASE_PATH/{model_dir.name}: {exc.strerror}"
        ) from exc
    return [int(child.name) for child in children if VERSION_FOLDER.fullmatch(child.name)]


def pinned_version(version: int) -> VersionChooser:
    """A chooser that serves `version` only, while its folder is there."""

    def choose(model_dir: Path) -> int:
        if not (model_dir / str(version)).is_dir():
            raise FileNotFoundError(f"version {version} of {model_dir.name} is not on disk")
        return version

    return choose


def newest_version(model_dir: Path) -> int:
    """The highest numeric version folder, as TF Serving's `latest` policy picks it."""
    versions = version_folders(model_dir)
    if not versions:
        raise FileNotFoundError(
            f"no numeric version folder under MODEL_BASE_PATH/{model_dir.name}; "
            "run `python export_model.py` first"
        )
    return max(versions)
