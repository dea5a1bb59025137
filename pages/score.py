"""Score a file: upload texts, pick a model, score them in the background, download the result."""

from __future__ import annotations

import streamlit as st

from core.jobs.model import JobStatus
from core.models import sources as models
from core.progress import progress_text
from core.registry.model_transition import ModelTransition, registered_model_names
from core.scoring import files
from core.scoring.job import ScoreSpec, download_result, truncation_note
from core.scoring.topics import DEFAULT_TEMPLATE, is_nli, parse_topics
from pages.common import client, jobs_changed, log, md, queue, settings, show_error, sign_in_gate

sign_in_gate()

REFRESH_SECONDS = 2
PREVIEW_ROWS = 5
CHOICES = {"production": "The production model", "version": "A registered version", "run": "A run's model"}

st.title("Score a file")
st.caption("Upload a file of texts (or of calls), choose a model, and get the file back with each row's predicted "
           "label and scores, or the topics of each call. It runs in the background: you can leave this page.")


@st.cache_data(show_spinner="Reading the model's labels...", max_entries=32)
def _labels(uri: str, ref: str) -> dict[int, str]:
    return models.labels(models.resolve(ref, client()))


# -- 1. the model ------------------------------------------------------------------------------------------------
st.subheader("1. The model")
names = registered_model_names(client())
how = st.radio("Which model", options=list(CHOICES), format_func=CHOICES.get, horizontal=True, key="s_how")
ref = None
if how == "run":
    run_id = st.text_input("Run id (copy it from Compare or the MLflow UI)", key="s_run").strip()
    ref = run_id or None
elif not names:
    st.info("No model is registered yet. Promote one on **Registry & promotion**, or use a run's model.")
else:
    name = st.selectbox("Registered model", options=names, key="s_model")
    if how == "production":
        ref = f"models:/{name}@production"
    else:
        versions = [str(v.version) for v in sorted(ModelTransition(name).versions(), key=lambda v: -int(v.version))]
        version = st.selectbox("Version", options=versions, key="s_version")
        ref = f"models:/{name}/{version}" if version else None
source, labels = None, {}
if ref:
    try:
        source = models.resolve(ref, client())
        labels = _labels(source.uri, ref)
        st.caption(f"Scoring with **{md(source.label)}**; its labels: {md(', '.join(labels.values()))}.")
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "finding the model")
        source = None

# -- 2. the file -------------------------------------------------------------------------------------------------
st.subheader("2. The file")
upload = st.file_uploader("A CSV, TSV, JSONL or Parquet file, or an Excel workbook: one text (or call) per row",
                          type=[k.lstrip(".") for k in files.FORMATS], key="s_upload")
table = None
if upload is not None:
    if st.session_state.get("s_uploaded", (None,))[0] != (upload.name, upload.size):
        try:
            saved = files.save_upload(upload.name, upload.getvalue(), settings().data_dir / "uploads" / "scoring")
            st.session_state["s_uploaded"] = ((upload.name, upload.size), str(saved))
        except Exception as exc:  # noqa: BLE001
            st.session_state.pop("s_uploaded", None)
            show_error(exc, "reading the uploaded file")
    if "s_uploaded" in st.session_state:
        try:
            table = files.read(st.session_state["s_uploaded"][1])
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "reading the uploaded file")

nli = is_nli(labels) if labels else False
if table is not None:
    st.caption(f"{len(table)} rows; the first {min(PREVIEW_ROWS, len(table))}:")
    st.dataframe(table.frame.head(PREVIEW_ROWS).astype(str), hide_index=True, width="stretch")
    modes = {"classify": "Classify each row", **({"topics": "Tag each call's topics"} if nli else {})}
    mode = st.radio("What to do", options=list(modes), format_func=modes.get, horizontal=True, key="s_mode")
    if not nli:
        st.caption("Topic tagging needs an NLI model (one with an 'entailment' label); this one classifies rows.")
    columns = table.columns
    try:
        guessed, guessed_pair = files.choose_columns(table, transcripts=mode == "topics")
    except Exception:  # noqa: BLE001 - no guess: the user picks
        guessed, guessed_pair = columns[0], None
    c1, c2 = st.columns(2)
    text_column = c1.selectbox("Calls are in column" if mode == "topics" else "Texts are in column",
                               options=columns, index=columns.index(guessed), key="s_text_column")
    pair_column, topics, template, threshold = None, (), DEFAULT_TEMPLATE, 0.5
    if mode == "classify":
        options = ["(none)", *columns]
        pair_column = c2.selectbox("Second text (a sentence-pair model's hypothesis)", options=options,
                                   index=options.index(guessed_pair) if guessed_pair else 0, key="s_pair_column")
        pair_column = None if pair_column == "(none)" else pair_column
    else:
        threshold = c2.slider("Tag a topic when its score is at least", 0.0, 1.0, 0.5, 0.05, key="s_threshold")
        topics = tuple(parse_topics(st.text_area("Topics, one per line or separated by commas", key="s_topics",
                                                 placeholder="account access\nloan request\nwithdrawal")))
        template = st.text_input("Hypothesis ({} is the topic)", value=DEFAULT_TEMPLATE, key="s_template")
    used = [c for c in (text_column, pair_column) if c]
    st.caption(f"Uses column{'s' if len(used) > 1 else ''} {md(', '.join(used))}; the result keeps every column "
               "and adds " + ("one score per topic, the topics over the threshold and, for each topic tagged, the "
                              "part of the call that decided it." if mode == "topics" else
                              "the predicted label, a score per label and, for a long text, the part that "
                              "decided.") + " Long texts are read whole, in overlapping windows.")
    if source is not None and st.button("Score this file", type="primary", key="s_submit"):
        try:
            spec = ScoreSpec(ref, table.path, mode=mode, topics=topics, template=template, threshold=threshold,
                             text_column=text_column, pair_column=pair_column)
            st.session_state["s_job"] = queue().submit(spec)[0].run_id
            jobs_changed()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "starting the scoring job")


# -- 3. the job --------------------------------------------------------------------------------------------------
@st.fragment(run_every=REFRESH_SECONDS)
def job_panel() -> None:
    run_id = st.session_state.get("s_job")
    if not run_id:
        return
    st.subheader("3. The result")
    q = queue()
    try:
        job = q.get(run_id)
    except Exception as exc:  # noqa: BLE001 - keep polling after a hiccup
        show_error(exc, "reading the scoring job")
        return
    p = job.progress
    if not job.status.is_terminal():
        stage = p.stage if p and job.status == JobStatus.RUNNING else "waiting for the worker"
        st.progress(p.fraction if p else 0.0, text=f"{md(stage)} {md(progress_text(p)) if p else ''}")
        if st.button("Cancel", key="s_cancel"):
            try:
                q.cancel(run_id)
                jobs_changed()
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "cancelling the job")
        return
    if job.status != JobStatus.FINISHED:
        st.error(f"The scoring job {job.status.value.lower()}: {md(job.reason or 'no reason was recorded')}",
                 icon=":material/error:")
        if st.button("Retry", key="s_retry"):
            try:
                st.session_state["s_job"] = q.retry(run_id).run_id
                jobs_changed()
                st.rerun(scope="fragment")
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "retrying the job")
        return
    try:
        name, content = download_result(run_id, client())
    except Exception as exc:  # noqa: BLE001
        show_error(exc, "fetching the result")
        return
    st.success(f"Scored {p.total_steps if p else ''} rows. Download the file, or look at the first rows below.")
    st.download_button(f"Download {name}", data=content, file_name=name, key="s_download", type="primary")
    try:
        cut = truncation_note(run_id, client())
    except Exception:  # noqa: BLE001 - the result is there; only the note is missing
        log.exception("reading the truncated tag of scoring run %s", run_id)
        cut = None
    if cut:
        st.warning(f"Not every word was read: this job was set to read only the start of each text, and it "
                   f"{md(cut)}. Scores of those texts miss what came later; score the file again without "
                   "truncating to read them whole.", icon=":material/content_cut:")
    shown = files.preview(name, content, PREVIEW_ROWS).astype(str)
    st.dataframe(shown, hide_index=True, width="stretch")
    if any(str(c).startswith("evidence") for c in shown.columns):
        st.caption("The **evidence** columns hold the part of each text that decided: the window of a long text "
                   "that gave its label, or, for each topic tagged, the part of the call that gave its score.")
    st.caption(f"Recorded as MLflow run {md(run_id)}, with the model's version and the file's digest.")


job_panel()
