"""The embedded backend: the newest SavedModel version, run in-process by TensorFlow.

TensorFlow is imported only when this backend starts, so the gateway image
(which has no TensorFlow) never pays for it. Loading and warm-up happen off the
event loop; readiness turns true only once a warm-up inference has run.
"""

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendError, BackendUnavailable
from gateway.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _LoadedModel:
    signature: ModelSignature
    function: Any  # the concrete serving function
    module: Any  # keeps the loaded SavedModel (and its variables) alive


class EmbeddedBackend:
    """Runs the model in this process; same API and responses as the TF Serving path."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self._model_dir = settings.model_dir
        # TensorFlow parallelises each call itself; two workers let one batch
        # be prepared while another runs.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="embedded-tf")
        self._loaded: _LoadedModel | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._load_error = ""

    async def start(self) -> None:
        self._load_task = asyncio.create_task(self._load())

    async def close(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def status(self) -> ModelStatus:
        if self._loaded is not None:
            return ModelStatus(True, "AVAILABLE", self._loaded.signature.version)
        if self._load_error:
            return ModelStatus(False, "END", detail=self._load_error)
        return ModelStatus(False, "LOADING", detail="the model is loading and warming up")

    async def signature(self) -> ModelSignature:
        if self._loaded is None:
            status = await self.status()
            raise BackendUnavailable(f"The embedded model is not ready: {status.detail}.")
        return self._loaded.signature

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        loaded = self._loaded
        if loaded is None:
            raise BackendUnavailable("The embedded model is not ready yet.")
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(self._executor, _run, loaded, images)
        except Exception as exc:
            logger.exception("embedded inference failed")
            raise BackendError("The embedded model failed to run this batch.") from exc
        return BatchPrediction(probabilities, loaded.signature.version)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._loaded = await loop.run_in_executor(self._executor, load_newest, self._model_dir)
        except Exception as exc:
            self._load_error = f"loading from {self._model_dir.name}/ failed: {exc}"
            logger.error("embedded backend: %s", self._load_error)
            return
        logger.info("embedded backend ready: %s", self._loaded.signature)


def newest_version(model_dir: Path) -> int:
    """The highest numeric version folder, as TF Serving's `latest` policy picks it."""
    versions = [int(child.name) for child in _children(model_dir) if child.name.isdigit()]
    if not versions:
        raise FileNotFoundError(
            f"no numeric version folder under {model_dir}; run `python export_model.py` first"
        )
    return max(versions)


def _children(model_dir: Path) -> list[Path]:
    try:
        return [child for child in model_dir.iterdir() if child.is_dir()]
    except OSError as exc:
        raise FileNotFoundError(f"cannot list {model_dir}: {exc.strerror}") from exc


def load_newest(model_dir: Path) -> _LoadedModel:
    """Load, inspect and warm the newest version (blocking; runs in a worker thread)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # only this backend needs TensorFlow

    version = newest_version(model_dir)
    module = tf.saved_model.load(str(model_dir / str(version)))
    function = module.signatures["serving_default"]
    _, input_specs = function.structured_input_signature
    ((input_name, input_spec),) = input_specs.items()
    outputs = function.structured_outputs
    output_name = "probabilities" if "probabilities" in outputs else next(iter(outputs))
    if input_spec.dtype != tf.uint8:
        raise ValueError(f"input {input_name!r} is {input_spec.dtype.name}; expected uint8")
    _, height, width, _ = input_spec.shape.as_list()
    signature = ModelSignature(
        version=version,
        input_name=input_name,
        output_name=output_name,
        image_size=(width, height),
        num_classes=int(outputs[output_name].shape[-1]),
    )
    loaded = _LoadedModel(signature, function, module)
    _run(loaded, np.zeros((1, height, width, 3), dtype=np.uint8))
    return loaded


def _run(loaded: _LoadedModel, images: np.ndarray) -> np.ndarray:
    outputs = loaded.function(**{loaded.signature.input_name: images})
    result: np.ndarray = outputs[loaded.signature.output_name].numpy()
    return result
