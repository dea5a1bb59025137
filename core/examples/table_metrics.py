"""The five metrics (and a topic run's ``topic_*`` metrics) from a predictions table, vectorised over resamples.

Written over the ``correct``, ``true_label``, ``predicted_label`` and ``score: <label>`` columns that
``core.examples.table.read_predictions`` gives, so any table of that shape works; :func:`why_not` says plainly
when a table cannot give a metric. The numbers are those ``core.metrics`` computes from the model's outputs
(binary tasks on the positive class, others macro-averaged, ROC-AUC one-vs-rest); a table coded once
(:func:`code_tables`) gives them for thousands of resamples at a time (:func:`from_codes`), which is what
``core.examples.significance`` bootstraps and randomizes. A topic run's per-call table also gives the ``topic_*``
metrics it logged (``core.examples.table_topics``), resampled over calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from core.examples.analysis import labels_of
from core.examples.table import SCORE_PREFIX
from core.examples.table_topics import is_topic_metric, topic_codes, topic_values, why_not_topics
from core.metrics import EVAL_PREFIX, TOPIC_METRICS, positive_id

METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")  # what a predictions table can give
NAMES = {"accuracy": "accuracy", "f1": "F1", "precision": "precision", "recall": "recall", "roc_auc": "ROC-AUC"}


def supported(metric: str) -> str | None:
    """The bare name of ``metric`` when a predictions table can give it (``eval_f1`` -> ``f1``; a topic run's
    ``topic_f1_macro`` and the other :data:`~core.metrics.TOPIC_METRICS`), else None."""
    bare = str(metric).removeprefix("metrics.").removeprefix(EVAL_PREFIX)
    return bare if bare in METRICS or is_topic_metric(bare) else None


def unit(metric: str) -> str:
    """What the metric counts over, in words: "calls" for a topic metric, else "examples"."""
    return "calls" if is_topic_metric(supported(metric) or "") else "examples"


def name_of(metric: str) -> str:
    """accuracy, F1, precision, recall, ROC-AUC; any other metric by its own name."""
    return NAMES.get(supported(metric) or "", str(metric))


def why_not(table: pd.DataFrame | None, metric: str) -> str | None:
    """Why ``metric`` cannot be computed from ``table``, in words; None when it can."""
    bare = supported(metric)
    if bare is None:
        return (f"{metric} cannot be computed from a predictions table (it holds each example's labels and "
                f"scores, which give {', '.join(NAMES.values())}, and for calls tagged with topics "
                f"{', '.join(TOPIC_METRICS)})")
    if table is None:
        return "it has no predictions table (it was logged before runs kept them, or by another tool)"
    if len(table) == 0:
        return "its predictions table holds no examples"
    labels = {"true_label", "predicted_label"} <= set(table.columns)
    if bare == "accuracy" and not labels and "correct" not in table.columns:
        return "its predictions table says neither which examples it got right nor their labels"
    if bare != "accuracy" and not labels:
        return f"its predictions table has no true and predicted labels, which {name_of(bare)} needs"
    if is_topic_metric(bare):
        return why_not_topics(table, bare)
    if bare == "roc_auc":
        seen = set(table["true_label"].astype(str))
        scored = set(labels_of(table))
        if len(seen) < 2:
            return "its validation examples hold a single class, so ROC-AUC is undefined"
        if not seen <= scored:
            return "its predictions table has no score for every class, which ROC-AUC needs"
        if not np.isfinite(table[[SCORE_PREFIX + c for c in labels_of(table)]].to_numpy(dtype=float)).all():
            return "some of its scores are missing, which ROC-AUC needs"
    return None


@dataclass(frozen=True)
class Coded:
    """Runs' predictions on the same ``n`` examples as small integer codes, one array (or a few) per run.

    Every metric is computed from the counts of codes over any leading dimensions (resamples): one ``bincount`` per
    resample gives a confusion matrix (code: true class * classes + predicted class) or, for ROC-AUC, the
    positives and negatives at each score rank (code: rank, plus the number of ranks for a positive), so 5,000
    examples x 2,000 resamples stays within a second. The bootstrap and the randomization test resample these
    arrays directly.
    """

    n: int
    runs: tuple[tuple[np.ndarray, ...], ...]  # per run: its code arrays, each (n,)
    bins: int  # how many codes an array can hold
    classes: int = 0
    averaged: tuple[int, ...] = ()  # the classes precision, recall and F1 average over (the positive one, if binary)


def _classes(tables: list[pd.DataFrame]) -> list[str]:
    """The classes in the model's order (score columns), then any label only the labels name."""
    names = [c for t in tables for c in labels_of(t)]
    for t in tables:
        if {"true_label", "predicted_label"} <= set(t.columns):
            names += sorted(set(t["true_label"].astype(str)) | set(t["predicted_label"].astype(str)))
    return list(dict.fromkeys(names))


def right_or_wrong(table: pd.DataFrame) -> np.ndarray:
    """Which examples the run got right: its labels agree (or, without labels, its ``correct`` column)."""
    if {"true_label", "predicted_label"} <= set(table.columns):
        return (table["true_label"].astype(str) == table["predicted_label"].astype(str)).to_numpy()
    return table["correct"].astype(bool).to_numpy()


def code_tables(tables: list[pd.DataFrame], metric: str) -> Coded:
    """``tables`` (the same examples in the same order) as codes for :func:`from_codes`, as ``core.metrics`` computes
    the five numbers: binary tasks on the positive class, others macro-averaged, ROC-AUC one-vs-rest; a topic metric
    as the run logged it (``core.examples.table_topics``: one array per topic)."""
    n = len(tables[0])
    if is_topic_metric(metric):
        runs, bins = topic_codes(tables, metric)
        return Coded(n, runs, bins)
    if metric == "accuracy":
        return Coded(n, tuple((right_or_wrong(t).astype(np.int64),) for t in tables), 2)
    classes = _classes(tables)
    code = {c: i for i, c in enumerate(classes)}
    true = tables[0]["true_label"].astype(str).map(code).to_numpy(dtype=np.int64)
    scored = [labels_of(t) for t in tables]
    if metric == "roc_auc":
        return _auc_codes(tables, scored, true, code)
    predicted = [t["predicted_label"].astype(str).map(code).to_numpy(dtype=np.int64) for t in tables]
    model = scored[0] or classes  # the model's classes; the labels seen when a table has no scores
    if len(model) == 2:
        averaged: tuple[int, ...] = (code[model[positive_id(dict(enumerate(model)))]],)
    else:  # core.metrics: the classes true or predicted (here: by either run, so both average over the same)
        averaged = tuple(sorted(set(true.tolist()).union(*(set(p.tolist()) for p in predicted))))
    k = len(classes)
    return Coded(n, tuple((true * k + p,) for p in predicted), k * k, k, averaged)


def _auc_codes(tables, scored, true, code) -> Coded:
    """The one-vs-rest parts of ROC-AUC (``core.metrics``: binary on the positive class's score; otherwise the
    classes seen in the true labels, scores renormalised over them when some are missing, macro-averaged). Each
    score is replaced by its rank among all runs' scores of that part: ROC-AUC depends on order alone. Code: rank,
    plus ``ranks`` for a positive (negatives' counts, then positives', per resample)."""
    names = scored[0]
    seen = sorted({names.index(c) for c in tables[0]["true_label"].astype(str)})  # positions in the score order
    per_run = []
    for table, labels in zip(tables, scored, strict=True):
        probs = table[[SCORE_PREFIX + c for c in labels]].to_numpy(dtype=float)
        if len(labels) == 2:
            pos = positive_id(dict(enumerate(labels)))
            per_run.append([(code[labels[pos]], probs[:, pos])])
            continue
        kept = probs[:, [labels.index(names[i]) for i in seen]]
        if len(seen) < len(labels):
            kept = kept / kept.sum(axis=1, keepdims=True)
        if len(seen) == 2:
            per_run.append([(code[names[seen[1]]], kept[:, 1])])
        else:
            per_run.append([(code[names[i]], kept[:, j]) for j, i in enumerate(seen)])
    dense, flags = [], []  # per part: every run's score ranks, one after the other; which examples are positive
    for k in range(len(per_run[0])):
        positive = true == per_run[0][k][0]
        ranks = stats.rankdata(np.concatenate([run[k][1] for run in per_run]), method="dense").astype(np.int64) - 1
        dense.append(_merged(ranks, np.tile(positive, len(tables))))
        flags.append(positive)
    ranks = max(int(d.max()) + 1 for d in dense)
    runs = tuple(tuple(np.split(d, len(tables))[r] + ranks * f for d, f in zip(dense, flags, strict=True))
                 for r in range(len(tables)))
    return Coded(len(true), runs, ranks * 2)


def _merged(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """``ranks`` with neighbouring ranks held by negatives only (or positives only) merged into one: ROC-AUC counts
    how many negatives rank below each positive, which such a merge never changes, and fewer ranks make each
    resample cheaper (as many ranks as the sorted scores switch between positives and negatives)."""
    held = np.zeros((int(ranks.max()) + 1, 2), dtype=bool)
    held[ranks, positive.astype(int)] = True
    kind = held[:, 1].astype(int) + 2 * (held[:, 0] & held[:, 1])  # 0 negatives only, 1 positives only, 2 both
    starts = np.ones(len(kind), dtype=bool)
    starts[1:] = (kind[1:] != kind[:-1]) | (kind[1:] == 2)
    return (np.cumsum(starts) - 1)[ranks]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _counts(codes: np.ndarray, bins: int) -> np.ndarray:
    """How often each of ``bins`` codes occurs in each row of ``codes`` (examples on the last axis): (rows, bins)."""
    rows = codes.reshape(-1, codes.shape[-1])
    shifted = rows + (np.arange(len(rows)) * bins)[:, None]
    return np.bincount(shifted.ravel(), minlength=len(rows) * bins).reshape(len(rows), bins)


def from_codes(data: Coded, metric: str, arrays: tuple[np.ndarray, ...], base: tuple | None = None) -> np.ndarray:
    """``metric`` of one run from its code ``arrays`` (any leading dimensions; examples on the last axis).

    ``base``: counts (one per array) to add to every row's: the examples left out of ``arrays`` because they
    cannot change the answer (``significance``'s randomization test).
    """
    lead = arrays[0].shape[:-1]
    counts = [_counts(a, data.bins) for a in arrays]
    if base is not None:
        for c, extra in zip(counts, base, strict=True):
            c += extra
    if is_topic_metric(metric):
        return topic_values(counts, metric).reshape(lead)
    if metric == "accuracy":
        return (counts[0][:, 1] / counts[0].sum(axis=1)).reshape(lead)
    if metric == "roc_auc":
        return np.mean([_auc(c.reshape(len(c), 2, -1)) for c in counts], axis=0).reshape(lead)
    k = data.classes
    matrix = counts[0].reshape(-1, k, k)  # (rows, true, predicted)
    values = []
    for c in data.averaged:
        tp = matrix[:, c, c]
        fp, fn = matrix[:, :, c].sum(axis=1) - tp, matrix[:, c, :].sum(axis=1) - tp
        values.append(_ratio(tp, tp + fp) if metric == "precision" else _ratio(tp, tp + fn) if metric == "recall"
                      else _ratio(2 * tp, 2 * tp + fp + fn))
    return np.mean(values, axis=0).reshape(lead)


def _auc(counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row from (rows, [negatives, positives], ranks): the chance a positive outranks a negative,
    ties counting half; NaN for a row without both kinds."""
    negatives, positives = counts[:, 0], counts[:, 1]
    # twice the wins: each positive beats the negatives ranked below it, and ties half; in integers, row by row
    twice = 2 * np.cumsum(negatives, axis=1) - negatives
    wins = np.einsum("ij,ij->i", positives, twice) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / (positives.sum(axis=1) * negatives.sum(axis=1))


def metric_value(table: pd.DataFrame, metric: str) -> float:
    """``metric`` computed from ``table`` (as ``core.metrics`` computes it from the model's outputs); raises
    ValueError saying why when the table cannot give it (:func:`why_not`)."""
    why = why_not(table, metric)
    if why:
        raise ValueError(why)
    bare = supported(metric)
    data = code_tables([table], bare)
    return float(from_codes(data, bare, data.runs[0]))
