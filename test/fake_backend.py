"""A model backend for in-process API tests: every answer the app gets is chosen by the test.

`create_app(settings, FakeBackend(...))` is the real gateway (middleware, routes,
pipeline, batcher, problem documents) with this in place of TF Serving or the
embedded model, so API behaviour is tested without a child process, a socket or
an export. The labels and provenance the routes read from MODEL_BASE_PATH come
from `write_model_files`.
"""

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gateway.backend import BatchPrediction, ModelSignature, ModelStatus
from gateway.embedded import version_folders
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
        # When set to an event, predict (after recording its batch) waits for it: a
        # test holds a call in flight and lets it go when it has looked.
        self.predict_gate: asyncio.Event | None = None
        # Every backend open_lane made, with its target, in order; lane_start_gate is
        # handed to each, whose start() then waits for it (a lane still opening).
        self.lane_backends: list[tuple[Target, FakeBackend]] = []
        self.lane_start_gate: asyncio.Event | None = None
        self.start_gate: asyncio.Event | None = None
        self.start_calls = 0
        self.started = False
        self.closed = False

    def open_lane(self, settings: Settings, entry: ModelEntry, target: Target) -> "FakeBackend":
        """A backend for another version's lane: this one's scores and shape, that version.

        A lane for a model without a version serves what the in-process backend would:
        the newest version folder its policy serves (this backend's version if none).
        """
        version = target.version
        if version is None:
            try:
                version = max(entry.policy.served(version_folders(entry.path)), default=None)
            except FileNotFoundError:
                version = None
        lane = FakeBackend(
            version=self.version if version is None else version,
            scores=self.scores,
            image_size=self.image_size,
            num_classes=self.num_classes,
        )
        lane.start_gate = self.lane_start_gate
        self.lane_backends.append((target, lane))
        return lane

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "transport": "in-process"}

    async def start(self) -> None:
        self.start_calls += 1
        if self.start_gate is not None:
            await self.start_gate.wait()
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
        if self.predict_gate is not None:
            await self.predict_gate.wait()
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


def write_golden_answer(
    model_root: Path,
    version: int,
    photo: bytes,
    probabilities: Sequence[float] | np.ndarray | None = None,
    *,
    photo_file: str = "golden_photo.jpg",
    l1: float = 0.01,
) -> Path:
    """golden_answer.json and its photograph, as an export writes them (gateway/golden.py).

    By default the expected answer is `ramp_scores()`, what a FakeBackend answers,
    for IMAGE_SIZE pixels: a version served by a FakeBackend passes its check.
    """
    row = [float(p) for p in (ramp_scores() if probabilities is None else probabilities)]
    order = sorted(range(len(row)), key=lambda i: -row[i])
    ranked = [{"class_id": i, "label": label_for(i), "probability": row[i]} for i in order[:5]]
    document = {
        "format": 1,
        "photo": {"file": photo_file, "sha256": hashlib.sha256(photo).hexdigest()},
        "input": {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1], "dtype": "uint8"},
        "computed_by": "test/fake_backend.py",
        "expected": {
            "top1": ranked[0],
            "top1_margin": row[order[0]] - row[order[1]],
            "top5": ranked,
            "probabilities": row,
        },
        "tolerance": {"l1": l1},
    }
    folder = model_root / MODEL_NAME / str(version) / "assets.extra"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "golden_answer.json").write_bytes(orjson.dumps(document))
    (folder / photo_file).write_bytes(photo)
    return folder


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
