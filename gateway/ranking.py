"""Where scores become labelled predictions."""

from collections.abc import Sequence
from typing import TypedDict

import numpy as np


class Prediction(TypedDict):
    class_id: int
    label: str
    probability: float
    confidence_percent: float


def rank_top_k(probabilities: np.ndarray, k: int, labels: Sequence[str]) -> list[Prediction]:
    """Return the `k` most probable classes, best first; ties go to the lower class id.

    `labels` name the classes only when there is exactly one per score: a list one
    line short or long would shift every name, so then every class is `class_N`.
    """
    if len(labels) != probabilities.shape[0]:
        labels = ()
    k = min(k, probabilities.shape[0])
    # Stable sort on the negated scores keeps equal scores in class-id order.
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        Prediction(
            class_id=int(class_id),
            label=label_for(int(class_id), labels),
            probability=float(probabilities[class_id]),
            confidence_percent=round(float(probabilities[class_id]) * 100.0, 2),
        )
        for class_id in order
    ]


def label_for(class_id: int, labels: Sequence[str]) -> str:
    """The human name of a class, or a stable placeholder when no label file came with the model."""
    if 0 <= class_id < len(labels):
        return labels[class_id]
    return f"class_{class_id}"
