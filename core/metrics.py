"""The seed's evaluation metrics: accuracy, F1, precision, recall, ROC-AUC.

Binary tasks use ``average="binary"`` on a positive class (``entailment``,
``positive``, ``yes``, ``true`` or ``1`` when present, else id 1);
multi-class tasks use ``average="macro"`` and one-vs-rest ROC-AUC. The
averaging is returned alongside so it can be logged with the numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")
# A run on calls labelled with topics (core.topic_pairs) is judged by how it tags the calls: these come first
TOPIC_METRICS = ("topic_f1_macro", "topic_f1_micro", "topic_precision_macro", "topic_recall_macro", "topic_accuracy")
POSITIVE_NAMES = ("entailment", "positive", "yes", "true", "1")
# Metrics where lower is better: selection minimises these.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "runtime")


# The HF Trainer logs what compute_metrics returns from evaluate() as eval_<name> (eval_accuracy, eval_f1...).
EVAL_PREFIX = "eval_"
# What the HF Trainer logs beside the scores: never a sensible metric to rank runs by.
BOOKKEEPING = ("epoch", "runtime", "per_second", "_seconds", "flos", "learning_rate", "grad_norm", "num_input_tokens")


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(token in name for token in LOWER_IS_BETTER)


def is_bookkeeping(metric: str) -> bool:
    """Epochs, runtimes, throughputs, FLOPs, the learning rate: logged, but no measure of a model's quality."""
    name = metric.lower()
    return any(token in name for token in BOOKKEEPING)


def metric_key(names: Collection[str], metric: str) -> str | None:
    """The name under which a run logged ``metric``: itself, else the HF Trainer's ``eval_`` form; None if neither.

    ``accuracy`` finds ``eval_accuracy`` in a run that logged no ``accuracy`` (a plain Trainer script's run).
    """
    if metric in names:
        return metric
    if not metric.startswith(EVAL_PREFIX) and EVAL_PREFIX + metric in names:
        return EVAL_PREFIX + metric
    return None


def read_as(metric: str, keys: Iterable[str]) -> str:
    """How ``metric`` was read, in words, given the names actually used for it (see :func:`metric_key`).

    ``accuracy``; ``accuracy (read as eval_accuracy, as the HF Trainer logs it)``; or, when some runs logged
    ``accuracy`` and others only ``eval_accuracy``, ``accuracy (read as eval_accuracy for the runs that log
    only that, as the HF Trainer does)``.
    """
    used = set(keys)
    others = sorted(used - {metric})
    if not others:
        return metric
    if metric in used:
        return f"{metric} (read as {', '.join(others)} for the runs that log only that, as the HF Trainer does)"
    return f"{metric} (read as {', '.join(others)}, as the HF Trainer logs it)"


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """The five classification metrics a run holds, each under its bare name, read as its ``eval_`` form
    where the run logged only that (an HF Trainer run)."""
    found = {}
    for name in METRICS:
        key = metric_key(metrics, name)
        if key is not None:
            found[name] = metrics[key]
    return found


def ordered(names: Iterable[str]) -> list[str]:
    """Metric names, the ones worth ranking by first: the five classification metrics, their ``eval_`` forms,
    the other scores and losses (sorted), then bookkeeping (epoch, runtimes, throughputs...)."""
    names = list(dict.fromkeys(names))
    first = [m for m in (*TOPIC_METRICS, *METRICS) if m in names] + \
        [EVAL_PREFIX + m for m in METRICS if EVAL_PREFIX + m in names]
    rest = sorted(m for m in names if m not in first)
    return first + [m for m in rest if not is_bookkeeping(m)] + [m for m in rest if is_bookkeeping(m)]


def default_metric(names: Sequence[str]) -> str | None:
    """The metric to rank by when nobody chose one: a topic run's ``topic_f1_macro``, else accuracy- or F1-like
    (bare or ``eval_``), else another score, else a loss; bookkeeping such as ``epoch`` or ``train_runtime`` only
    when nothing else was logged."""
    names = list(names)
    if TOPIC_METRICS[0] in names:
        return TOPIC_METRICS[0]
    for token in ("accuracy", "f1"):
        for name in (token, EVAL_PREFIX + token):
            if name in names:
                return name
    quality = [m for m in ordered(names) if not is_bookkeeping(m)]
    for token in ("accuracy", "f1", "auc", "precision", "recall", "matthews"):
        picked = next((m for m in quality if token in m.lower()), None)
        if picked:
            return picked
    scores = [m for m in quality if not lower_is_better(m)]
    return (scores or quality or ordered(names) or [None])[0]


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

