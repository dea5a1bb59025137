"""The ``topic_*`` metrics from a topic run's per-call predictions table, vectorised over resamples of calls.

A topic run (calls labelled with topics, ``core.topic_pairs``) logs one row per validation call
(``core.examples.table.build_call_table``): its true topics and the topics it tags, each cell the topics joined by
"; " ("(no topic)" for none), and one ``score: <topic>`` column per candidate topic. The numbers here are the ones
``core.training.run`` logs from the same tags (``core.scoring.topic_eval.topic_metrics``: each topic a yes/no
question, ``zero_division=0``; macro: the mean over every candidate topic; micro: every call-topic decision
counted once; ``topic_accuracy``: the likeliest topic is one of the call's own).

A call becomes small integer codes, one array per topic: ``2 * true + tagged`` (0 neither, 1 tagged only,
2 missed, 3 hit), so one ``bincount`` per topic and resample gives that topic's counts, and 2,000 resamples of a few
hundred calls and ten topics take a fraction of a second; ``topic_accuracy`` needs one array (1: the likeliest topic
is true). ``core.examples.table_metrics`` wraps these codes for ``core.examples.significance``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.examples.analysis import label_sets, labels_of
from core.examples.table import SCORE_PREFIX
from core.metrics import TOPIC_METRICS

STATES = 4  # a call and one topic: 2 * true + tagged


def is_topic_metric(metric: str) -> bool:
    """Whether ``metric`` (bare) is one of :data:`core.metrics.TOPIC_METRICS`."""
    return metric in TOPIC_METRICS


def why_not_topics(table: pd.DataFrame, metric: str) -> str | None:
    """Why ``table`` (with rows, true and predicted labels) cannot give the topic metric ``metric``; None if it can."""
    if "hypothesis" in table.columns:
        return f"its predictions table holds sentence pairs, not calls tagged with topics, which {metric} needs"
    topics = labels_of(table)
    if not topics:
        return f"its predictions table names no topics (no score columns), which {metric} needs"
    for column in ("true_label", "predicted_label"):
        unknown = set().union(*label_sets(table[column], topics)) - set(topics)
        if unknown:
            return (f"its calls name the topic {min(unknown)!r}, which has no score column in its predictions "
                    f"table, so {metric} cannot be computed from it")
    if metric == "topic_accuracy" and not np.isfinite(table[[SCORE_PREFIX + t for t in topics]]
                                                      .to_numpy(dtype=float)).all():
        return "some of its scores are missing, which topic_accuracy needs"
    return None


def topic_matrix(values: Sequence, topics: Sequence[str]) -> np.ndarray:
    """One row per call, one boolean column per topic: the topics each cell names."""
    column = {t: j for j, t in enumerate(topics)}
    matrix = np.zeros((len(values), len(topics)), dtype=bool)
    for i, found in enumerate(label_sets(values, topics)):
        matrix[i, [column[t] for t in found]] = True
    return matrix


def topic_codes(tables: list[pd.DataFrame], metric: str) -> tuple[tuple[tuple[np.ndarray, ...], ...], int]:
    """(per table: its code arrays, each (calls,); how many codes an array can hold) for ``tables`` holding the same
    calls in the same order. The topics are every table's score columns (the same list for runs of one grid)."""
    if metric == "topic_accuracy":  # the likeliest topic, by the table's own scores, is one of the call's own
        runs = []
        for table in tables:
            topics = labels_of(table)
            scores = table[[SCORE_PREFIX + t for t in topics]].to_numpy(dtype=float)
            truth = topic_matrix(tables[0]["true_label"], topics)
            runs.append((truth[np.arange(len(table)), scores.argmax(axis=1)].astype(np.int64),))
        return tuple(runs), 2
    topics = list(dict.fromkeys(t for table in tables for t in labels_of(table)))
    truth = topic_matrix(tables[0]["true_label"], topics).astype(np.int64)
    runs = tuple(tuple(2 * truth[:, j] + tagged[:, j] for j in range(len(topics)))
                 for tagged in (topic_matrix(t["predicted_label"], topics).astype(np.int64) for t in tables))
    return runs, STATES


def topic_values(counts: list[np.ndarray], metric: str) -> np.ndarray:
    """``metric`` for each row from the counts of its codes: one (rows, bins) array per code array."""
    if metric == "topic_accuracy":
        return counts[0][:, 1] / counts[0].sum(axis=1)
    states = np.stack(counts)  # (topics, rows, STATES)
    tp, fp, fn = states[..., 3], states[..., 1], states[..., 2]
    if metric == "topic_f1_micro":
        tp, fp, fn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
        return _ratio(2 * tp, 2 * tp + fp + fn)
    per_topic = {"topic_f1_macro": lambda: _ratio(2 * tp, 2 * tp + fp + fn),
                 "topic_precision_macro": lambda: _ratio(tp, tp + fp),
                 "topic_recall_macro": lambda: _ratio(tp, tp + fn)}[metric]()
    return per_topic.mean(axis=0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
