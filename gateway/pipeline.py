"""The classification pipeline: preprocess, predict, postprocess, each stage timed.

Plain asyncio; no web framework here, so the benchmark and tests can drive it directly.
"""

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from gateway import metrics
from gateway.backend import Backend
from gateway.batching import Batcher
from gateway.imaging import prepare_image
from gateway.model_assets import ModelAssets, load_assets
from gateway.ranking import Prediction, rank_top_k
from gateway.settings import Settings


@dataclass(frozen=True)
class Classification:
    """One image's answer, with what the response reports about it."""

    predictions: list[Prediction]
    original_size: tuple[int, int]
    image_format: str
    version: int
    assets: ModelAssets
    preprocess_ms: float
    inference_ms: float


class Classifier:
    """Turns uploaded bytes into ranked, labelled predictions."""

    def __init__(self, settings: Settings, backend: Backend, batcher: Batcher, executor: Executor):
        self._settings = settings
        self._backend = backend
        self._batcher = batcher
        self._executor = executor

    async def classify(self, data: bytes, top_k: int) -> Classification:
        signature = await self._backend.signature()
        loop = asyncio.get_running_loop()

        started = time.perf_counter()
        prepared = await loop.run_in_executor(
            self._executor,
            prepare_image,
            data,
            signature.image_size,
            self._settings.max_image_pixels,
        )
        decoded = time.perf_counter()
        probabilities, version = await self._batcher.predict_one(prepared.pixels)
        inferred = time.perf_counter()
        metrics.DECODE_SECONDS.observe(decoded - started)
        metrics.INFERENCE_SECONDS.observe(inferred - decoded)

        assets = load_assets(self._settings.model_dir, version)
        return Classification(
            predictions=rank_top_k(probabilities, top_k, assets.labels),
            original_size=prepared.original_size,
            image_format=prepared.format,
            version=version,
            assets=assets,
            preprocess_ms=(decoded - started) * 1000.0,
            inference_ms=(inferred - decoded) * 1000.0,
        )
