"""The transcripts behind the numbers: every run's validation predictions, and what they tell.

- ``table``: one row per validation example (text, hypothesis, true and predicted label, each class's score),
  logged with ``mlflow.log_table`` by every evaluated run, a seeded random sample above a cap; read back;
- ``analysis``: filters, per-label precision / recall / F1 / support, where two runs disagree, and what a
  candidate changes against the model in production ("fixes 23, breaks 5");
- ``evaluation``: the production version scored on a candidate's validation file, as a background job,
  so a promotion compares like with like;
- ``table_metrics``, ``table_topics``, ``significance``: the five metrics (and a topic run's ``topic_*`` metrics,
  over its calls) from a table, and whether a difference between two runs is more than chance (paired, example by
  example; one run's interval; what a validation set can tell);
- ``noise``: which runs are within noise of the best.

Pure functions over DataFrames, except where a name says it reads or writes MLflow.
"""

from __future__ import annotations

from core.examples.analysis import (
    Changes,
    changes,
    disagreements,
    evidence,
    evidence_lines,
    filter_examples,
    labels_of,
    per_label,
    per_label_by_run,
    shorten,
)
from core.examples.table import (
    ARTIFACT,
    MAX_ROWS_VARIABLE,
    SAMPLE_TAG,
    build_table,
    log_predictions,
    max_rows,
    read_predictions,
)

__all__ = ["ARTIFACT", "MAX_ROWS_VARIABLE", "SAMPLE_TAG", "Changes", "build_table", "changes", "disagreements",
           "evidence", "evidence_lines", "filter_examples", "labels_of", "log_predictions", "max_rows", "per_label",
           "per_label_by_run", "read_predictions", "shorten"]
