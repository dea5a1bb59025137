"""core.metrics: the seed's five metrics against sklearn on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from core.metrics import classification_metrics, lower_is_better


def probs_from_positive(p: list[float], positive: int) -> np.ndarray:
    """Two-column probabilities with ``p`` in the ``positive`` column."""
    p = np.asarray(p, dtype=float)
    out = np.empty((len(p), 2))
    out[:, positive] = p
    out[:, 1 - positive] = 1 - p
    return out


LABELS = np.array([0, 0, 0, 1, 1, 1, 0, 1])
P_ENTAILMENT = [0.9, 0.7, 0.4, 0.65, 0.6, 0.1, 0.55, 0.3]  # probability of class 0 ("entailment")


def test_binary_uses_entailment_as_positive_even_when_it_is_id_0():
    probs = probs_from_positive(P_ENTAILMENT, positive=0)
    metrics, details = classification_metrics(LABELS, probs, {0: "entailment", 1: "not_entailment"})
    preds = probs.argmax(axis=1)
    assert details["average"] == "binary"
    assert details["positive_label"] == "entailment"
    assert metrics["accuracy"] == pytest.approx(accuracy_score(LABELS, preds))
    assert metrics["f1"] == pytest.approx(f1_score(LABELS, preds, pos_label=0))
    assert metrics["precision"] == pytest.approx(precision_score(LABELS, preds, pos_label=0))
    assert metrics["recall"] == pytest.approx(recall_score(LABELS, preds, pos_label=0))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(LABELS == 0, probs[:, 0]))
    # the positive class matters: with id 1 as positive the numbers differ
    assert metrics["precision"] != pytest.approx(precision_score(LABELS, preds, pos_label=1))
    assert metrics["recall"] != pytest.approx(recall_score(LABELS, preds, pos_label=1))
    assert set(metrics) == {"accuracy", "f1", "precision", "recall", "roc_auc"}
    assert details["confusion_matrix"]["labels"] == ["entailment", "not_entailment"]
    assert np.asarray(details["confusion_matrix"]["matrix"]).sum() == len(LABELS)


def test_binary_with_entailment_at_id_1():
    labels = 1 - LABELS
    probs = probs_from_positive(P_ENTAILMENT, positive=1)
    metrics, details = classification_metrics(labels, probs, {0: "not_entailment", 1: "entailment"})
    preds = probs.argmax(axis=1)
    assert details["positive_label"] == "entailment"
    assert metrics["f1"] == pytest.approx(f1_score(labels, preds, pos_label=1))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))


def test_binary_without_named_positive_uses_id_1():
    probs = probs_from_positive(P_ENTAILMENT, positive=0)
    metrics, details = classification_metrics(LABELS, probs, {0: "billing", 1: "shipping"})
    preds = probs.argmax(axis=1)
    assert details["positive_label"] == "shipping"
    assert metrics["recall"] == pytest.approx(recall_score(LABELS, preds, pos_label=1))


THREE_LABELS = np.array([0, 1, 2, 0, 1, 2, 1, 0, 2])
THREE_NAMES = {0: "fees", 1: "rollover", 2: "withdrawal"}


def test_three_classes_use_macro_averaging():
    probs = np.array([
        [0.70, 0.18, 0.12], [0.21, 0.52, 0.27], [0.13, 0.31, 0.56],
        [0.34, 0.41, 0.25], [0.55, 0.30, 0.15], [0.47, 0.24, 0.29],
        [0.22, 0.35, 0.43], [0.61, 0.29, 0.10], [0.16, 0.19, 0.65],
    ])
    labels = THREE_LABELS
    metrics, details = classification_metrics(labels, probs, THREE_NAMES)
    preds = probs.argmax(axis=1)
    assert details["average"] == "macro"
    assert "positive_label" not in details
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert metrics["f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert metrics["precision"] == pytest.approx(precision_score(labels, preds, average="macro"))
    assert metrics["recall"] == pytest.approx(recall_score(labels, preds, average="macro"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert metrics["f1"] != pytest.approx(f1_score(labels, preds, average="micro"))
    assert details["roc_average"] == "macro one-vs-rest"
    assert details["confusion_matrix"]["labels"] == ["fees", "rollover", "withdrawal"]


def test_three_class_roc_auc_with_tied_scores_matches_sklearn():
    probs = np.array([
        [0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3],
        [0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6],
    ])
    metrics, _ = classification_metrics(THREE_LABELS, probs, THREE_NAMES)
    expected = roc_auc_score(THREE_LABELS, probs, multi_class="ovr", average="macro")
    assert metrics["roc_auc"] == pytest.approx(expected)


def test_single_class_validation_skips_roc_auc_with_a_reason():
    labels = np.array([0, 0, 0, 0])
    probs = probs_from_positive([0.9, 0.6, 0.3, 0.8], positive=0)
    metrics, details = classification_metrics(labels, probs, {0: "entailment", 1: "not_entailment"})
    assert "roc_auc" not in metrics
    assert "single class" in details["roc_auc_skipped"]
    assert "ROC-AUC" in details["roc_auc_skipped"]
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(1.0)


@pytest.mark.parametrize("name, lower", [
    ("eval_loss", True), ("loss", True), ("eval_runtime", True),
    ("accuracy", False), ("eval_f1", False), ("roc_auc", False),
])
def test_lower_is_better(name, lower):
    assert lower_is_better(name) is lower
