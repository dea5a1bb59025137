"""Compare: runs of one or more experiments, grouped by any tag or parameter, with the best marked."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts, compare
from core.examples import noise
from core.runs import NO_MODEL
from pages.common import (
    built,
    confusion_matrix,
    experiments,
    finished_predictions,
    fmt,
    md,
    metric_histories,
    runs_key,
    runs_snapshot,
    sign_in_gate,
)
from pages.compare_examples import examples_view

sign_in_gate()
NO_GROUPING = "(no grouping: nothing varies across these runs)"


# What the page builds from the runs, made once per version of its inputs (pages.common.built): the comparisons
# read ended runs only, so a running job's progress does not rebuild them.
def _leader(view: pd.DataFrame, metric: str) -> tuple:
    best = compare.best_run(view, metric)
    gain = compare.gain_over_baseline(view, metric).get(best.name) if best is not None else None
    promotable = (compare.best_run(view, metric, with_model=True)
                  if best is not None and not compare.holds_model(best.to_frame().T)[0] else None)
    return best, gain, compare.metric_label(view, metric), promotable


def _noise(view: pd.DataFrame, metric: str):
    return noise.in_frame(view, metric, finished_predictions)


def _versus_baseline(view: pd.DataFrame, metric: str):
    return noise.against_baseline(view, metric, finished_predictions)


def _intervals(view: pd.DataFrame, metric: str, column: str) -> tuple:
    return tuple(noise.group_intervals(view, metric, column, finished_predictions).items())


def _curves(_view, runs: tuple, metric: str):
    return charts.training_curves(metric_histories(dict(runs), metric), metric)


def _matrices(_view, runs: tuple) -> tuple:
    matrices = {name: m for run_id, name in runs if (m := confusion_matrix(run_id))}
    return matrices, charts.confusion_matrices(matrices) if matrices else None


def _table(view: pd.DataFrame, metrics: tuple, params: tuple, within: tuple) -> pd.DataFrame:
    view = view.assign(**{"holds a model": compare.holds_model(view),
                          "within noise of best": compare.noise_column(view, within)})
    columns = ["experiment", "run_name", "status", "holds a model", "within noise of best",
               *[f"metrics.{m}" for m in metrics],
               *[f"params.{p}" for p in params],
               *[c for c in view.columns if c.startswith("tags.") and c.removeprefix("tags.")
                 in compare.tag_names(view)]]
    return view[[c for c in columns if c in view.columns]]


st.title("Compare runs")
exps = {e.experiment_id: e.name for e in experiments()}
if not exps:
    st.info("No experiments yet. Launch one from **Compose & launch**.")
    st.stop()
chosen = st.multiselect("Experiments", options=list(exps), format_func=exps.get, key="cmp_exps",
                        default=list(exps)[:1])
if not chosen:
    st.info("Pick at least one experiment.")
    st.stop()
runs = runs_snapshot(chosen)
frame = runs.frame
if frame.empty:
    st.info("These experiments have no runs yet.")
    st.stop()

metrics = compare.metric_names(frame)
if not metrics:
    st.info("No run has logged a metric yet; come back when runs have finished.")
    st.stop()
groups = compare.group_columns(frame)
c1, c2 = st.columns(2)
# open on an accuracy- or F1-like metric and on a grouping that varies across the runs (never a constant)
metric = c1.selectbox("Metric", options=metrics, key="cmp_metric", index=metrics.index(compare.default_metric(frame)))
varying = built(compare.default_group, frame, runs_key(chosen, runs.version), metric, groups)
group_options = list(groups) if varying else [NO_GROUPING, *groups]
group_label = c2.selectbox("Group by", options=group_options, key="cmp_group",
                           index=group_options.index(varying) if varying else 0)
group_col = groups.get(group_label)

with st.expander("Filter"):
    statuses = sorted(frame["status"].dropna().unique())
    keep = st.multiselect("Status", options=statuses, default=statuses, key="cmp_status")
    text = st.text_input("Run name contains", key="cmp_text")
view = frame[frame["status"].isin(keep)]
if text:
    view = view[view["run_name"].fillna("").str.contains(text, case=False, regex=False)]

ended = (*runs_key(chosen, runs.ended_version), tuple(keep), text)  # the ended runs in view
best, gain, label, promotable = built(_leader, view, ended, metric)
within = None
if best is None:
    st.warning(f"No finished fine-tuned run has {md(repr(metric))} yet.")
else:
    gain_text = f", {gain:+.3f} against its untrained baseline" if pd.notna(gain) else ""
    st.success(f"Best run overall by {md(label)}: **{md(best['run_name'])}** ({md(metric)} "
               f"{fmt(compare.value_of(best, metric))}{gain_text}).", icon=":material/emoji_events:")
    if not compare.holds_model(best.to_frame().T)[0]:
        then = (f" The best run that holds a model is **{md(promotable['run_name'])}** ({md(metric)} "
                f"{fmt(compare.value_of(promotable, metric))})." if promotable is not None else "")
        st.info(f"**{md(best['run_name'])}** cannot be promoted: {md(NO_MODEL)}.{then}", icon=":material/info:")
    if pd.notna(gain):  # is the gain over its own baseline real? the two runs, example by example
        versus = built(_versus_baseline, view, ended, metric)
        if versus is not None and not versus.why:
            st.info(f"Against its untrained baseline: {md(versus.verdict(better='gain'))}.",
                    icon=":material/casino:")
    # is the lead real? the best run against the others, example by example (built once per version of the runs)
    within = built(_noise, view, ended, metric)
    said = " ".join(md(line) for line in (within.sentence(), within.detectable()) if line)
    if said:
        st.info(said, icon=":material/casino:")
if group_col:
    per_group = built(compare.best_per_group, view, ended, metric, group_col)
    if len(per_group):
        st.write(f"Best run of each group ({md(group_label)}):")
        st.dataframe(per_group[["group", "run_name", "value", "runs_in_group"]].rename(
            columns={"run_name": "best run", "value": metric, "runs_in_group": "runs"}),
            hide_index=True, width="stretch")
# charts read the metric as the lines above (eval_ where needed)
chart_view = built(compare.with_metric, view, ended, metric)

tab_group, tab_parallel, tab_scatter, tab_curves, tab_cm, tab_gain, tab_examples, tab_table = st.tabs(
    ["By group", "Parallel coordinates", "Parameter vs metric", "Training curves", "Confusion matrices",
     "Gain over baseline", "Examples", "Table & export"])
with tab_group:
    if group_col:
        intervals = built(_intervals, chart_view, ended, metric, group_col)
        st.plotly_chart(built(charts.metric_by_group, chart_view, ended, metric, group_col, intervals),
                        width="stretch", key="cmp_chart_group")
params = compare.param_names(frame)
with tab_parallel:
    shown = st.multiselect("Parameters", options=params, key="cmp_pc_params",
                           default=[p for p in ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                                "weight_decay") if p in params])
    st.plotly_chart(built(charts.parallel_coordinates, chart_view, ended, metric, shown), width="stretch",
                    key="cmp_chart_pc")
with tab_scatter:
    if params:
        param = st.selectbox("Parameter", options=params, key="cmp_sc_param",
                             index=params.index("learning_rate") if "learning_rate" in params else 0)
        color = groups.get(group_label)
        st.plotly_chart(built(charts.param_scatter, chart_view, ended, param, metric,
                                              color), width="stretch", key="cmp_chart_sc")
    else:
        st.info("These runs logged no parameters.")
candidates = built(compare.candidates, chart_view, ended, metric)
names = dict(zip(candidates["run_id"], candidates["run_name"], strict=True)) if len(candidates) else {}
top = list(candidates.sort_values(f"metrics.{metric}", ascending=False)["run_id"])[:3] if len(candidates) else []
with tab_curves:
    picked = st.multiselect("Runs", options=list(names), format_func=names.get, default=top, key="cmp_curve_runs")
    curve_metric = st.selectbox("Curve", key="cmp_curve_metric", options=list(dict.fromkeys(
        ["loss", "eval_loss", metric if metric.startswith("eval_") else f"eval_{metric}", "learning_rate"])))
    if picked:
        figure = built(_curves, None, ended, tuple((r, names[r]) for r in picked), curve_metric)
        st.plotly_chart(figure, width="stretch", key="cmp_chart_curves")
with tab_cm:
    picked_cm = st.multiselect("Runs (up to 4)", options=list(names), format_func=names.get, default=top[:2],
                               max_selections=4, key="cmp_cm_runs")
    matrices, figure = built(_matrices, None, ended, tuple((r, names[r]) for r in picked_cm))
    if picked_cm and not matrices:
        st.info("These runs have no confusion matrix (runs logged by other tools may not).")
    elif matrices:
        st.plotly_chart(figure, width="stretch", key="cmp_chart_cm")
with tab_gain:
    st.plotly_chart(built(charts.gain_chart, chart_view, ended, metric), width="stretch", key="cmp_chart_gain")
with tab_table:
    cells = tuple(within.column().items()) if within is not None else ()
    table = built(_table, view, (*runs_key(chosen, runs.version), tuple(keep), text), tuple(metrics), tuple(params),
                  cells)
    st.dataframe(table, hide_index=True, width="stretch")
    # made when clicked, not on every poll (the table changes while jobs run). A click must not rerun the page:
    # Streamlit drops every queued message when a run starts, the file's answer with them, and the button then
    # spins for three minutes (a loaded CI run: the click's own rerun started after the CSV was made)
    st.download_button("Export this table as CSV", lambda: compare.safe_csv(table), file_name="runs.csv",
                       mime="text/csv", key="cmp_export", on_click="ignore")
with tab_examples:
    examples_view(view, groups, group_label if group_col else None)
