"""The transcripts behind the numbers, for the Compare and Registry pages (functions, not a routed page).

- :func:`examples_view`: one run's validation examples, filtered; per-label numbers and chart, grouped like the
  rest of Compare; the examples two runs disagree on;
- :func:`promotion_changes`: inside the promotion confirmation, what the candidate fixes and breaks against
  the version in production, on the same examples (scoring production on the candidate's file first, as a
  background job, when the two were evaluated on different files).

Every text from a file or a run shows as text: tables through ``st.dataframe``, full texts through
``st.code``, sentences through ``md()``.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from core import charts
from core import examples as ex
from core.compare import NOT_SET
from core.examples import evaluation
from core.metrics import headline
from core.registry.promotion import Candidate
from pages.common import client, finished_predictions, fmt, jobs_changed, md, predictions, queue, show_error

EACH_RUN = "(each run on its own)"


def _names(runs: pd.DataFrame) -> dict[str, str]:
    """{run_id: run name}, a short id added where two runs share a name."""
    names = runs["run_name"].fillna("").astype(str)
    counts = names.value_counts()
    return {rid: f"{n} ({rid[:8]})" if not n or counts[n] > 1 else n
            for rid, n in zip(runs["run_id"], names, strict=True)}


def _shown(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows for a table cell: long texts shortened (the full text is one selection away)."""
    out = rows.copy()
    for column in ("text", "hypothesis"):
        if column in out.columns:
            out[column] = out[column].map(ex.shorten)
    return out


def _full_text(rows: pd.DataFrame, key: str) -> None:
    """Pick one of ``rows`` and read its whole text (and hypothesis), as plain text."""
    if rows.empty:
        return
    # a new widget whenever the listed rows change: a kept choice would name a row that is no longer listed
    listed = hashlib.sha1("\n".join(rows["row"].astype(str)).encode()).hexdigest()[:12]
    pick = st.selectbox("Read the full text of", options=list(range(len(rows))), key=f"{key}_{listed}",
                        format_func=lambda i: f"{rows.iloc[i]['row']}: {ex.shorten(rows.iloc[i]['text'], 70)}")
    chosen = rows.iloc[pick]
    lines = ex.evidence_lines(chosen)
    if lines:  # a long call: the part of it that decided each tagged topic, before the whole
        st.markdown(f"**{'What decided it' if key.startswith('cmp') else 'What decided the candidate'}** (each "
                    "tagged topic's best window of the call):")
        for line in lines:
            st.code(line, language=None, wrap_lines=True)
    st.code(chosen["text"], language=None, wrap_lines=True)
    if "hypothesis" in rows.columns:
        st.code(f"Hypothesis: {chosen['hypothesis']}", language=None, wrap_lines=True)


def _no_table(name: str, row: pd.Series | None = None) -> None:
    st.info(f"**{md(name)}** has no predictions table: it was logged before runs kept their predictions, or by "
            "another tool. Its metrics are all there is to compare.", icon=":material/info:")
    if row is not None:
        scores = headline({k.removeprefix("metrics."): v for k, v in row.items()
                           if str(k).startswith("metrics.") and pd.notna(v)})
        if scores:
            st.dataframe(pd.DataFrame([scores]), hide_index=True)


# -- Compare: the Examples view -------------------------------------------------------------------------------
def examples_view(frame: pd.DataFrame, groups: dict[str, str], group_label: str | None) -> None:
    """The Examples tab of Compare, over the runs in ``frame`` (the page's filtered runs)."""
    ended = frame[frame["status"] == "FINISHED"]
    if ended.empty:
        st.info("No run has finished yet; their validation examples show here once they have.")
        return
    names = _names(ended)
    rows = ended.set_index("run_id")
    st.caption("Each evaluated run keeps its validation predictions: pick a run to read what it gets right and "
               "wrong.")
    run_id = st.selectbox("Run", options=list(names), format_func=names.get, key="cmp_ex_run")
    table = predictions(run_id, rows.loc[run_id, "status"])
    if table is None:
        _no_table(names[run_id], rows.loc[run_id])
    else:
        _browse(table, rows.loc[run_id])
    st.divider()
    _per_label_section(ended, names, rows, groups, group_label)
    st.divider()
    _disagreement_section(names, rows, run_id, table)


def _browse(table: pd.DataFrame, row: pd.Series) -> None:
    sample = row.get("tags.predictions_sample")
    if isinstance(sample, str) and sample:
        st.caption(f"This table is a sample: {md(sample)}.")
    # a topic run's table holds one row per call: its true topics and the topics the run tags
    calls = pd.notna(row.get("params.topic_pairs.validation_pairs"))
    if calls:
        st.caption("One row per validation call: its true topics and the topics this run tags (each topic whose "
                   "entailment score reaches the threshold); a call counts as right when the two are the same.")
    labels = ex.labels_of(table)
    f1, f2, f3 = st.columns(3)
    true = f1.multiselect("True topic" if calls else "True label", options=labels, key="cmp_ex_true")
    said = f2.multiselect("Tagged topic" if calls else "Predicted label", options=labels, key="cmp_ex_pred")
    band = f3.slider("Confidence", min_value=0.0, max_value=1.0, value=(0.0, 1.0), step=0.05, key="cmp_ex_conf")
    g1, g2 = st.columns([1, 2])
    wrong = g1.checkbox("Wrong only", key="cmp_ex_wrong")
    search = g2.text_input("Text or call id contains" if calls else "Text contains", key="cmp_ex_search")
    shown = ex.filter_examples(table, true_labels=true, predicted_labels=said, wrong_only=wrong, confidence=band,
                               search=search)
    wrong_total = int((~table["correct"]).sum())
    noun = "calls" if calls else "examples"
    st.write(f"{len(shown)} of {len(table)} {noun} shown; the run gets {wrong_total} of {len(table)} wrong.")
    columns = [c for c in ("row", "text", "hypothesis", "true_label", "predicted_label", "confidence")
               if c in shown.columns]
    headers = {"true_label": "true topics", "predicted_label": "tagged topics"} if calls else {}
    st.dataframe(_shown(shown[columns]).rename(columns=headers), hide_index=True, width="stretch",
                 key="cmp_ex_table")
    _full_text(shown.reset_index(drop=True), "cmp_ex_full")
    st.write("Per label, on every example of this run:")
    st.dataframe(ex.per_label(table), hide_index=True, width="stretch", key="cmp_ex_per_label")


def _per_label_section(ended: pd.DataFrame, names: dict[str, str], rows: pd.DataFrame, groups: dict[str, str],
                       group_label: str | None) -> None:
    st.write("Per-label numbers of several runs, grouped like the rest of the page:")
    c1, c2, c3 = st.columns([3, 2, 1])
    chosen = c1.multiselect("Runs", options=list(names), format_func=names.get, default=list(names)[:6],
                            key="cmp_ex_runs")
    options = [EACH_RUN, *groups]
    group = c2.selectbox("Group by", options=options, key="cmp_ex_group",
                         index=options.index(group_label) if group_label in options else 0)
    metric = c3.selectbox("Number", options=["f1", "precision", "recall"], key="cmp_ex_metric")
    column = groups.get(group)
    tables = {r: t for r in chosen if (t := predictions(r, rows.loc[r, "status"])) is not None}
    missing = [names[r] for r in chosen if r not in tables]
    if missing:
        st.caption("No predictions table (metrics only): " + ", ".join(md(n) for n in missing) + ".")
    value = (lambda r: str(rows.loc[r, column]) if column in rows.columns and pd.notna(rows.loc[r, column])
             else NOT_SET) if column else names.get
    long = ex.per_label_by_run(tables, {r: (names[r], value(r)) for r in tables})
    by = "group" if column else "run"
    st.plotly_chart(charts.per_label(long, metric, by), width="stretch", key="cmp_ex_chart")
    if len(long):
        summary = long.groupby([by, "label"], sort=False)[["precision", "recall", "f1", "support"]].mean()
        st.dataframe(summary.reset_index(), hide_index=True, width="stretch", key="cmp_ex_group_table")


def _disagreement_section(names: dict[str, str], rows: pd.DataFrame, run_id: str, table: pd.DataFrame | None) -> None:
    st.write("Where two runs disagree:")
    others = [r for r in names if r != run_id]
    if not others:
        st.caption("Only one run has ended: pick two to see where they disagree.")
        return
    other = st.selectbox(f"Compare {md(names[run_id])} with", options=others, format_func=names.get,
                         key="cmp_ex_other")
    other_table = predictions(other, rows.loc[other, "status"])
    if table is None or other_table is None:
        lacking = names[run_id] if table is None else names[other]
        st.info(f"**{md(lacking)}** has no predictions table, so the two cannot be compared example by example.")
        return
    shared, differ = ex.disagreements(table, other_table, names[run_id], names[other])
    if not shared:
        st.info("The two runs share no validation example (they were evaluated on different files).")
        return
    st.write(f"They disagree on {len(differ)} of the {shared} examples both were evaluated on.")
    if len(differ):
        st.dataframe(_shown(differ), hide_index=True, width="stretch", key="cmp_ex_disagree")
        _full_text(differ, "cmp_ex_disagree_full")


# -- Registry: what a promotion changes ------------------------------------------------------------------------
def promotion_changes(pending: Candidate, current, model_name: str,
                      may_queue: bool) -> evaluation.LikeForLike:
    """Inside the promotion confirmation: the candidate beside version ``current`` in production, example by
    example, like for like (production scored on the candidate's validation file when theirs differ): whether its
    difference is more than chance gives, what it fixes and breaks. Returns the comparison (its ``evidence`` is
    what the promotion records)."""
    found = evaluation.like_for_like(client(), model_name, current, pending.run_id, pending.digest,
                                     pending.validation_file, finished_predictions, pending.metric)
    if found.changes is not None:
        if found.scored_by:
            st.caption(f"Version {current.version} was scored on the candidate's validation file by the job "
                       f"{md(found.scored_by)}; compared like for like:")
        _show_verdict(found)
        _show_changes(found.changes, found.against)
        return found
    if not found.candidate_has_table:
        if found.different_files:
            st.warning("The two were evaluated on different validation files, so their numbers are not directly "
                       "comparable.")
        st.info(md(found.why), icon=":material/info:")
        return found
    st.warning(md(found.why), icon=":material/compare_arrows:")
    run = found.evaluation
    status = run.info.status if run is not None else None
    if status in ("SCHEDULED", "RUNNING"):
        _wait_for(run.info.run_id, str(current.version))
        return found
    if status in ("FAILED", "KILLED"):
        st.error(f"Scoring version {current.version} on the candidate's file ended {status.lower()}: "
                 f"{md(run.data.tags.get('error', 'no reason recorded'))}")
    if not found.can_evaluate:
        st.caption("The candidate's run does not name its validation file, so production cannot be scored on it.")
        return found
    how = ("" if found.reading is None or found.different_files
           else f" as {evaluation.reading_label(found.reading)}")
    if may_queue and st.button(f"Score version {current.version} on the candidate's validation file{how} (a "
                               "background job), then compare like for like", key="r_eval_prod"):
        try:
            evaluation.queue_evaluation(queue(), model_name, current.version, pending.validation_file,
                                        pending.digest, found.reading)
            jobs_changed()
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "queueing the evaluation of the production version")
    return found


def _show_verdict(found: evaluation.LikeForLike) -> None:
    """Is the difference real? The answer in words; the confirm button stays below it whatever it says."""
    difference = found.difference
    if difference is None:
        return
    said = " ".join(md(line) for line in (found.verdict, found.detectable) if line)
    if difference.outcome == "better":
        st.success(said, icon=":material/verified:")
    elif difference.outcome == "worse":
        st.error(said, icon=":material/trending_down:")
    else:
        st.warning(said, icon=":material/casino:")


@st.fragment(run_every=3)
def _wait_for(run_id: str, version: str) -> None:
    """While the evaluation job runs: its progress, and a rerun of the page once it has ended."""
    job = queue().get(run_id)
    if job.status.is_terminal():
        st.rerun()
    stage = job.progress.stage if job.progress else "queued"
    st.info(f"Scoring version {version} on the candidate's validation file: {job.status.value.lower()} "
            f"({md(stage)}). The comparison shows here when it is done; you can leave this page meanwhile.",
            icon=":material/hourglass_top:")


def _show_changes(found: ex.Changes, current: str) -> None:
    st.markdown(f"**{md(found.sentence(current))}**")
    if not found.shared:
        return
    with st.expander(f"The {len(found.fixes)} examples it fixes"):
        st.dataframe(_shown(found.fixes), hide_index=True, width="stretch", key="r_fixes")
        _full_text(found.fixes, "r_fixes_full")
    with st.expander(f"The {len(found.breaks)} examples it breaks"):
        st.dataframe(_shown(found.breaks), hide_index=True, width="stretch", key="r_breaks")
        _full_text(found.breaks, "r_breaks_full")
    st.write("Per label (by true label), before and after:")
    st.dataframe(found.by_label.round(3), hide_index=True, width="stretch", key="r_by_label")
    moved = found.by_label[(found.by_label["fixes"] > 0) | (found.by_label["breaks"] > 0)]
    if len(moved):
        st.caption("; ".join(f"{md(r['label'])}: fixes {r['fixes']}, breaks {r['breaks']} (F1 {fmt(r['F1 before'])} "
                             f"→ {fmt(r['F1 after'])})" for _, r in moved.iterrows()))
