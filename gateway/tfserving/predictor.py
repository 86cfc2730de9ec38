"""What the gRPC and REST transports share: the Predictor interface, the answer's checks, errors.

Each transport maps its own status codes (grpc_transport.py, rest_transport.py); the
errors both can raise are worded here once, so a client sees the same message
whichever transport carried the batch.
"""

from typing import Protocol

import numpy as np

from gateway.backend import ModelSignature
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable, ServableGone


class Predictor(Protocol):
    """One way of sending a batch to TF Serving's Predict."""

    transport: str

    async def predict(
        self, images: np.ndarray, signature: ModelSignature
    ) -> tuple[np.ndarray, int | None]:
        """Scores for `images`, and the version that produced them when the answer says."""
        ...

    def problem(self) -> str:
        """Why this transport cannot carry predictions right now, or ''."""
        ...

    async def close(self) -> None: ...


def check_shape(probabilities: np.ndarray, signature: ModelSignature, rows: int) -> np.ndarray:
    """Refuse an output whose shape is not [rows, num_classes]."""
    if probabilities.shape != (rows, signature.num_classes):
        raise BackendError(
            f"TF Serving returned shape {list(probabilities.shape)}, "
            f"expected [{rows}, {signature.num_classes}]."
        )
    return probabilities


def unreadable_response() -> BackendError:
    """An answer that does not parse, or lacks the signature's output."""
    return BackendError("TF Serving sent a response the gateway cannot read.")


def servable_gone(details: str) -> ServableGone:
    """TF Serving's not-found: the version asked for is not (or no longer) loaded."""
    return ServableGone(f"TF Serving has no servable version: {details}")


def unreachable() -> BackendUnavailable:
    """No connection could be made: TF Serving is down or restarting."""
    return BackendUnavailable("TF Serving is not reachable; try again shortly.")


def timed_out(timeout_seconds: float) -> BackendTimeout:
    """The gateway's own deadline for one predict call passed."""
    return BackendTimeout(f"TF Serving did not answer within {timeout_seconds:g} s.")
