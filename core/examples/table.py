"""A run's validation predictions as an MLflow table: built, capped, logged, read back.

One row per validation example: where it stands in the file (``row``), the ``text`` (and ``hypothesis`` for
sentence pairs), ``true_label``, ``predicted_label``, ``correct``, ``confidence`` (the predicted class's
score) and one ``score: <label>`` column per class. Logged with ``mlflow.log_table`` under
:data:`ARTIFACT`, which MLflow's own UI shows as a table.

A validation set larger than ``TUNEBOARD_PREDICTIONS_MAX_ROWS`` (default 5000) keeps a random sample of that
many rows, drawn with a fixed seed (so two runs on the same file keep the same examples), and the run says
so in its :data:`SAMPLE_TAG` tag ("kept 5000 of 12000, random sample, seed 0").
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import TuneboardError

log = logging.getLogger(__name__)

ARTIFACT = "predictions/validation.json"
MAX_ROWS_VARIABLE = "TUNEBOARD_PREDICTIONS_MAX_ROWS"
DEFAULT_MAX_ROWS = 5000
SAMPLE_SEED = 0
SAMPLE_TAG = "predictions_sample"
SCORE_PREFIX = "score: "
EVIDENCE_PREFIX = "evidence: "  # a topic run's per-call table: the window that decided a tagged topic
COLUMNS = ("row", "text", "hypothesis", "true_label", "predicted_label", "correct", "confidence")


def max_rows() -> int:
    """The most rows a predictions table keeps: ``TUNEBOARD_PREDICTIONS_MAX_ROWS``, else 5000.

    Read before training starts (``core.training``), so a mistyped value stops the run before its hours of work.
    """
    raw = os.environ.get(MAX_ROWS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_ROWS
    if not raw.isdigit() or int(raw) < 1:
        raise TuneboardError(f"{MAX_ROWS_VARIABLE}={raw!r} is not a number of rows: set it to a whole number, "
                             f"1 or more (default {DEFAULT_MAX_ROWS}), or unset it.")
    return int(raw)


def sample_indices(total: int, cap: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Which of ``total`` rows a table capped at ``cap`` keeps: all of them, or a seeded sample in file order."""
    if total <= cap:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=cap, replace=False))


def build_table(rows: Sequence[str], texts: Sequence[str], hypotheses: Sequence[str] | None,
                true_ids: Sequence[int], probs: np.ndarray, id2label: Mapping[int, str]) -> pd.DataFrame:
    """One row per example: true and predicted label by name, the predicted class's score, every class's score.

    ``probs`` is (examples x classes), class ``i`` named ``id2label[i]``; ``rows`` says where each example
    stands in its file ("line 7").
    """
    probs = np.asarray(probs, dtype=float)
    names = [str(id2label.get(i, i)) for i in range(probs.shape[1])]
    predicted = probs.argmax(axis=1)
    true_ids = np.asarray(true_ids, dtype=int)
    frame = pd.DataFrame({"row": list(rows), "text": list(texts)})
    if hypotheses is not None:
        frame["hypothesis"] = list(hypotheses)
    frame["true_label"] = [names[i] for i in true_ids]
    frame["predicted_label"] = [names[i] for i in predicted]
    frame["correct"] = true_ids == predicted
    frame["confidence"] = probs[np.arange(len(probs)), predicted].round(6)
    for i, name in enumerate(names):
        frame[SCORE_PREFIX + name] = probs[:, i].round(6)
    return frame


def log_predictions(examples, probs: np.ndarray, true_ids: Sequence[int], id2label: Mapping[int, str],
                    cap: int) -> pd.DataFrame:
    """Log the active run's predictions on ``examples`` (``core.data.Examples``) as an MLflow table; return it.

    Above ``cap`` rows a seeded random sample is kept and the run's :data:`SAMPLE_TAG` says so.
    """
    import mlflow

    keep = sample_indices(len(examples), cap)
    pick = (lambda values: [values[i] for i in keep]) if len(keep) < len(examples) else list
    frame = build_table(pick(examples.rows), pick(examples.text_a),
                        pick(examples.text_b) if examples.text_b is not None else None,
                        np.asarray(true_ids)[keep], np.asarray(probs)[keep], id2label)
    mlflow.log_table(frame, artifact_file=ARTIFACT)
    if len(keep) < len(examples):
        mlflow.set_tag(SAMPLE_TAG, f"kept {len(keep)} of {len(examples)}, random sample, seed {SAMPLE_SEED} "
                                   f"({MAX_ROWS_VARIABLE}={cap})")
    return frame


NO_TOPIC = "(no topic)"
TOPIC_SEPARATOR = "; "  # a call's topics in one cell of its table


def build_call_table(rows: Sequence[str], texts: Sequence[str], truth: Sequence[Sequence[str]], scores: np.ndarray,
                     topics: Sequence[str], threshold: float,
                     evidence: Sequence[Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per call of a topic run: its true topics and the topics tagged at ``threshold`` (each joined by
    "; " in the topics' order, so a call is right when the two are the same), the likeliest topic's score, and
    one ``score: <topic>`` column per topic (its entailment probability)."""
    scores = np.asarray(scores, dtype=float)
    order = {t.casefold(): i for i, t in enumerate(topics)}

    def joined(found) -> str:
        ranked = sorted({order[t.casefold()] for t in found if t.casefold() in order})
        return TOPIC_SEPARATOR.join(topics[i] for i in ranked) or NO_TOPIC

    tagged = [[t for j, t in enumerate(topics) if scores[i, j] >= threshold] for i in range(len(scores))]
    frame = pd.DataFrame({"row": list(rows), "text": list(texts), "true_label": [joined(t) for t in truth],
                          "predicted_label": [joined(t) for t in tagged]})
    frame["correct"] = frame["true_label"] == frame["predicted_label"]
    frame["confidence"] = scores.max(axis=1).round(6) if len(topics) else 0.0
    for j, topic in enumerate(topics):
        frame[SCORE_PREFIX + topic] = scores[:, j].round(6)
    if evidence is not None:  # for each tagged topic (or the likeliest, when none is), the window that decided it
        likeliest = scores.argmax(axis=1) if len(topics) else np.zeros(len(scores), dtype=int)
        for j, topic in enumerate(topics):
            frame[EVIDENCE_PREFIX + topic] = [evidence[i][j] if scores[i, j] >= threshold or
                                              (not tagged[i] and likeliest[i] == j) else ""
                                              for i in range(len(scores))]
    return frame


def log_call_predictions(calls, scores: np.ndarray, topics: Sequence[str], threshold: float,
                         cap: int, evidence=None) -> pd.DataFrame:
    """Log a topic run's per-call table (:func:`build_call_table`) as the run's predictions table; return it.
    ``evidence``: how the calls were read (``core.scoring.topics.TopicReading``), for the deciding windows."""
    import mlflow

    keep = sample_indices(len(calls), cap)
    pick = (lambda values: [values[i] for i in keep]) if len(keep) < len(calls) else list
    windows = None
    if evidence is not None and any(count > 1 for count in evidence.split.counts):  # long calls: say where
        windows = [[evidence.evidence(i, j).text for j in range(len(topics))] for i in keep]
    frame = build_call_table(pick(calls.rows), pick(calls.text_a), pick(calls.labels), np.asarray(scores)[keep],
                             topics, threshold, windows)
    mlflow.log_table(frame, artifact_file=ARTIFACT)
    if len(keep) < len(calls):
        mlflow.set_tag(SAMPLE_TAG, f"kept {len(keep)} of {len(calls)}, random sample, seed {SAMPLE_SEED} "
                                   f"({MAX_ROWS_VARIABLE}={cap})")
    return frame


def read_predictions(mlflow_client, run_id: str) -> pd.DataFrame | None:
    """A run's predictions table, or None when it has none (runs logged before tables, or by other tools).

    A file of that name that is not one of our tables (another tool's) reads as None too, with a log line.
    """
    folder = ARTIFACT.rsplit("/", 1)[0]
    if ARTIFACT not in {f.path for f in mlflow_client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow_client.download_artifacts(run_id, ARTIFACT, tmp)
        try:
            frame = _from_json(Path(path).read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("run %s: %s is not a predictions table: %s", run_id, ARTIFACT, exc)
            return None
    missing = [c for c in ("text", "true_label", "predicted_label") if c not in frame.columns]
    if missing or not score_columns(frame):
        log.warning("run %s: %s lacks the columns %s", run_id, ARTIFACT, ", ".join(missing) or "score: *")
        return None
    return _typed(frame)


def _from_json(text: str) -> pd.DataFrame:
    """MLflow's table file: pandas' "split" form, ``{"columns": [...], "data": [[...], ...]}``."""
    data = json.loads(text)
    return pd.DataFrame(data["data"], columns=data["columns"])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as the analysis expects them, whatever JSON made of them (runs that logged older layouts too)."""
    frame = frame.copy()
    for column in ("text", "hypothesis", "true_label", "predicted_label", "row"):
        if column in frame.columns:
            frame[column] = frame[column].astype(str)
    if "row" not in frame.columns:
        frame.insert(0, "row", [f"row {i}" for i in range(1, len(frame) + 1)])
    scores = score_columns(frame)
    for column in scores:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["correct"] = frame["true_label"] == frame["predicted_label"]
    if "confidence" not in frame.columns:
        frame["confidence"] = frame[scores].max(axis=1)
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
    return frame


def score_columns(frame: pd.DataFrame) -> list[str]:
    """The ``score: <label>`` columns, in class order."""
    return [c for c in frame.columns if str(c).startswith(SCORE_PREFIX)]
