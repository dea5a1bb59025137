"""Comparing runs: the names in a runs DataFrame, the best run overall or per group, gains, safe CSV.

Pure functions over the DataFrame that ``core.runs.runs_frame`` builds (one
row per run, ``metrics.*``, ``params.*`` and ``tags.*`` columns). Any column
may be missing and any cell NaN: runs logged by other tools lack our tags.
Candidates are finished runs that are not baselines and have a finite value
of the metric; loss-like metrics are minimised, the rest maximised, and ties
go to the run that started first, as in ``ModelSelector``. A run that did not
log the metric is read at its HF Trainer ``eval_`` form (``accuracy`` ->
``eval_accuracy``); ``metric_label`` says when that happened. A run holds a
model when its ``model_uri`` cell is set (``core.runs.load_frame`` fills it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from core import metrics as metrics_mod

PREFERRED = metrics_mod.METRICS  # accuracy, f1, precision, recall, roc_auc: listed first, in this order
DISPLAY = {"accuracy": "Accuracy", "f1": "F1", "precision": "Precision", "recall": "Recall", "roc_auc": "ROC-AUC"}
HIDDEN_TAGS = ("model_uri", "output_dir", "error")
HIDDEN_TAG_PREFIXES = ("mlflow.", "job_")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NOT_SET = "(not set)"


def _names(df: pd.DataFrame, prefix: str) -> list[str]:
    return sorted(str(c)[len(prefix):] for c in df.columns if str(c).startswith(prefix))


def metric_col(metric: str) -> str:
    """The column of ``metric`` (a bare name such as ``accuracy``, or already ``metrics.accuracy``)."""
    return metric if metric.startswith("metrics.") else f"metrics.{metric}"


def metric_names(df: pd.DataFrame) -> list[str]:
    """Logged metrics, those worth ranking by first: accuracy, f1, precision, recall, roc_auc (those present),
    their ``eval_`` forms, other scores and losses, then bookkeeping such as ``epoch`` or ``train_runtime``."""
    return metrics_mod.ordered(_names(df, "metrics."))


def default_metric(df: pd.DataFrame) -> str | None:
    """The metric a page opens on: accuracy- or F1-like (``accuracy``, ``f1``, ``eval_accuracy``...), never
    ``epoch``, a loss or a runtime while a score was logged (None when no metric was)."""
    return metrics_mod.default_metric(metric_names(df))


def param_names(df: pd.DataFrame) -> list[str]:
    """Logged params, sorted, without the ``params.`` prefix."""
    return _names(df, "params.")


def tag_names(df: pd.DataFrame) -> list[str]:
    """Tags a person cares about: MLflow's own, the queue's ``job_*`` and bookkeeping tags left out."""
    return [t for t in _names(df, "tags.") if not t.startswith(HIDDEN_TAG_PREFIXES) and t not in HIDDEN_TAGS]


def group_columns(df: pd.DataFrame) -> dict[str, str]:
    """{label: column} of every tag and param runs can be grouped by, e.g. ``"tag: base_model_name"``."""
    groups = {f"tag: {t}": f"tags.{t}" for t in tag_names(df)}
    groups.update({f"param: {p}": f"params.{p}" for p in param_names(df)})
    return groups


def _column(df: pd.DataFrame, column: str) -> pd.Series:
    """The column, or an all-NaN one of the same length when the DataFrame lacks it."""
    if column in df.columns:
        return df[column]
    return pd.Series(np.nan, index=df.index, dtype=object)


def _floats(df: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(_column(df, column), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)  # a new array: the frame's own data stays as it was


def _eval_form(metric: str) -> str | None:
    bare = metric.removeprefix("metrics.")
    return None if bare.startswith(metrics_mod.EVAL_PREFIX) else metrics_mod.EVAL_PREFIX + bare


def _values(df: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric as floats, read as its ``eval_`` form where a run lacks it (NaN where missing or not finite)."""
    values = _floats(df, metric_col(metric))
    other = _eval_form(metric)
    if other and metric_col(other) in df.columns:
        values = np.where(np.isnan(values), _floats(df, metric_col(other)), values)
    return values


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """The metric of each run, indexed like ``df``, read as ``eval_<metric>`` where a run logged only that."""
    return pd.Series(_values(df, metric), index=df.index, name=metric_col(metric), dtype=float)


def value_of(row: pd.Series, metric: str) -> float:
    """One run's (one row's) value of the metric, read as its ``eval_`` form where it lacks it (NaN if neither)."""
    return float(_values(row.to_frame().T, metric)[0])


def metric_label(df: pd.DataFrame, metric: str) -> str:
    """``metric``, or how it was read for the candidates, e.g. ``accuracy (read as eval_accuracy, as the HF
    Trainer logs it)``."""
    rows = df[_finished(df) & ~_is_baseline(df)]
    own = np.isfinite(_floats(rows, metric_col(metric)))
    used = [metric] if own.any() else []
    other = _eval_form(metric)
    if other and (np.isfinite(_floats(rows, metric_col(other))) & ~own).any():
        used.append(other)
    return metrics_mod.read_as(metric.removeprefix("metrics."), used)


def with_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``df`` with the metric's column holding what :func:`metric_values` reads (for charts and tables)."""
    return df.assign(**{metric_col(metric): _values(df, metric)}) if len(df) else df


def holds_model(df: pd.DataFrame) -> np.ndarray:
    """Which runs hold a model: a ``model_uri`` (``core.runs.load_frame``), else our ``model_uri`` tag."""
    column = "model_uri" if "model_uri" in df.columns else "tags.model_uri"
    return _column(df, column).notna().to_numpy(dtype=bool)


def noise_column(df: pd.DataFrame, within: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """Compare's "within noise of best" column: what was said of each run (by ``run_id``), "" where nothing was
    (text throughout: no float column of missing values to fill, which pandas 4 will refuse)."""
    said = dict(within)
    return [said.get(run_id, "") for run_id in _column(df, "run_id")]


def _finished(df: pd.DataFrame) -> np.ndarray:
    return (_column(df, "status") == "FINISHED").to_numpy(dtype=bool)


def _is_baseline(df: pd.DataFrame) -> np.ndarray:
    return (_column(df, "tags.run_type") == "baseline").to_numpy(dtype=bool)


def _candidate_mask(df: pd.DataFrame, metric: str) -> np.ndarray:
    return _finished(df) & ~_is_baseline(df) & np.isfinite(_values(df, metric))


def candidates(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished runs that are not baselines (foreign runs without ``run_type`` count) with a finite metric."""
    return df[_candidate_mask(df, metric)]


def _start_seconds(df: pd.DataFrame) -> np.ndarray:
    """Start times as seconds since the epoch; runs without one sort last."""
    if "start_time" not in df.columns:
        return np.zeros(len(df))
    times = pd.to_datetime(df["start_time"], errors="coerce", utc=True)
    seconds = (times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return pd.Series(seconds).fillna(np.inf).to_numpy(dtype=float)


def _order(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Positions of ``rows`` best first: by the metric, then the earliest start, then their order."""
    values = _values(rows, metric)
    key = values if metrics_mod.lower_is_better(metric) else -values
    return np.lexsort((np.arange(len(rows)), _start_seconds(rows), key))


def best_run(df: pd.DataFrame, metric: str, *, with_model: bool = False) -> pd.Series | None:
    """The candidate with the best value of ``metric`` (only those holding a model, if asked; None when none)."""
    found = candidates(df, metric)
    if with_model:
        found = found[holds_model(found)]
    return None if found.empty else found.iloc[_order(found, metric)[0]]


def group_order(values: list) -> list:
    """``values`` sorted numerically when they all read as numbers (``"2e-05"``), else as text."""
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def best_per_group(df: pd.DataFrame, metric: str, column: str) -> pd.DataFrame:
    """The best candidate of each value of ``column``, with ``group``, ``runs_in_group`` and ``value`` (the
    metric as read, see :func:`metric_values`) columns added.

    Runs where ``column`` is missing (NaN) belong to no group; a missing column gives an empty frame.
    """
    found = candidates(df, metric)
    empty = pd.DataFrame(columns=[*df.columns, "group", "runs_in_group", "value"])
    if column not in found.columns:
        return empty
    keys = found[column]
    picked, sizes, groups = [], [], []
    for value in group_order(list(pd.unique(keys[keys.notna()]))):
        members = np.flatnonzero((keys == value).to_numpy(dtype=bool))
        picked.append(members[_order(found.iloc[members], metric)[0]])
        sizes.append(len(members))
        groups.append(value)
    if not picked:
        return empty
    best = found.iloc[picked].reset_index(drop=True)
    return best.assign(group=groups, runs_in_group=sizes, value=_values(best, metric))


# Hyperparameters and tags people group by, in the order a page offers them as its default
USUAL_GROUPS = ("tags.base_model_name", "tags.dataset_name", "params.base_model", "params._name_or_path",
                "params.learning_rate", "params.num_train_epochs", "params.per_device_train_batch_size",
                "params.weight_decay", "params.warmup_ratio", "params.warmup_steps", "params.max_length",
                "params.lr_scheduler_type", "params.seed", "tags.param_set")
# Columns that name each run apart: grouping by them puts every run in a group of its own
UNIQUE_BY_NATURE = ("params.output_dir", "params.run_name", "params.logging_dir", "tags.output_dir",
                    "params.train_digest", "params.validation_digest")


def default_group(df: pd.DataFrame, metric: str, groups: Mapping[str, str]) -> str | None:
    """The label in ``groups`` ({label: column}) a page opens on: a column whose value varies across the
    candidates, never a constant (None when nothing varies).

    The usual ones first (base model, dataset, learning rate, epochs, batch size...), then any other column with
    fewer values than runs, then one with a value per run (paths and run names last of all).
    """
    rows = candidates(df, metric)
    if len(rows) < 2:
        rows = df

    def distinct(column: str) -> int:
        return rows[column].nunique(dropna=True) if column in rows.columns else 0

    by_column = {column: label for label, column in groups.items()}
    for column in USUAL_GROUPS:
        if column in by_column and distinct(column) > 1:
            return by_column[column]
    varying = [(column, n) for column in by_column if (n := distinct(column)) > 1]
    for column, n in varying:
        if n < len(rows) and column not in UNIQUE_BY_NATURE:
            return by_column[column]
    ordered = sorted(varying, key=lambda item: item[0] in UNIQUE_BY_NATURE)
    return by_column[ordered[0][0]] if ordered else None


def experiment_summary(df: pd.DataFrame) -> dict | None:
    """The best run holding a model, for an overview: ``metric`` (the default one), ``label`` (how it was read),
    ``run`` (the row), ``value``, ``gain`` over its baseline (NaN without one), and the counts of ``finished``
    candidates and of those that ``with_model``. None when no finished run logged a metric."""
    metric = default_metric(df)
    if metric is None:
        return None
    finished = df[_finished(df) & ~_is_baseline(df)]
    if finished.empty:
        return None
    best = best_run(df, metric, with_model=True)
    return {"metric": metric, "label": metric_label(df, metric), "run": best,
            "value": value_of(best, metric) if best is not None else math.nan,
            "gain": gain_over_baseline(df, metric).get(best.name, math.nan) if best is not None else math.nan,
            "finished": len(finished), "with_model": int(holds_model(finished).sum())}


def _baselines(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, dict[int, int]]:
    """(the metric's values, {candidate position: its baseline's position}): the baseline of a candidate is the
    finished ``run_type=baseline`` run with the same ``tags.base_model_name`` in the same experiment (the latest
    one when there are several) and a finite value."""
    values = _values(df, metric)
    experiments = [None if pd.isna(e) else e for e in _column(df, "experiment_id")]
    models = _column(df, "tags.base_model_name").to_numpy(dtype=object)
    usable = _finished(df) & _is_baseline(df) & np.isfinite(values)
    latest: dict[tuple, int] = {}
    for i in np.lexsort((_start_seconds(df),)):  # earliest first, so the latest baseline wins
        if usable[i] and not pd.isna(models[i]):
            latest[(experiments[i], models[i])] = int(i)
    found = {int(i): latest[(experiments[i], models[i])] for i in np.flatnonzero(_candidate_mask(df, metric))
             if not pd.isna(models[i]) and (experiments[i], models[i]) in latest}
    return values, found


def gain_over_baseline(df: pd.DataFrame, metric: str) -> pd.Series:
    """Each candidate's metric minus its baseline's (:func:`_baselines`), indexed like ``df``; positive always
    means better. NaN for non-candidates and where there is none."""
    gains = np.full(len(df), np.nan)
    values, baselines = _baselines(df, metric)
    sign = -1.0 if metrics_mod.lower_is_better(metric) else 1.0
    for i, base in baselines.items():
        gains[i] = sign * (values[i] - values[base])
    return pd.Series(gains, index=df.index, name=f"gain.{metric}", dtype=float)


def baseline_of(df: pd.DataFrame, metric: str, label) -> pd.Series | None:
    """The baseline run the candidate at index ``label`` of ``df`` is compared with (None where it has none)."""
    _, baselines = _baselines(df, metric)
    base = baselines.get(int(df.index.get_loc(label)))
    return None if base is None else df.iloc[base]


def _neutralise(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_csv(df: pd.DataFrame) -> str:
    """CSV text (no index) where text cells a spreadsheet would run as a formula get a leading quote.

    Only strings are touched (``"-cmd"`` becomes ``"'-cmd"``); numbers stay numbers, negative ones included.
    Lines end in CRLF (RFC 4180), so a cell holding a bare carriage return is quoted too.
    """
    return neutralised(df).to_csv(index=False, lineterminator="\r\n")


def neutralised(df: pd.DataFrame) -> pd.DataFrame:
    """A copy where text cells and column names a spreadsheet would run as a formula get a leading quote."""
    out = df.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
            continue
        out[column] = series.map(_neutralise)
    out.columns = [_neutralise(c) for c in out.columns]
    return out


def display_name(metric: str) -> str:
    """Accuracy, F1, Precision, Recall, ROC-AUC; any other metric by its own name."""
    return DISPLAY.get(metric, metric)


def _number(values: Mapping[str, float] | None, metric: str) -> float | None:
    if not values:
        return None
    value = values.get(metric)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def is_worse(candidate: dict[str, float], current: dict[str, float] | None, metric: str) -> bool:
    """Whether ``candidate`` does strictly worse than ``current`` on ``metric`` (False when either lacks it)."""
    new, old = _number(candidate, metric), _number(current, metric)
    if new is None or old is None:
        return False
    return new > old if metrics_mod.lower_is_better(metric) else new < old


def compare_versions(candidate: dict[str, float], current: dict[str, float] | None, *, candidate_label: str,
                     current_label: str,
                     lower_is_better: Callable[[str], bool] = metrics_mod.lower_is_better,
                     against: str | None = None) -> list[str]:
    """One plain sentence per metric of ``candidate`` (the five classification metrics first).

    E.g. ``"F1 0.91 vs 0.87 now in production (better by 0.04)"``; a non-empty label names the version
    (``"F1 0.91 for version 3 vs 0.87 for version 2, now in production (better by 0.04)"``). Metrics the
    candidate has no finite value for are left out. ``against`` names what ``current`` is when it is not the
    version in production (``"its pretrained baseline"``): ``"F1 0.91 vs 0.40 for its pretrained baseline"``.
    """
    names = [m for m in candidate if _number(candidate, m) is not None]
    ordered = [m for m in PREFERRED if m in names] + sorted(m for m in names if m not in PREFERRED)
    new_part = f" for {candidate_label}" if candidate_label else ""
    old_part = f" for {current_label}, now in production" if current_label else " now in production"
    if against:
        old_part = f" for {against}"
    sentences = []
    for metric in ordered:
        new = _number(candidate, metric)
        head = f"{display_name(metric)} {new:.2f}{new_part}"
        if current is None:
            sentences.append(f"{head} (nothing in production to compare with)")
            continue
        old = _number(current, metric)
        if old is None:
            sentences.append(f"{head} (the version in production has no {display_name(metric)} to compare with)")
            continue
        gain = (old - new) if lower_is_better(metric) else (new - old)
        if round(abs(gain), 2) == 0:
            verdict = "about the same"
        else:
            verdict = f"{'better' if gain > 0 else 'worse'} by {abs(gain):.2f}"
        sentences.append(f"{head} vs {old:.2f}{old_part} ({verdict})")
    return sentences
