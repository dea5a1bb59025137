"""Compare: runs of one or more experiments, grouped by any tag or parameter, with the best marked."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts, compare
from pages.common import confusion_matrix, experiments, fmt, load_runs, md, metric_histories, sign_in_gate

sign_in_gate()



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
frame = load_runs(chosen)
if frame.empty:
    st.info("These experiments have no runs yet.")
    st.stop()

metrics = compare.metric_names(frame)
if not metrics:
    st.info("No run has logged a metric yet; come back when runs have finished.")
    st.stop()
groups = compare.group_columns(frame)
c1, c2 = st.columns(2)
metric = c1.selectbox("Metric", options=metrics, key="cmp_metric")
group_label = c2.selectbox("Group by", options=list(groups), key="cmp_group",
                           index=list(groups).index("tag: base_model_name") if "tag: base_model_name" in groups else 0)
group_col = groups.get(group_label)

with st.expander("Filter"):
    statuses = sorted(frame["status"].dropna().unique())
    keep = st.multiselect("Status", options=statuses, default=statuses, key="cmp_status")
    text = st.text_input("Run name contains", key="cmp_text")
view = frame[frame["status"].isin(keep)]
if text:
    view = view[view["run_name"].fillna("").str.contains(text, case=False, regex=False)]

best = compare.best_run(view, metric)
gains = compare.gain_over_baseline(view, metric)
if best is None:
    st.warning(f"No finished fine-tuned run has {md(repr(metric))} yet.")
else:
    gain = gains.get(best.name)
    gain_text = f", {gain:+.3f} against its untrained baseline" if pd.notna(gain) else ""
    st.success(f"Best run overall by {md(metric)}: **{md(best['run_name'])}** ({md(metric)} "
               f"{fmt(best[f'metrics.{metric}'])}{gain_text}).", icon=":material/emoji_events:")
if group_col:
    per_group = compare.best_per_group(view, metric, group_col)
    if len(per_group):
        st.write(f"Best run of each group ({md(group_label)}):")
        st.dataframe(per_group[["group", "run_name", f"metrics.{metric}", "runs_in_group"]].rename(
            columns={"run_name": "best run", f"metrics.{metric}": metric, "runs_in_group": "runs"}),
            hide_index=True, width="stretch")

tab_group, tab_parallel, tab_scatter, tab_curves, tab_cm, tab_gain, tab_table = st.tabs(
    ["By group", "Parallel coordinates", "Parameter vs metric", "Training curves", "Confusion matrices",
     "Gain over baseline", "Table & export"])
with tab_group:
    if group_col:
        st.plotly_chart(charts.metric_by_group(view, metric, group_col), width="stretch", key="cmp_chart_group")
params = compare.param_names(view)
with tab_parallel:
    shown = st.multiselect("Parameters", options=params, key="cmp_pc_params",
                           default=[p for p in ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                                "weight_decay") if p in params])
    st.plotly_chart(charts.parallel_coordinates(view, metric, shown), width="stretch", key="cmp_chart_pc")
with tab_scatter:
    if params:
        param = st.selectbox("Parameter", options=params, key="cmp_sc_param",
                             index=params.index("learning_rate") if "learning_rate" in params else 0)
        color = groups.get(group_label)
        st.plotly_chart(charts.param_scatter(view, param, metric, color), width="stretch", key="cmp_chart_sc")
    else:
        st.info("These runs logged no parameters.")
candidates = compare.candidates(view, metric)
names = dict(zip(candidates["run_id"], candidates["run_name"], strict=True)) if len(candidates) else {}
top = list(candidates.sort_values(f"metrics.{metric}", ascending=False)["run_id"])[:3] if len(candidates) else []
with tab_curves:
    picked = st.multiselect("Runs", options=list(names), format_func=names.get, default=top, key="cmp_curve_runs")
    curve_metric = st.selectbox("Curve", options=["loss", "eval_loss", f"eval_{metric}", "learning_rate"],
                                key="cmp_curve_metric")
    if picked:
        histories = metric_histories({r: names[r] for r in picked}, curve_metric)
        st.plotly_chart(charts.training_curves(histories, curve_metric), width="stretch", key="cmp_chart_curves")
with tab_cm:
    picked_cm = st.multiselect("Runs (up to 4)", options=list(names), format_func=names.get, default=top[:2],
                               max_selections=4, key="cmp_cm_runs")
    matrices = {names[r]: m for r in picked_cm if (m := confusion_matrix(r))}
    if picked_cm and not matrices:
        st.info("These runs have no confusion matrix (runs logged by other tools may not).")
    elif matrices:
        st.plotly_chart(charts.confusion_matrices(matrices), width="stretch", key="cmp_chart_cm")
with tab_gain:
    st.plotly_chart(charts.gain_chart(view, metric), width="stretch", key="cmp_chart_gain")
with tab_table:
    columns = ["experiment", "run_name", "status", *[f"metrics.{m}" for m in metrics],
               *[f"params.{p}" for p in params],
               *[c for c in view.columns if c.startswith("tags.") and c.removeprefix("tags.")
                 in compare.tag_names(view)]]
    table = view[[c for c in columns if c in view.columns]]
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Export this table as CSV", compare.safe_csv(table), file_name="runs.csv", mime="text/csv",
                       key="cmp_export")
