"""Jobs: live progress of background training, cancel and retry, the log of a job."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.jobs import kinds
from core.jobs.model import Job, JobStatus
from pages.common import grid_progress, jobs_changed, list_jobs, md, queue, settings, show_error, sign_in_gate

sign_in_gate()

REFRESH_SECONDS = 2

st.title("Jobs")
flash = st.session_state.pop("flash", None)
if flash:
    st.success(md(flash) + " They train in the background: you can close this page and come back.")

q = queue()
if q.backend_name == "local":
    from core.jobs.local import ensure_worker, worker_info

    info = worker_info(settings())
    if info:
        st.caption(f"Local worker running (pid {info['pid']}, slots: {', '.join(info['slots'])}).")
    else:
        st.warning("No worker is running, so queued jobs wait.")
        if st.button("Start the worker", key="j_start_worker"):
            ensure_worker(settings())
            st.rerun()
else:
    st.caption(f"Jobs run on the {q.backend_name} backend.")

grids = {"": "all jobs"}
last = st.session_state.get("last_grid")
if last:
    grids[last] = "the grid just launched"
choice = st.radio("Show", options=list(grids), format_func=grids.get, horizontal=True, key="j_scope",
                  index=1 if last else 0)


def row(job: Job) -> dict:
    p = job.progress
    running = job.status == JobStatus.RUNNING
    return {
        "run": job.run_name, "kind": kinds.label(job.kind),
        "status": job.status.value.lower() if not running or not p else p.stage.replace("queued", "starting"),
        "progress": round(100 * (p.fraction if p and running else (1.0 if job.status == JobStatus.FINISHED else 0))),
        "epoch": f"{p.epoch:.2f}" if p and p.total_steps and p.unit == "step" else "",
        "loss": f"{p.loss:.4f}" if p and p.loss is not None else "",
        "samples/s": f"{p.samples_per_second:.0f}" if p and p.samples_per_second else "",
        "ETA": f"{p.eta_seconds:.0f} s" if p and running and p.eta_seconds is not None else "",
        "where": job.slot or "", "why it ended": job.reason or "", "run id": job.run_id,
    }


@st.fragment(run_every=REFRESH_SECONDS)
def live_table() -> None:
    try:
        jobs = list_jobs(choice or None)
    except Exception as exc:  # noqa: BLE001 - keep polling after a hiccup
        show_error(exc, "reading the job queue")
        return
    if not jobs:
        st.info("No jobs yet. Launch a grid from **Compose & launch**.")
        st.page_link("pages/compose.py", label="Compose & launch", icon=":material/tune:")
        return
    counts = {s: sum(j.status == s for j in jobs) for s in JobStatus}
    st.write(", ".join(f"**{n}** {s.value.lower()}" for s, n in counts.items() if n))
    shown = {j.grid_id for j in jobs}
    for grid, name, sentence in grid_progress():
        if grid in shown:
            st.write(f"Grid of **{md(name)}**: {md(sentence)}.")
    st.dataframe(pd.DataFrame([row(j) for j in jobs]), hide_index=True, width="stretch", column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=100, format="%d%%")})
    job_details({j.run_id: j for j in jobs})


def job_details(jobs: dict[str, Job]) -> None:
    """The chosen job: its state in words, cancel or retry, and its log (refreshed with the table)."""
    st.subheader("One job")
    selected = st.selectbox("Job", options=list(jobs), format_func=lambda i: f"{jobs[i].run_name} ({i[:8]})",
                            key="j_selected")
    if not selected:
        return
    job = jobs[selected]
    reason = f" — {md(job.reason)}" if job.reason else ""
    st.write(f"**{md(job.run_name)}** is **{job.status.value.lower()}**{reason}")
    b1, b2 = st.columns(2)
    if not job.status.is_terminal() and b1.button("Cancel this job", key="j_cancel"):
        try:
            q.cancel(job.run_id)
            jobs_changed()
            st.toast("Cancelled. A running job stops within a few seconds.")
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "cancelling the job")
    if job.status.is_terminal() and b2.button("Retry this job", key="j_retry"):
        try:
            again = q.retry(job.run_id)
            jobs_changed(job.run_id)  # the old job now names its retry (a tag set after it ended)
            st.toast(f"Queued again as {again.run_id[:8]}.")
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "retrying the job")
    st.caption("Last lines of its log")
    st.code(q.log_tail(job, 40) or "(nothing written yet)", language=None)


live_table()
