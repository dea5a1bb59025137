"""The seed's evaluation metrics: accuracy, F1, precision, recall, ROC-AUC.

Binary tasks use ``average="binary"`` on a positive class (``entailment``,
``positive``, ``yes``, ``true`` or ``1`` when present, else id 1);
multi-class tasks use ``average="macro"`` and one-vs-rest ROC-AUC. The
averaging is returned alongside so it can be logged with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")
POSITIVE_NAMES = ("entailment", "positive", "yes", "true", "1")
# Metrics where lower is better: selection minimises these.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "runtime")


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(token in name for token in LOWER_IS_BETTER)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def positive_id(id2label: Mapping[int, str]) -> int:
    """The class whose precision/recall a binary task reports."""
    lowered = {i: str(name).lower() for i, name in id2label.items()}
    for wanted in POSITIVE_NAMES:
        for i, name in lowered.items():
            if name == wanted:
                return int(i)
    return 1


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           id2label: Mapping[int, str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Return (metrics, details): the five numbers, and how they were averaged plus the raw curves."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
        roc_curve,
    )

    labels = np.asarray(labels)
    preds = probs.argmax(axis=-1)
    n_classes = probs.shape[-1]
    present = sorted(set(labels.tolist()) | set(preds.tolist()))
    binary = n_classes == 2
    details: dict[str, Any] = {"average": "binary" if binary else "macro"}
    if binary:
        pos = positive_id(id2label)
        details["positive_label"] = str(id2label.get(pos, pos))
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average="binary", pos_label=pos,
                                                     zero_division=0)
    else:
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average="macro", labels=present,
                                                     zero_division=0)
    metrics = {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f), "precision": float(p),
               "recall": float(r)}
    classes = list(range(n_classes))
    details["confusion_matrix"] = {
        "labels": [str(id2label.get(i, i)) for i in classes],
        "matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
    }
    if len(set(labels.tolist())) < 2:
        details["roc_auc_skipped"] = "the validation set holds a single class, so ROC-AUC is undefined"
        return metrics, details
    if binary:
        metrics["roc_auc"] = float(roc_auc_score(labels == pos, probs[:, pos]))
        fpr, tpr, thresholds = roc_curve(labels == pos, probs[:, pos])
        details["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}
    else:
        seen = sorted(set(labels.tolist()))
        scores = probs[:, seen]
        if len(seen) < n_classes:  # ROC-AUC needs scores over the classes present only
            scores = scores / scores.sum(axis=1, keepdims=True)
        metrics["roc_auc"] = float(roc_auc_score(labels, scores, multi_class="ovr", average="macro",
                                                 labels=seen)) if len(seen) > 2 else \
            float(roc_auc_score(labels == seen[1], scores[:, 1]))
        details["roc_average"] = "macro one-vs-rest"
    return metrics, details
