"""A model backend for in-process API tests: every answer the app gets is chosen by the test.

`create_app(settings, FakeBackend(...))` is the real gateway (middleware, routes,
pipeline, batcher, problem documents) with this in place of TF Serving or the
embedded model, so API behaviour is tested without a child process, a socket or
an export. The labels and provenance the routes read from MODEL_BASE_PATH come
from `write_model_files`.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.errors import BackendUnavailable
from gateway.model_assets import EXPORT_INFO_FILE, LABELS_FILE
from gateway.model_config import ModelEntry
from gateway.serving_documents import metadata_document, status_document
from gateway.settings import Settings
from gateway.target import Target

MODEL_NAME = "mobilenet"
NUM_CLASSES = 1001
IMAGE_SIZE = (224, 224)  # (width, height), as the exported MobileNet wants
UNTRAINED = {"trained": False, "source": "random", "source_detail": "random weights"}


def ramp_scores(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Probabilities rising with the class id: no two are equal, the last class is the top one."""
    weights = np.arange(1, num_classes + 1, dtype=np.float64)
    return (weights / weights.sum()).astype(np.float32)


def label_for(class_id: int) -> str:
    """The name `write_model_files` gives a class, so a test can check every pairing."""
    return f"label {class_id}"


class FakeBackend:
    """The Backend protocol, with readiness, version, scores, failure and delay set by the test.

    The attributes may be changed while the app runs; the next call sees the change.
    """

    name = "fake"

    def __init__(
        self,
        *,
        ready: bool = True,
        version: int = 1,
        unready_state: str = "LOADING",
        detail: str = "",
        scores: np.ndarray | None = None,
        error: Exception | None = None,
        delay_s: float = 0.0,
        image_size: tuple[int, int] = IMAGE_SIZE,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        self.ready = ready
        self.version = version
        # The state reported while not ready, in TF Serving's names; UNREACHABLE is what
        # the TF Serving backend reports when the server does not answer (no document then).
        self.unready_state = unready_state
        self.detail = detail
        self.scores = ramp_scores(num_classes) if scores is None else scores
        self.error = error  # raised by every predict call
        self.delay_s = delay_s  # predict sleeps this long first
        self.image_size = image_size
        self.num_classes = num_classes
        self.batches: list[np.ndarray] = []  # every batch predict was given, in order
        self.predicting = asyncio.Event()  # set once predict has been called
        self.started = False
        self.closed = False

    def open_lane(self, settings: Settings, entry: ModelEntry, target: Target) -> "FakeBackend":
        """A backend for another version's lane: this one's scores and shape, that version."""
        return FakeBackend(
            version=target.version or self.version,
            scores=self.scores,
            image_size=self.image_size,
            num_classes=self.num_classes,
        )

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "transport": "in-process"}

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def status(self) -> ModelStatus:
        if self.ready:
            document = status_document(self.version, "AVAILABLE")
            return ModelStatus(True, "AVAILABLE", self.version, self.detail, document)
        state, detail = self.unready_state, self._unready_detail()
        if state == "UNREACHABLE":
            return ModelStatus(False, state, detail=detail)
        return ModelStatus(False, state, self.version, detail, status_document(self.version, state))

    async def signature(self) -> ModelSignature:
        if not self.ready:
            raise BackendUnavailable(
                f"No model version is being served yet: {self._unready_detail()}"
            )
        signature = ModelSignature(
            version=self.version,
            input_name="images",
            output_name="probabilities",
            image_size=self.image_size,
            num_classes=self.num_classes,
        )
        return replace(signature, metadata=metadata_document(MODEL_NAME, signature))

    def served_version(self) -> int | None:
        return self.version if self.ready else None

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        self.batches.append(images)
        self.predicting.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return BatchPrediction(np.tile(self.scores, (len(images), 1)), self.version)

    def _unready_detail(self) -> str:
        return self.detail or f"version {self.version} is {self.unready_state}"


def write_model_files(
    model_root: Path,
    version: int = 1,
    *,
    labels: Sequence[str] | None = None,
    export_info: dict[str, Any] | None = None,
) -> Path:
    """MODEL_BASE_PATH holding what the gateway reads beside the graph: labels and export_info.

    By default: NUM_CLASSES labels named by `label_for`, and untrained weights, as
    `export_model.py --source random` writes them.
    """
    version_dir = model_root / MODEL_NAME / str(version)
    (version_dir / LABELS_FILE).parent.mkdir(parents=True, exist_ok=True)
    if labels is None:
        labels = [label_for(class_id) for class_id in range(NUM_CLASSES)]
    (version_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))
    info = UNTRAINED if export_info is None else export_info
    (version_dir / EXPORT_INFO_FILE).write_bytes(orjson.dumps(info))
    return model_root


class GivenSettings(Settings):
    """Settings from the values given only: a developer's API_KEYS or MODEL_NAME changes nothing."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def fake_settings(model_root: Path, **overrides: Any) -> Settings:
    """Settings for an in-process gateway serving `model_root`, validated as at start-up."""
    # In-process semantics: versions are the folders under model_root, and lanes for
    # other versions get their own FakeBackend (FakeBackend.open_lane), not TF Serving.
    overrides.setdefault("inference_backend", "embedded")
    return GivenSettings(model_name=MODEL_NAME, model_base_path=model_root, **overrides)
