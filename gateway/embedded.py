"""The embedded backend: the newest model version, run in this process.

Loading and warm-up happen off the event loop while liveness already answers;
readiness turns true only once a warm-up inference has run, so the first real
request is not the slow one. Like TF Serving's `latest` policy, a newer
version folder is loaded in the background and swapped in only once warm;
requests keep using the old one meanwhile, even if its folder is deleted.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendError, BackendUnavailable
from gateway.runtimes import Runtime, load_runtime
from gateway.serving_documents import metadata_document, status_document
from gateway.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    signature: ModelSignature
    runtime: Runtime


class EmbeddedBackend:
    """Runs the model in-process; same API and responses as the TF Serving path."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self._settings = settings
        # One thread per model call that may run at once (the batcher's concurrency).
        self._executor = ThreadPoolExecutor(
            max_workers=settings.batch_concurrency, thread_name_prefix="embedded-model"
        )
        self._loaded: _Loaded | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._load_error = ""
        self._failed_versions: set[int] = set()
        self._loading_version: int | None = None  # the first load's, for the status document

    def describe(self) -> dict[str, str]:
        runtime = self._loaded.runtime.name if self._loaded else self._settings.embedded_runtime
        return {"backend": self.name, "runtime": runtime}

    async def start(self) -> None:
        self._load_task = asyncio.create_task(self._load())

    async def close(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def status(self) -> ModelStatus:
        self._load_newer_in_background()
        if self._loaded is not None:
            loaded = self._loaded.signature.version
            return ModelStatus(
                True, "AVAILABLE", loaded, document=status_document(loaded, "AVAILABLE")
            )
        version = self._loading_version
        if self._load_error:
            document = status_document(version, "END", self._load_error)
            return ModelStatus(False, "END", version, self._load_error, document)
        detail = "the model is loading and warming up"
        return ModelStatus(False, "LOADING", version, detail, status_document(version, "LOADING"))

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

    def _load_newer_in_background(self) -> None:
        if self._load_task is None or not self._load_task.done():
            return  # not started yet, or a load is under way
        try:
            newest = newest_version(self._settings.model_dir)
        except FileNotFoundError:
            return  # every folder gone: keep serving the version in memory, if any
        current = self._loaded.signature.version if self._loaded else 0
        if newest > current and newest not in self._failed_versions:
            self._load_task = asyncio.create_task(self._load(newest))

    async def _load(self, version: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        try:
            version = version or newest_version(self._settings.model_dir)
            if self._loaded is None:
                self._loading_version = version
            loaded = await loop.run_in_executor(self._executor, self._load_version, version)
        except Exception as exc:
            logger.error("embedded backend: loading version %s failed: %s", version, exc)
            # Our own messages name no host path; library errors may, so they stay in the log.
            self._load_error = (
                str(exc)
                if isinstance(exc, FileNotFoundError)
                else f"version {version} could not be loaded ({type(exc).__name__}; see the log)"
            )
            if version is not None:
                # Like TF Serving: a version that failed to load is not retried,
                # and the one already serving (if any) keeps serving.
                self._failed_versions.add(version)
            return
        self._loaded, self._load_error = loaded, ""
        logger.info("embedded backend serving on %s: %s", loaded.runtime.name, loaded.signature)

    def _load_version(self, version: int) -> _Loaded:
        """Load and warm one version (blocking; runs in a worker thread)."""
        settings = self._settings
        runtime = load_runtime(
            settings.model_dir / str(version),
            settings.embedded_runtime,
            threads=settings.inference_threads,
            copies=settings.batch_concurrency,
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


def newest_version(model_dir: Path) -> int:
    """The highest numeric version folder, as TF Serving's `latest` policy picks it."""
    try:
        children = [child for child in model_dir.iterdir() if child.is_dir()]
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot list MODEL_BASE_PATH/{model_dir.name}: {exc.strerror}"
        ) from exc
    versions = [int(child.name) for child in children if child.name.isdigit()]
    if not versions:
        raise FileNotFoundError(
            f"no numeric version folder under MODEL_BASE_PATH/{model_dir.name}; "
            "run `python export_model.py` first"
        )
    return max(versions)
