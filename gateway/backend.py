"""What every model backend offers the pipeline, whatever runs the model."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

PROBABILITIES_OUTPUT = "probabilities"


def probabilities_output(output_names: Iterable[str]) -> str:
    """The output that holds the class probabilities, for every backend and runtime.

    export_model.py names it `probabilities`; a SavedModel from elsewhere usually
    has a single output, so its first one is taken.
    """
    names = list(output_names)
    if not names:
        raise ValueError("the signature has no outputs")
    return PROBABILITIES_OUTPUT if PROBABILITIES_OUTPUT in names else names[0]


@dataclass(frozen=True)
class ModelSignature:
    """What the served version expects and returns, learned from the model itself."""

    version: int
    input_name: str
    output_name: str
    image_size: tuple[int, int]  # (width, height) the input tensor wants
    num_classes: int
    signature_name: str = "serving_default"
    # TF Serving's metadata document for this version (`/model` serves it as it is).
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ModelStatus:
    """Readiness as the backend sees it now."""

    ready: bool
    state: str  # TF Serving's state names: AVAILABLE, LOADING, END, ... or UNREACHABLE
    version: int | None = None
    detail: str = ""
    # TF Serving's status document (`/health` serves it as it is); None when there is none.
    document: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BatchPrediction:
    """Scores for a batch, and the version that produced them."""

    probabilities: np.ndarray  # float32, (batch, num_classes)
    version: int


class Backend(Protocol):
    """A model server seen from the gateway: start, report status, predict, close.

    start() begins a watcher task, the only place a backend follows new versions
    (loads one, or learns its signature); close() stops it. status(), signature()
    and served_version() report and change nothing, so asking them often, or
    never, does not change which version answers; predict() may wake the watcher
    early when the model server refuses the version a batch was sent to.
    """

    name: str

    def describe(self) -> dict[str, str]:
        """How this backend runs the model, for / and /model (backend, runtime or transport)."""

    async def start(self) -> None:
        """Open connections and start the watcher; must return quickly."""

    async def close(self) -> None:
        """Stop the watcher; release every connection, thread and model."""

    async def status(self) -> ModelStatus:
        """Report whether a version is AVAILABLE right now and can be used; learns nothing."""

    async def signature(self) -> ModelSignature:
        """The signature batches are prepared for; raises BackendUnavailable if none is ready."""

    def served_version(self) -> int | None:
        """The version that answered last or is loaded now, known without asking anyone."""

    async def predict(self, images: np.ndarray) -> BatchPrediction:
        """Score a uint8 batch shaped (batch, height, width, 3)."""
