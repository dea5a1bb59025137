"""Registry & promotion: register the best run, see what it replaces, promote (or request a promotion that someone
else approves on Home), roll back, download a promotion's decision record, try it."""

from __future__ import annotations

import streamlit as st

from core import charts, compare
from core.demo import TOPICS
from core.errors import TuneboardError
from core.metrics import METRICS, is_bookkeeping
from core.registry.model_transition import ModelTransition, predict, recorded_metrics, registered_model_names
from core.registry.promotion import best_candidate
from core.runs import NO_MODEL
from core.scoring import topics
from core.scoring.job import read_call, snippet
from pages.common import (
    client,
    experiments,
    fmt,
    load_runs,
    log,
    md,
    promotion_rights,
    request_rights,
    settings,
    show_error,
    sign_in_gate,
    user,
)
from pages.compare_examples import promotion_changes

sign_in_gate()

st.title("Registry & promotion")

if "r_confirm" not in st.session_state:
    st.session_state["r_confirm"] = None
names = registered_model_names(client())
c1, c2 = st.columns([2, 1])
existing = c1.selectbox("Registered model", options=[*names, "+ a new name"], key="r_model")
model_name = c2.text_input("New model name", key="r_new_name", value="Consumer_Topic_Classifier") \
    if existing == "+ a new name" else existing
if not model_name or not model_name.strip():
    st.info("Give the registered model a name.")
    st.stop()
transition = ModelTransition(model_name)
current = transition.current("Production")
may_promote, rights = promotion_rights(model_name, exists=model_name in names)
(st.caption if may_promote else st.warning)(rights)
broken = transition.problems() if model_name in names else []
if broken:
    st.warning("A promotion of this model stopped half-way (its process ended early): "
               + "; ".join(md(p) for p in broken) + ". Production is what the alias says until this is repaired.")
    if may_promote and st.button("Repair: finish the interrupted promotion", key="r_repair"):
        try:
            transition.repair(user=user())
            st.session_state["r_flash"] = "Repaired: the stages follow the aliases again, and the audit trail says so."
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "repairing the registry")

# -- promote the best run -----------------------------------------------------------------------------
st.subheader("Promote the best run")
exps = {e.name: e.experiment_id for e in experiments()}
p1, p2 = st.columns(2)
experiment = p1.selectbox("From experiment", options=list(exps), key="r_experiment")
# the metrics this experiment's runs carry (HF Trainer runs: eval_accuracy...), an accuracy- or F1-like one first
frame = load_runs([exps[experiment]]) if experiment else None
carried = compare.metric_names(frame) if frame is not None else []
offered = [m for m in carried if not is_bookkeeping(m)] or carried or list(METRICS)
default = compare.default_metric(frame) if frame is not None else None
metric = p2.selectbox("Best by", options=offered, key="r_metric",
                      index=offered.index(default) if default in offered else 0)
required = transition.approval_rule()  # why promotions need approval (this dashboard's setting or the server's)
may_request, request_words = request_rights(model_name, exists=model_name in names)
b1, b2 = st.columns(2)
if required:
    st.caption(f"Promotions here need someone else's approval ({md(required)}): request one, and a person with "
               "MANAGE approves it on Home.")
elif experiment and may_promote and b1.button("Promote the best run", type="primary", key="r_promote_best"):
    try:
        st.session_state["r_confirm"] = best_candidate(experiment, metric)
    except TuneboardError as exc:
        st.error(md(exc))
asking = st.session_state.get("r_asking", False)
if experiment and may_request and b2.button("Request promotion", key="r_request"):
    st.session_state["r_asking"] = asking = True
if asking and experiment and may_request:
    ask = st.container(border=True)
    ask.write(f"Ask for the best run of **{md(experiment)}** by **{md(metric)}** to go into production. It is "
              "registered now; production changes only when someone approves it on Home.")
    why = ask.text_input("Why (the person approving reads it)", key="r_request_reason")
    q1, q2 = ask.columns(2)
    if q1.button("Send the request", type="primary", key="r_request_send"):
        try:
            made = transition.request(experiment_name=experiment, metric=metric, reason=why, user=user())
            st.session_state["r_asking"] = False
            st.session_state["r_flash"] = (f"Requested (request {made.id}): version {made.version} of "
                                           f"{md(model_name)}, {md(made.candidate)}. It waits on Home for someone's "
                                           "approval; production did not change.")
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "requesting the promotion")
    if q2.button("Cancel", key="r_request_cancel"):
        st.session_state["r_asking"] = False
        st.rerun()
elif not may_request and model_name in names:
    st.caption(request_words)
if not required and model_name in names and may_request and transition.governs_marked_only():  # not marked yet
    with st.expander("Require someone else's approval for this model"):
        st.write("Approval is kept here for the models a team marks (`TUNEBOARD_APPROVAL=marked`), and this one is "
                 "not marked: anyone with MANAGE promotes it directly. Once marked, each promotion is a request "
                 "that someone else with MANAGE approves on Home. On the team server the mark is kept for good: "
                 "nobody, the admin included, can remove it.")
        if st.button("Mark it: its promotions need approval", key="r_mark"):
            try:
                transition.mark_for_approval()
                st.session_state["r_flash"] = (f"{md(model_name)} is marked: its promotions now need someone else's "
                                               "approval.")
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "marking the model")

pending = st.session_state["r_confirm"]
if pending and may_promote:
    box = st.container(border=True)
    box.write(f"**Candidate:** {md(pending.run_name)} (trained on {md(pending.dataset or '?')}) — "
              f"best by {md(pending.label)} in {md(pending.experiment)}")
    if pending.passed_over:
        shown = ", ".join(f"**{md(name)}** ({fmt(value)})" for name, value in pending.passed_over[:5])
        box.info(f"Passed over, though better by {md(pending.metric)}: {shown}. They cannot be promoted: "
                 f"{md(NO_MODEL)}.", icon=":material/info:")
    if pending.link:
        box.info(f"Its model was {md(pending.link)}: MLflow links no model to the run, and this one was the only "
                 "model logged just after it ended. The version records that.", icon=":material/link:")
    now = recorded_metrics(current) if current is not None else None
    label = f"version {current.version} now in production" if current is not None else "production"
    said, sentences = pending.sentences(now)
    if said:
        box.write(md(said))
    for sentence in sentences:
        box.write(f"- {md(sentence)}")
    compared = None  # the candidate against production, example by example: what the promotion records
    if current is not None:
        if pending.is_worse_than(now):
            box.warning(f"The candidate is worse than {label} on {md(pending.metric)}.")
        with box:  # is it more than chance? what it fixes and breaks; not like for like on different files
            compared = promotion_changes(pending, current, model_name, may_promote)
        box.write(f"Promoting replaces **{label}**; you can roll back afterwards.")
    reason = box.text_input("Why (kept in the audit trail)", key="r_reason", value="best run")
    b1, b2 = box.columns(2)
    if b1.button("Confirm: put it into production", type="primary", key="r_confirm_btn"):
        try:
            version = transition.register_run(client().get_run(pending.run_id), pending.model_uri, link=pending.link)
            done = transition.promote(version.version, "Production", reason=reason, user=user(),
                                      evidence=compared.evidence if compared is not None else None,
                                      metric=pending.metric)  # its decision record tests what it was chosen by
            st.session_state["r_confirm"] = None
            st.session_state["r_flash"] = f"Version {done.version} of {md(model_name)} is now in production."
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "promoting the model")
    if b2.button("Cancel", key="r_cancel"):
        st.session_state["r_confirm"] = None
        st.rerun()
flash = st.session_state.pop("r_flash", None)
if flash:
    st.success(flash)

# -- requests waiting (approved or rejected on Home) ----------------------------------------------------------
waiting = [r for r in transition.requests() if r.pending] if model_name in names else []
if waiting:
    st.subheader("Requests waiting for approval")
    for req in waiting:
        row = st.container(border=True)
        row.write(md(req.as_text))
        if req.user == user() and row.button("Withdraw my request", key=f"r_withdraw_{req.id}"):
            try:
                transition.withdraw(req.id, user=user())
                st.session_state["r_flash"] = f"Request {req.id} withdrawn."
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, "withdrawing the request")
    st.page_link("pages/home.py", label="Approve or reject on Home", icon=":material/how_to_reg:")

@st.cache_data(show_spinner="Reading the decision record...", max_entries=32)
def _decision_page(registry_uri: str, name: str, version: str, run_id: str, with_texts: bool) -> str:
    return ModelTransition(name).decision_record(version, with_texts=with_texts)


def decision_page(name: str, version: str, run_id: str, with_texts: bool) -> str:
    """A version's decision record, read once per record (a record never changes)."""
    try:
        return _decision_page(settings().registry_uri, name, version, run_id, with_texts)
    except Exception as exc:  # noqa: BLE001 - the page still renders; the button then downloads why
        log.exception("reading the decision record of %s version %s", name, version)
        return f"The decision record could not be read: {type(exc).__name__}."


# -- versions, any stage, rollback, audit ------------------------------------------------------------
versions = transition.versions_frame()
st.subheader("Versions")
if versions.empty:
    st.info(f"{md(model_name)} has no versions yet: "
            + ("request a promotion of the best run above." if required else "promote the best run above."))
else:
    if current is not None:
        st.write(f"In production: **version {current.version}** ({md(current.tags.get('source_run_name', '?'))}).")
    st.dataframe(versions.drop(columns=["run_id"]), hide_index=True, width="stretch")
    m1, m2, m3 = st.columns(3)
    version = m1.selectbox("Version", options=list(versions["version"]), key="r_version")
    stage = m2.text_input("Stage or alias", value="Staging", key="r_stage",
                          help="Production, Staging, Archived, or any alias such as champion")
    if may_promote and m3.button("Move it there", key="r_move"):
        try:
            transition.promote(version, stage, reason=f"moved by hand to {stage}", user=user())
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "moving the version")
    record_of = versions.set_index("version")["decision record"].get(version) if "decision record" in versions \
        else None
    if record_of:
        d1, d2 = st.columns([1, 2])
        texts = d2.checkbox("Put the example texts in (they may hold customers' personal data)", key="r_record_texts")
        d1.download_button(f"Download version {version}'s decision record", key="r_record",
                           data=decision_page(model_name, version, record_of, texts),
                           file_name=f"{model_name}-v{version}-decision-record.html", mime="text/html")
    if may_promote and current is not None and st.button("Roll back production to the version it replaced",
                                                         key="r_rollback"):
        try:
            back = transition.rollback("Production", user=user())
            st.session_state["r_flash"] = f"Rolled back: version {back.version} is in production again."
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "rolling back")

st.subheader("Audit trail")
trail = transition.audit_trail()
if trail:
    st.dataframe([{"when": e.at, "who": e.user, "what": e.action, "version": e.version, "stage/alias": e.alias,
                   "replaced": e.replaced or "—", "why": e.reason, "evidence": e.evidence.get("verdict", "")}
                  for e in reversed(trail)], hide_index=True,
                 width="stretch")
else:
    st.write("Nothing promoted yet.")


@st.cache_resource(show_spinner="Loading the production model...", max_entries=4)
def production_model(name: str, version: str):
    return ModelTransition(name).load("Production")


@st.cache_data(show_spinner="Reading the production model's labels...", max_entries=16)
def _labels(registry_uri: str, name: str, version: str) -> dict[int, str]:
    return topics.model_labels(f"models:/{name}/{version}")  # a failure is raised, so not cached


def version_labels(name: str, version: str) -> dict[int, str] | str:
    """The version's class labels, or why they could not be read (then only the plain mode is offered)."""
    try:
        return _labels(settings().registry_uri, name, version)
    except TuneboardError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - the plain mode still works; the log keeps the traceback
        log.exception("reading the labels of %s version %s", name, version)
        return f"its labels could not be read ({type(exc).__name__}); the details are in the dashboard's log."


def try_pair(version: str) -> None:
    """The plain mode: one text (and a hypothesis, for an NLI model), the model's label and score."""
    t1, t2 = st.columns(2)
    text = t1.text_area("Text (e.g. a call snippet)", key="r_try_text",
                        value="hi, I can't log in to my account, and my password stopped working.")
    pair = t2.text_input("Hypothesis (for an NLI model; leave empty for single texts)", key="r_try_pair",
                         value="This call is about account access.")
    if st.button("Predict", key="r_predict"):
        try:
            result = predict(production_model(model_name, version), [text], [pair] if pair else None)
            st.write(f"Version {version} says **{md(result['label'][0])}** (score {result['score'][0]:.3f}).")
        except Exception as exc:  # noqa: BLE001
            show_error(exc, "asking the model")


def try_topics(version: str) -> None:
    """Topic mode for an NLI model: a transcript, candidate topics, a template; a chart of each topic's score,
    and for each topic tagged the part of the call that decided it."""
    st.caption("Each topic is scored on its own: how likely the call entails the template's sentence with the "
               "topic in it. A call may be about several topics, or none.")
    transcript = st.text_area("Transcript of a call", key="r_topic_text", height=150,
                              value="hi, thanks for taking my call. I can't log in to my account, and my password "
                                    "stopped working. Also, why was I charged this fee? thank you.")
    c1, c2 = st.columns([1, 1])
    typed = c1.text_area("Topics (one per line, or separated by commas)", key="r_topic_list", height=150,
                         value="\n".join(sorted(TOPICS)))
    template = c2.text_input("Hypothesis template ({} is where the topic goes)", key="r_topic_template",
                             value=topics.DEFAULT_TEMPLATE)
    threshold = c2.slider("Tag a topic when its probability is at least", min_value=0.0, max_value=1.0, step=0.01,
                          value=topics.DEFAULT_THRESHOLD, key="r_topic_threshold")
    asked = (model_name, version, transcript, typed, template)
    if st.button("Tag topics", type="primary", key="r_tag"):
        try:
            read = read_call(f"models:/{model_name}/{version}", transcript, topics.parse_topics(typed), template)
            st.session_state["r_topic_result"] = {"asked": asked, "read": read}
        except Exception as exc:  # noqa: BLE001
            st.session_state["r_topic_result"] = None
            show_error(exc, "tagging the call's topics")
    result = st.session_state.get("r_topic_result")
    if not result or result["asked"][:2] != asked[:2]:  # scores of another model or version: not shown
        return
    if result["asked"] != asked:
        st.info("You changed the transcript, topics or template: click **Tag topics** again to score them.")
    read = result["read"]
    scores = read.scores
    st.plotly_chart(charts.topic_scores_chart(scores, threshold), width="stretch", key="r_topic_chart")
    (found,) = topics.tagged(scores.to_numpy(), list(scores.index), threshold)
    if found:
        st.success(f"Version {version} tags this call with: " + ", ".join(f"**{md(t)}**" for t in found)
                   + f" (probability at least {threshold:.2f}).")
        for topic in found:  # what decided each: the window of the call with the highest score
            st.markdown(f"**{md(topic)}** {scores[topic]:.2f}: \"{md(snippet(read.frame.at[topic, 'evidence']))}\"")
    else:
        top = scores.idxmax()
        st.info(f"No topic reaches {threshold:.2f}. The most likely is **{md(top)}** ({scores[top]:.2f}): lower "
                "the threshold to tag more.")
    st.caption(f"The call was read whole, in {read.windows} window{'s' if read.windows != 1 else ''} of at most "
               f"{read.budget_tokens} tokens; a topic's score is its best window's.")


st.subheader("Try it")
if current is None:
    st.write("Put a model into production to try it here.")
else:
    labels = version_labels(model_name, str(current.version))
    if isinstance(labels, dict) and topics.is_nli(labels):
        topic_tab, pair_tab = st.tabs(["Tag topics", "Premise and hypothesis"])
        with topic_tab:
            try_topics(str(current.version))
        with pair_tab:
            try_pair(str(current.version))
    else:
        if isinstance(labels, str):
            st.caption(f"Topic tagging is not offered: {md(labels)}")
        else:
            st.caption("Topic tagging needs an NLI model (a label meaning entailment); this one's labels are "
                       + ", ".join(md(v) for _, v in sorted(labels.items())) + ".")
        try_pair(str(current.version))
