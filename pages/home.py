"""Home: promotions waiting for your approval, what is running, what finished, the best model of each experiment,
what is in production."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import compare
from core.jobs.model import JobStatus
from core.registry import approvals
from core.registry.model_transition import ModelTransition, registered_model_names
from core.runs import NO_MODEL
from pages.common import (
    built,
    client,
    experiments,
    finished_predictions,
    fmt,
    grid_progress,
    list_jobs,
    md,
    promotion_rights,
    runs_key,
    runs_snapshot,
    show_error,
    sign_in_gate,
    user,
)

sign_in_gate()

st.title("Tuneboard")
st.write(f"Signed in as **{md(user())}**. Fine-tune text classifiers, compare them, and put the best one into "
         "production. Everything is recorded in MLflow.")



def waiting_for_approval() -> None:
    """Each waiting promotion request with its comparison in words, and Approve / Reject for those who may."""
    waiting = []
    for name in registered_model_names(client()):
        transition = ModelTransition(name)
        waiting += [(transition, req) for req in transition.requests() if req.pending]
    if not waiting:
        return
    st.subheader("Waiting for your approval")
    for transition, req in waiting:
        box = st.container(border=True)
        box.markdown(f"**{md(transition.model_name)}**: {md(req.user)} asks to put **version {md(req.version)}** "
                     f"({md(req.candidate)}) into {md(req.alias)}"
                     + (f", replacing version {md(req.replaces)}" if req.replaces else "")
                     + (f' — "{md(req.reason)}"' if req.reason else "") + f" (request {md(req.id)}).")
        try:
            compared = approvals.comparison(transition, req, finished_predictions)
            lines = compared.words()
        except Exception as exc:  # noqa: BLE001 - the request still shows; its comparison says why not
            show_error(exc, "comparing the candidate")
            lines = []
        for line in lines:
            box.write(f"- {md(line)}")
        may, _ = promotion_rights(transition.model_name, exists=True)
        if req.user == user() and transition.needs_approval():
            box.caption("You asked for it: someone else approves it. You can withdraw it on Registry & promotion.")
            continue
        if not may:
            box.caption("Approving or rejecting needs MANAGE on this model.")
            continue
        reason = box.text_input("Why (kept with the decision)", key=f"h_reason_{req.id}")
        a1, a2 = box.columns(2)
        if a1.button("Approve", type="primary", key=f"h_approve_{req.id}"):
            try:
                done = transition.approve(req.id, reason=reason, user=user(), read=finished_predictions)
                st.session_state["h_flash"] = (
                    f"Approved: version {done.version} of {md(transition.model_name)} is in {md(done.alias)}"
                    + (f" [{md(done.note)}]" if done.note else "")
                    + ". Its decision record is on Registry & promotion.")
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "approving the promotion")
        if a2.button("Reject", key=f"h_reject_{req.id}"):
            try:
                transition.reject(req.id, reason=reason, user=user())
                st.session_state["h_flash"] = (f"Rejected request {md(req.id)}: production of "
                                               f"{md(transition.model_name)} did not change.")
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "rejecting the request")


flash = st.session_state.pop("h_flash", None)
if flash:
    st.success(flash)
try:
    waiting_for_approval()
except Exception as exc:  # noqa: BLE001 - the page must still render
    show_error(exc, "reading the promotion requests")

try:
    jobs = list_jobs()
except Exception as exc:  # noqa: BLE001 - the page must still render
    show_error(exc, "reading the job queue")
    jobs = []
counts = {s: sum(j.status == s for j in jobs) for s in JobStatus}
cols = st.columns(4)
cols[0].metric("Training now", counts[JobStatus.RUNNING])
cols[1].metric("Waiting in the queue", counts[JobStatus.SCHEDULED])
cols[2].metric("Finished", counts[JobStatus.FINISHED])
cols[3].metric("Failed or cancelled", counts[JobStatus.FAILED] + counts[JobStatus.KILLED])
if counts[JobStatus.RUNNING] or counts[JobStatus.SCHEDULED]:
    for _, name, sentence in grid_progress():
        st.write(f"Grid of **{md(name)}**: {md(sentence)}.")
    st.page_link("pages/jobs.py", label="Watch the jobs that are running", icon=":material/pending_actions:")
recent = sorted((j for j in jobs if j.status.is_terminal() and j.end_time), key=lambda j: -j.end_time)[:5]
if recent:
    st.subheader("Finished recently")
    for job in recent:
        word = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "was cancelled"}[job.status.value]
        st.write(f"- **{md(job.run_name)}** {word}" + (f" — {md(job.reason)}" if job.reason else ""))

st.subheader("Best model of each experiment")
exps = experiments()[:10]
rows = []
finished = with_model = 0
for exp in exps:
    runs = runs_snapshot([exp.experiment_id])
    # the summary reads the ended runs and which metrics exist: a running job's progress does not rebuild it
    metric_columns = tuple(c for c in runs.frame.columns if c.startswith("metrics."))
    summary = built(compare.experiment_summary, runs.frame,
                    (*runs_key([exp.experiment_id], runs.ended_version), metric_columns))
    if summary is None:
        continue
    finished += summary["finished"]
    with_model += summary["with_model"]
    best = summary["run"]
    if best is None:
        continue
    gain = summary["gain"]
    rows.append({"experiment": exp.name, "best run": best["run_name"], "by": summary["label"],
                 "value": fmt(summary["value"]), "gain over its baseline": fmt(gain) if pd.notna(gain) else
                 "no baseline", "finished runs holding a model": summary["with_model"]})
if rows:
    st.caption(f"{with_model} finished run{'s hold' if with_model != 1 else ' holds'} a model that can be promoted, "
               "whichever tool logged them.")
    st.dataframe(rows, hide_index=True, width="stretch")
elif finished:
    st.info(f"{finished} finished run{'s' if finished != 1 else ''}, but none holds a model that can be promoted: "
            f"{md(NO_MODEL)}. They still compare on **Compare**.")
    st.page_link("pages/compare.py", label="Compare runs", icon=":material/leaderboard:")
else:
    st.info("No finished fine-tune yet. Start with **Compose & launch**: the demo models and data are ready.")
    st.page_link("pages/compose.py", label="Compose & launch an experiment", icon=":material/tune:")

st.subheader("In production")
names = registered_model_names(client())
if not names:
    st.info("No model is registered yet. When runs have finished, **Registry & promotion** registers the best one "
            "and puts it into production with one click.")
for name in names:
    transition = ModelTransition(name)
    current = transition.current("Production")
    if current is None:
        st.write(f"- **{md(name)}**: nothing in production yet")
        continue
    tags = current.tags
    st.write(f"- **{md(name)}**: version {current.version} ({md(tags.get('source_run_name', '?'))}), accuracy "
             f"{md(tags.get('metric.accuracy', '–'))}, promoted by {md(tags.get('promoted_by', '?'))} on "
             f"{md(tags.get('promoted_at', '?')[:16].replace('T', ' '))}")

st.divider()
st.write("Next: ")
st.page_link("pages/compose.py", label="Compose & launch a grid", icon=":material/tune:")
st.page_link("pages/compare.py", label="Compare runs", icon=":material/leaderboard:")
st.page_link("pages/registry.py", label="Register and promote the best model", icon=":material/rocket_launch:")
