"""Scores to labelled, ranked predictions."""

import numpy as np

from gateway.ranking import label_for, rank_top_k


def test_top_k_is_sorted_best_first_with_labels() -> None:
    scores = np.array([0.1, 0.5, 0.15, 0.25], dtype=np.float32)
    ranked = rank_top_k(scores, 3, ["bg", "cat", "dog", "fox"])
    assert [p["class_id"] for p in ranked] == [1, 3, 2]
    assert [p["label"] for p in ranked] == ["cat", "fox", "dog"]
    assert ranked[0]["confidence_percent"] == 50.0
    assert isinstance(ranked[0]["probability"], float)


def test_ties_go_to_the_lower_class_id() -> None:
    ranked = rank_top_k(np.full(6, 1 / 6, dtype=np.float32), 3, [])
    assert [p["class_id"] for p in ranked] == [0, 1, 2]


def test_k_larger_than_the_classes_returns_them_all() -> None:
    assert len(rank_top_k(np.ones(4, dtype=np.float32) / 4, 10, [])) == 4


def test_missing_labels_get_stable_placeholders() -> None:
    assert label_for(7, ["background"]) == "class_7"


def test_a_label_list_of_another_length_is_not_used() -> None:
    scores = np.array([0.1, 0.5, 0.15, 0.25], dtype=np.float32)
    for labels in (["cat", "dog", "fox"], ["bg", "cat", "dog", "fox", "owl"]):
        ranked = rank_top_k(scores, 2, labels)
        assert [p["label"] for p in ranked] == ["class_1", "class_3"]
