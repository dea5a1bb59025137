"""How well topic tagging matches the true topics of labelled calls: precision, recall and F1 per topic.

A validation file for this holds one call per row and its true topics in one cell (``"fees; tax forms"``:
separated by ``;``, ``|`` or ``,``). The calls are tagged as in :mod:`core.scoring.topics` (a topic is tagged
when its entailment probability reaches the threshold), then each topic is a yes/no question scored on its own,
with the micro average (every call-topic decision counted once) and the macro average (each topic weighs the
same) below the per-topic rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from core.errors import TopicError
from core.scoring.topics import DEFAULT_TEMPLATE, DEFAULT_THRESHOLD, check_threshold, check_topics, topic_scores

_SEPARATORS = re.compile(r"[;|,\n]")
COLUMNS = ["topic", "support", "tagged", "precision", "recall", "f1"]


def split_topics(cell) -> list[str]:
    """The true topics written in one cell: ``"fees; tax forms"`` -> ``["fees", "tax forms"]`` (empty: none)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, Iterable) and not isinstance(cell, str):
        return [str(t).strip() for t in cell if str(t).strip()]
    return [part.strip() for part in _SEPARATORS.split(str(cell)) if part.strip()]


def truth_matrix(truth: Sequence[Iterable[str] | str], topics: Sequence[str]) -> np.ndarray:
    """One row per call, one boolean column per candidate topic (matched ignoring case).

    A true topic that is not among the candidates is refused, naming the row: it could never be tagged, so
    the scores would blame the model for the topic list.
    """
    topics = check_topics(topics)
    column = {t.casefold(): j for j, t in enumerate(topics)}
    matrix = np.zeros((len(truth), len(topics)), dtype=bool)
    for i, cell in enumerate(truth):
        for topic in split_topics(cell):
            j = column.get(topic.casefold())
            if j is None:
                raise TopicError(f"Row {i + 1}: its true topic {topic!r} is not among the candidate topics "
                                 f"({', '.join(topics)}). Add it to the topics, or correct the row.", key="topics")
            matrix[i, j] = True
    return matrix


def topic_metrics(truth: Sequence[Iterable[str] | str], scores: np.ndarray, topics: Sequence[str],
                  threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Per-topic support, tagged count, precision, recall and F1, then ``micro avg`` and ``macro avg`` rows.

    A topic never tagged has precision 0 (and one never true, recall 0), as scikit-learn's ``zero_division=0``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    topics = check_topics(topics)
    threshold = check_threshold(threshold)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if scores.shape != (len(truth), len(topics)):
        raise TopicError(f"{scores.shape[0]} x {scores.shape[1]} scores for {len(truth)} calls and {len(topics)} "
                         "topics: give one score per call and topic.", key="topics")
    if len(truth) == 0:
        raise TopicError("No calls to evaluate: the validation file has no rows.", key="transcripts")
    expected = truth_matrix(truth, topics)
    predicted = scores >= threshold
    precision, recall, f1, support = precision_recall_fscore_support(expected, predicted, average=None,
                                                                     zero_division=0)
    rows = [{"topic": t, "support": int(support[j]), "tagged": int(predicted[:, j].sum()),
             "precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j])}
            for j, t in enumerate(topics)]
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(expected, predicted, average=average, zero_division=0)
        rows.append({"topic": f"{average} avg", "support": int(expected.sum()), "tagged": int(predicted.sum()),
                     "precision": float(p), "recall": float(r), "f1": float(f)})
    return pd.DataFrame(rows, columns=COLUMNS)


def evaluate_topics(model, tokenizer, transcripts: Sequence[str], truth: Sequence[Iterable[str] | str],
                    topics: Sequence[str], template: str = DEFAULT_TEMPLATE, threshold: float = DEFAULT_THRESHOLD, *,
                    batch_size: int = 32, max_length: int = 256, device: str | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Tag ``transcripts`` and compare with their true topics: (scores, :func:`topic_metrics`'s table).

    The true topics are checked before the model runs, so a typo in row 900 costs no scoring time.
    """
    if len(truth) != len(transcripts):
        raise TopicError(f"{len(transcripts)} calls but {len(truth)} sets of true topics: give one per call.",
                         key="transcripts")
    truth_matrix(truth, topics)
    check_threshold(threshold)
    scores = topic_scores(model, tokenizer, transcripts, topics, template, batch_size=batch_size,
                          max_length=max_length, device=device, on_progress=on_progress)
    return scores, topic_metrics(truth, scores, topics, threshold)
