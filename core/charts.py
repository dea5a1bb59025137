"""Plotly figures for comparing runs, built from DataFrames (``core.runs.runs_frame``'s shape); never MLflow.

Every function returns a ``go.Figure`` with a title, readable axis labels and
the ``plotly_white`` template. When there is nothing to draw (no rows, a
column missing, no baseline) the figure is empty and its title says so
plainly: these functions never raise on odd input.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import compare
from core.metrics import lower_is_better

TEMPLATE = "plotly_white"
GREEN, RED, GREY = "#2ca02c", "#d62728", "#7f7f7f"
MAX_MATRICES = 4


def nothing_to_show(reason: str) -> go.Figure:
    """An empty figure whose title says there is nothing to show, and why."""
    fig = go.Figure()
    fig.update_layout(title=f"Nothing to show: {reason}", template=TEMPLATE,
                      xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def _bare(column: str) -> str:
    """``tags.base_model_name`` -> ``base_model_name``, for labels."""
    for prefix in ("metrics.", "params.", "tags."):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def _resolve(df: pd.DataFrame, name: str, prefixes: tuple[str, ...] = ("params.", "tags.", "metrics.")) -> str | None:
    """The column ``name`` refers to: itself, or with one of ``prefixes``; None when absent."""
    if name in df.columns:
        return name
    return next((p + name for p in prefixes if p + name in df.columns), None)


def _numeric(values: pd.Series) -> pd.Series | None:
    """``values`` as floats when every non-missing one reads as a number, else None."""
    numbers = pd.to_numeric(values, errors="coerce")
    present = values.notna()
    if not present.any() or numbers[present].isna().any():
        return None
    return numbers.astype(float)


def _run_labels(rows: pd.DataFrame) -> list[str]:
    """Run names, made unique with a short run id where two runs share one."""
    names = [str(n) if pd.notna(n) else "" for n in rows.get("run_name", [None] * len(rows))]
    ids = [str(i)[:8] if pd.notna(i) else str(k) for k, i in enumerate(rows.get("run_id", [None] * len(rows)))]
    counts = pd.Series(names).value_counts()
    return [f"{n} ({i})" if not n or counts[n] > 1 else n for n, i in zip(names, ids, strict=True)]


def _categories(values: pd.Series) -> list[str]:
    """The distinct values, in ``compare.group_order``, with "(not set)" last."""
    distinct = [v for v in pd.unique(values) if v != compare.NOT_SET]
    return compare.group_order(distinct) + ([compare.NOT_SET] if (values == compare.NOT_SET).any() else [])


def _no_runs(df: pd.DataFrame, metric: str) -> str | None:
    """Why ``df`` has no candidate to chart for ``metric`` (None when it has some)."""
    if df is None or len(df) == 0:
        return "no runs"
    if compare.metric_col(metric) not in df.columns:
        return f"no run logged {metric}"
    if compare.candidates(df, metric).empty:
        return f"no finished fine-tuned run has a value of {metric} yet"
    return None


def metric_by_group(df: pd.DataFrame, metric: str, column: str,
                    intervals: Mapping[str, tuple[float, float]] | Iterable[tuple[str, tuple[float, float]]] | None
                    = None) -> go.Figure:
    """Box plot with every run's ``metric`` per value of ``column``; each group's best starred.

    Candidate runs only; runs without a value of ``column`` form a "(not set)" group. The best run
    overall is annotated with its name. ``intervals`` ({run_id: (low, high)}, or its items): each group's best
    carries its 95% interval as an error bar (``core.examples.noise.group_intervals``); runs without one, none.
    """
    why = _no_runs(df, metric)
    if why:
        return nothing_to_show(why)
    if column not in df.columns:
        return nothing_to_show(f"no run has {_bare(column)}")
    rows = compare.candidates(df, metric).copy()
    rows[column] = rows[column].astype(object).where(rows[column].notna(), compare.NOT_SET).astype(str)
    col, name = compare.metric_col(metric), _bare(metric)
    best = compare.best_per_group(rows, metric, column)
    fig = go.Figure()
    for group in _categories(rows[column]):
        members = rows[rows[column] == group]
        fig.add_trace(go.Box(x=[group] * len(members), y=members[col], name=group, boxpoints="all", jitter=0.3,
                             pointpos=0, hovertext=_run_labels(members), showlegend=False,
                             hovertemplate=f"%{{hovertext}}<br>{name}=%{{y:.4f}}<extra></extra>"))
    spans = dict(intervals or {})
    ends = [spans.get(str(r)) for r in best["run_id"]] if "run_id" in best.columns else [None] * len(best)
    values = best[col].astype(float).tolist()
    error = None
    if any(ends):  # from the run's value to each end of its interval
        error = {"type": "data", "symmetric": False, "color": "black", "thickness": 1.5, "width": 8,
                 "array": [span[1] - v if span else None for v, span in zip(values, ends, strict=True)],
                 "arrayminus": [v - span[0] if span else None for v, span in zip(values, ends, strict=True)]}
    spread = [f"<br>95% interval {span[0]:.3f} to {span[1]:.3f}" if span else "" for span in ends]
    fig.add_trace(go.Scatter(x=best["group"], y=best[col], mode="markers", name="best of group",
                             marker={"symbol": "star", "size": 16, "color": "gold",
                                     "line": {"color": "black", "width": 1}},
                             hovertext=_run_labels(best), customdata=spread, error_y=error,
                             hovertemplate=f"best: %{{hovertext}}<br>{name}=%{{y:.4f}}%{{customdata}}<extra></extra>"))
    overall = compare.best_run(rows, metric)
    if overall is not None:
        fig.add_annotation(x=overall[column], y=overall[col], text=f"best overall: {overall.get('run_name')}",
                           showarrow=True, arrowhead=2, ax=40, ay=-40)
    direction = "lower is better" if lower_is_better(metric) else "higher is better"
    bars = "; bars: 95% interval of each group's best" if error else ""
    fig.update_layout(title=f"{name} by {_bare(column)} ({direction}{bars})", template=TEMPLATE,
                      xaxis={"title": _bare(column), "type": "category"}, yaxis={"title": name})
    return fig


def parallel_coordinates(df: pd.DataFrame, metric: str, params: list[str]) -> go.Figure:
    """Parallel coordinates over ``params`` and ``metric`` for the candidate runs, coloured by the metric.

    Numeric params are axes of numbers; others get integer codes labelled with their values. Params no
    run logged are left out.
    """
    why = _no_runs(df, metric)
    if why:
        return nothing_to_show(why)
    rows = compare.candidates(df, metric)
    columns = [c for c in (_resolve(rows, p, ("params.", "tags.")) for p in params) if c is not None]
    if not columns:
        return nothing_to_show(f"none of the params {', '.join(params) or '(none chosen)'} were logged")
    dimensions = []
    for column in columns:
        numbers = _numeric(rows[column])
        if numbers is not None and numbers.notna().all():
            dimensions.append({"label": _bare(column), "values": numbers.tolist()})
            continue
        text = rows[column].astype(object).where(rows[column].notna(), compare.NOT_SET).astype(str)
        labels = _categories(text)
        codes = {label: i for i, label in enumerate(labels)}
        dimensions.append({"label": _bare(column), "values": [codes[t] for t in text],
                           "tickvals": list(range(len(labels))), "ticktext": labels,
                           "range": [0, max(len(labels) - 1, 1)]})
    values = rows[compare.metric_col(metric)].astype(float)
    name = _bare(metric)
    dimensions.append({"label": name, "values": values.tolist()})
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": values.tolist(), "colorscale": "Viridis", "showscale": True,
              "reversescale": lower_is_better(metric), "colorbar": {"title": {"text": name}}}))
    fig.update_layout(title=f"{name} across {', '.join(_bare(c) for c in columns)}", template=TEMPLATE)
    return fig


def _log_scale(numbers: pd.Series) -> bool:
    """Positive numbers spanning more than two orders of magnitude read better on a log axis."""
    present = numbers.dropna()
    return bool(len(present)) and present.min() > 0 and present.max() / present.min() > 100


def param_scatter(df: pd.DataFrame, param: str, metric: str, color: str | None = None) -> go.Figure:
    """``metric`` against ``param`` for the candidate runs, run names on hover, optionally coloured by a column.

    The x axis is logarithmic when the param is numeric, positive and spans more than two orders of
    magnitude. ``color`` is a column (``tags.base_model_name``) or a bare param/tag/metric name.
    """
    why = _no_runs(df, metric)
    if why:
        return nothing_to_show(why)
    rows = compare.candidates(df, metric)
    column = _resolve(rows, param, ("params.", "tags."))
    if column is None or rows[column].isna().all():
        return nothing_to_show(f"no finished run logged the param {_bare(param)}")
    rows = rows[rows[column].notna()]
    numbers = _numeric(rows[column])
    x = numbers if numbers is not None else rows[column].astype(str)
    y = rows[compare.metric_col(metric)].astype(float)
    labels = pd.Series(_run_labels(rows), index=rows.index)
    name, pname = _bare(metric), _bare(param)
    hover = f"%{{hovertext}}<br>{pname}=%{{x}}<br>{name}=%{{y:.4f}}<extra></extra>"
    colour = _resolve(rows, color) if color else None
    fig = go.Figure()
    if colour is None:
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", hovertext=labels, hovertemplate=hover, name=name,
                                 marker={"size": 10}))
    elif _numeric(rows[colour]) is not None and rows[colour].notna().all():
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", hovertext=labels, hovertemplate=hover, name=name,
                                 marker={"size": 10, "color": _numeric(rows[colour]), "showscale": True,
                                         "colorbar": {"title": {"text": _bare(colour)}}}))
    else:
        groups = rows[colour].astype(object).where(rows[colour].notna(), compare.NOT_SET).astype(str)
        for group in _categories(groups):
            mask = (groups == group).to_numpy(dtype=bool)
            fig.add_trace(go.Scatter(x=x[mask], y=y[mask], mode="markers", hovertext=labels[mask],
                                     hovertemplate=hover, name=group, marker={"size": 10}))
        fig.update_layout(legend_title_text=_bare(colour))
    xaxis: dict = {"title": pname}
    if numbers is None:
        xaxis["type"] = "category"
    elif _log_scale(numbers):
        xaxis["type"] = "log"
    fig.update_layout(title=f"{name} against {pname}", template=TEMPLATE, xaxis=xaxis, yaxis={"title": name})
    return fig


def training_curves(histories: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run of ``metric`` against the training step; each DataFrame has ``step`` and ``value``."""
    name = _bare(metric)
    fig = go.Figure()
    for run_name, history in (histories or {}).items():
        if history is None or len(history) == 0 or not {"step", "value"} <= set(history.columns):
            continue
        points = history.assign(step=pd.to_numeric(history["step"], errors="coerce"),
                                value=pd.to_numeric(history["value"], errors="coerce"))
        points = points.dropna(subset=["step", "value"]).sort_values("step")
        if len(points):
            fig.add_trace(go.Scatter(x=points["step"], y=points["value"], mode="lines+markers", name=str(run_name),
                                     hovertemplate=f"{run_name}<br>step %{{x}}<br>{name}=%{{y:.4f}}<extra></extra>"))
    if not fig.data:
        return nothing_to_show(f"no run logged {name} during training")
    fig.update_layout(title=f"{name} during training", template=TEMPLATE, xaxis={"title": "step"},
                      yaxis={"title": name}, legend_title_text="run")
    return fig


def _valid_matrix(entry) -> tuple[list[str], list[list[float]]] | None:
    """(labels, square matrix) from ``{"labels": [...], "matrix": [[...]]}``, or None when malformed."""
    if not isinstance(entry, dict):
        return None
    labels, matrix = entry.get("labels"), entry.get("matrix")
    try:
        grid = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        return None
    if grid.ndim != 2 or grid.size == 0 or grid.shape[0] != grid.shape[1]:
        return None
    labels = [str(label) for label in labels] if labels and len(labels) == grid.shape[0] else \
        [str(i) for i in range(grid.shape[0])]
    return labels, grid.tolist()


def confusion_matrices(matrices: dict[str, dict]) -> go.Figure:
    """Side-by-side confusion matrices (up to four runs), counts in the cells, predicted across, true down."""
    valid = {str(k): v for k, v in (matrices or {}).items() if _valid_matrix(v) is not None}
    if not valid:
        return nothing_to_show("no run has a confusion matrix")
    shown = list(valid.items())[:MAX_MATRICES]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=[name for name, _ in shown],
                        horizontal_spacing=0.08)
    for i, (name, entry) in enumerate(shown, start=1):
        labels, grid = _valid_matrix(entry)
        counts = [[f"{v:g}" if math.isfinite(v) else "" for v in row] for row in grid]
        fig.add_trace(go.Heatmap(z=grid, x=labels, y=labels, text=counts, texttemplate="%{text}",
                                 colorscale="Blues", showscale=False, name=name,
                                 hovertemplate="true %{y}<br>predicted %{x}<br>%{z:g} examples<extra></extra>"),
                      row=1, col=i)
        fig.update_xaxes(title_text="predicted", type="category", row=1, col=i)
        fig.update_yaxes(title_text="true", type="category", autorange="reversed", row=1, col=i)
    more = f" (first {MAX_MATRICES} of {len(valid)})" if len(valid) > MAX_MATRICES else ""
    fig.update_layout(title=f"Confusion matrices{more}", template=TEMPLATE)
    return fig


def gain_chart(df: pd.DataFrame, metric: str) -> go.Figure:
    """Horizontal bars of each candidate's gain over its base model's baseline: green better, red worse."""
    why = _no_runs(df, metric)
    if why:
        return nothing_to_show(why)
    gains = compare.gain_over_baseline(df, metric)
    mask = np.isfinite(gains.to_numpy(dtype=float))
    if not mask.any():
        return nothing_to_show(f"no finished baseline run of the same base model to compare {_bare(metric)} with")
    rows, values = df[mask], gains.to_numpy(dtype=float)[mask]
    order = np.argsort(values, kind="stable")  # plotly draws the first bar at the bottom: best on top
    labels = np.asarray(_run_labels(rows), dtype=object)[order]
    values = values[order]
    colours = [GREEN if v > 0 else RED if v < 0 else GREY for v in values]
    name = _bare(metric)
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colours, name=f"gain in {name}",
                           hovertemplate=f"%{{y}}<br>{name} gain %{{x:+.4f}}<extra></extra>"))
    fig.update_layout(title=f"Gain in {name} over the baseline (positive = better)", template=TEMPLATE,
                      xaxis={"title": f"{name} gain over baseline", "zeroline": True},
                      yaxis={"title": "run", "type": "category"}, height=max(300, 40 + 28 * len(values)))
    return fig


def per_label(long: pd.DataFrame, metric: str = "f1", by: str = "run") -> go.Figure:
    """Bars of each label's ``metric`` (precision, recall, f1) for each run or group (``by``: "run" or "group").

    ``long`` is ``core.examples.per_label_by_run``'s frame; a group's bar is the mean over its runs (hover
    says how many). Labels keep their order of first appearance (the model's).
    """
    if long is None or len(long) == 0:
        return nothing_to_show("no run with a predictions table chosen")
    if metric not in long.columns or by not in long.columns:
        return nothing_to_show(f"no {metric} per label")
    labels = list(dict.fromkeys(long["label"]))
    shown = [html.escape(str(label), quote=False) for label in labels]  # the user's words, never Plotly's tags
    fig = go.Figure()
    for name in list(dict.fromkeys(long[by].astype(str))):
        rows = long[long[by].astype(str) == name]
        means = rows.groupby("label", sort=False)[metric].mean().reindex(labels)
        counts = rows.groupby("label", sort=False)["run_id"].nunique().reindex(labels).fillna(0).astype(int)
        fig.add_trace(go.Bar(x=shown, y=means.to_numpy(), name=html.escape(name, quote=False),
                             customdata=counts.to_numpy(),
                             hovertemplate=f"%{{fullData.name}}<br>%{{x}}: {metric} %{{y:.3f}} (mean of "
                                           "%{customdata} run(s))<extra></extra>"))
    fig.update_layout(title=f"{metric} per label, by {by}", template=TEMPLATE, barmode="group",
                      xaxis={"title": "true label", "type": "category"},
                      yaxis={"title": metric, "range": [0, 1.05]}, legend={"title": by})
    return fig


def topic_scores_chart(scores: pd.Series | dict[str, float], threshold: float) -> go.Figure:
    """Horizontal bars of each topic's probability for one call (highest on top), the threshold a dashed line.

    ``scores`` maps topic -> probability in [0, 1] (``core.scoring.topics.topic_scores``, one row). Bars at or
    above ``threshold`` are green (tagged), the others grey. Topic names are the user's words: escaped, so
    Plotly shows them as typed rather than reading tags in them.
    """
    series = pd.to_numeric(pd.Series(scores, dtype=object), errors="coerce").astype(float)
    series = series[np.isfinite(series.to_numpy())]
    if series.empty:
        return nothing_to_show("no topic has a score")
    order = np.argsort(series.to_numpy(), kind="stable")  # plotly draws the first bar at the bottom
    values = series.to_numpy()[order]
    labels = [html.escape(str(topic), quote=False) for topic in series.index[order]]
    marked = isinstance(threshold, (int, float)) and math.isfinite(threshold)
    colours = [GREEN if marked and v >= threshold else GREY for v in values]
    fig = go.Figure(go.Bar(x=values.tolist(), y=labels, orientation="h", marker_color=colours, name="probability",
                           text=[f"{v:.2f}" for v in values], textposition="outside",
                           hovertemplate="%{y}<br>probability %{x:.3f}<extra></extra>"))
    if marked:
        fig.add_vline(x=float(threshold), line_dash="dash", line_color=RED,
                      annotation_text=f"threshold {threshold:.2f}", annotation_position="top")
    fig.update_layout(title="How likely the call is about each topic (green: tagged)", template=TEMPLATE,
                      xaxis={"title": "probability", "range": [0, 1.08]}, yaxis={"title": "topic", "type": "category"},
                      height=max(300, 80 + 28 * len(values)), showlegend=False)
    return fig
