"""What every page shares: the cached queue and MLflow client, the cached runs loader, error display."""

from __future__ import annotations

import html
import logging
import re

import streamlit as st

from core import runs as runs_mod
from core.errors import TuneboardError
from core.settings import Settings, configure_mlflow, current_user

log = logging.getLogger("tuneboard.pages")


def settings() -> Settings:
    return configure_mlflow()


@st.cache_resource(show_spinner=False)
def _client(tracking_uri: str, registry_uri: str):
    return runs_mod.client(tracking_uri, registry_uri)


def client():
    s = settings()
    return _client(s.tracking_uri, s.registry_uri)


@st.cache_resource(show_spinner=False)
def _queue(tracking_uri: str, home: str, backend: str):
    from core.jobs.queue import JobQueue

    return JobQueue(settings())


def queue():
    import os

    s = settings()
    return _queue(s.tracking_uri, str(s.home), os.environ.get("JOB_BACKEND", "local"))


# Polling coalesced: every open session re-reads the queue and the runs every couple of seconds; within
# POLL_TTL they share one MLflow query (bench/bench_load.py: 10 sessions over 200 queued jobs).
POLL_TTL = 1.0


@st.cache_resource(show_spinner=False)
def _runs_loader():
    """One for the whole server: each experiment's runs read once, then only what changed (core.runs_cache)."""
    from core.runs_cache import RunsLoader

    return RunsLoader()


def _who() -> str | None:
    creds = credentials()  # one user's view is never served to another from a cache
    return creds.username if creds else None


def runs_snapshot(experiment_ids: list[str]):
    """All runs of the experiments (at most POLL_TTL old; only the runs that changed are read again) with the
    numbers that change when they do (core.runs_cache.Snapshot: ``frame``, ``version``, ``ended_version``).
    The frame is shared between sessions: derive new frames from it, never change it in place."""
    uri = settings().tracking_uri
    with st.spinner("Reading runs from MLflow..."):
        return _runs_loader().load(client(), experiment_ids, key=(uri, _who()), max_age=POLL_TTL)


def load_runs(experiment_ids: list[str]):
    """All runs of the experiments, at most POLL_TTL old (a copy the caller may change)."""
    return runs_snapshot(experiment_ids).frame.copy(deep=False)


def runs_key(experiment_ids: list[str], version: int) -> tuple:
    """What identifies a view of runs for :func:`built`: store, user, experiments and a version of their runs."""
    return settings().tracking_uri, _who(), tuple(sorted(experiment_ids)), version


@st.cache_resource(show_spinner=False, max_entries=256)
def _built(name: str, key: tuple, args: tuple, _make, _frame):
    return _make(_frame, *args)


def built(make, frame, key: tuple, *args):
    """``make(frame, *args)``, made once per ``key`` (:func:`runs_key` and whatever else chose ``frame``'s rows)
    and ``args``, and shared by the sessions: figures and tables rebuild only when their inputs changed, keyed
    on the runs' version rather than on hashing the frame. Never change what it returns in place."""
    return _built(f"{make.__module__}.{make.__qualname__}", key, args, make, frame)


@st.cache_data(ttl=POLL_TTL, show_spinner=False, max_entries=64)
def _jobs(tracking_uri: str, home: str, backend: str, grid_id: str | None, who: str | None) -> list:
    # through the server's runs loader: a poll reads again only the jobs that moved (RUNNING ones, those
    # started or ended since), not the whole queue
    return queue().jobs(grid_id=grid_id, loader=_runs_loader(), loader_key=(tracking_uri, who), max_age=POLL_TTL)


def grid_progress() -> list[tuple[str, str, str]]:
    """(grid id, experiment name, "3 of 10 jobs left ...; it should end at 14:32, in 6 min") of every grid with
    jobs left, from the whole queue (what is queued ahead counts)."""
    jobs = list_jobs()
    names = {e.experiment_id: e.name for e in experiments()}
    first = {}
    for job in jobs:
        first.setdefault(job.grid_id, job)
    return [(grid, names.get(first[grid].experiment_id, grid), eta.sentence())
            for grid, eta in queue().grid_etas(jobs).items()]


def list_jobs(grid_id: str | None = None) -> list:
    """The queue's jobs (of one grid), at most POLL_TTL old; call jobs_changed() after acting on one."""
    import os

    s = settings()
    return _jobs(s.tracking_uri, str(s.home), os.environ.get("JOB_BACKEND", "local"), grid_id, _who())


@st.cache_data(ttl=5, show_spinner=False, max_entries=256)
def _histories(tracking_uri: str, runs: tuple[tuple[str, str], ...], metric: str, who: str | None) -> dict:
    return runs_mod.metric_histories(client(), dict(runs), metric)


def metric_histories(runs: dict[str, str], metric: str) -> dict:
    """Training curves of a few runs; re-read at most every 5 s (a running job's curve still grows)."""
    return _histories(settings().tracking_uri, tuple(sorted(runs.items())), metric, _who())


@st.cache_data(ttl=60, show_spinner=False, max_entries=256)
def _confusion(tracking_uri: str, run_id: str, who: str | None):
    return runs_mod.confusion_matrix(client(), run_id)


def confusion_matrix(run_id: str):
    """A run's confusion matrix (an artifact download): kept a minute, as it is written once at the run's end."""
    return _confusion(settings().tracking_uri, run_id, _who())


@st.cache_data(show_spinner="Reading the run's predictions...", max_entries=64)
def _predictions(tracking_uri: str, run_id: str, who: str | None):
    from core.examples import read_predictions

    return read_predictions(client(), run_id)


def predictions(run_id: str, status: str):
    """A run's validation predictions table (``core.examples``), None when it has none. Cached per run once the
    run has ended, as the table of an ended run never changes; read afresh while it is still going."""
    if status in ("FINISHED", "FAILED", "KILLED"):
        return _predictions(settings().tracking_uri, run_id, _who())
    from core.examples import read_predictions

    return read_predictions(client(), run_id)


def finished_predictions(run_id: str):
    """A finished run's predictions table (cached), or None: the reader core's comparisons take."""
    return predictions(run_id, "FINISHED")


def jobs_changed(*run_ids: str) -> None:
    """After a submit, cancel or retry, the next listing reads MLflow again (and ``run_ids``, ended runs this
    page changed, e.g. the job a retry tags, are read again in full)."""
    _jobs.clear()
    _runs_loader().invalidate(run_ids)


def experiments() -> list:
    return runs_mod.experiments(client())


def user() -> str:
    return current_user()


# Markdown's marks; "_" only at a word's edge, so snake_case names stay readable in the page's source
_MARKS = re.compile(r"[\\`*\[\]$~|#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_LIST_START = re.compile(r"^\s*(?:([-+])|(\d+)([.)]))")  # "- x", "1. x" would start a list


def md(value) -> str:
    """Text from users or runs (names, tags, paths, messages) for st.write, st.markdown, captions and alerts.

    Streamlit renders those as Markdown: a run name could otherwise become a link, an image fetched from
    anywhere, or HTML. HTML's ``<``, ``>`` and ``&`` become entities, Markdown's marks get a backslash, and
    line breaks a space, so the text shows exactly as it was written.
    """
    text = " ".join(html.escape(str(value), quote=False).splitlines())
    text = _MARKS.sub(lambda m: "\\" + m.group(0), text)
    return _LIST_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", text)


def show_error(exc: Exception, doing: str) -> None:
    """A user's mistake gets its plain message; anything else a short apology, with the traceback in the log."""
    if isinstance(exc, TuneboardError):
        st.error(md(exc), icon=":material/error:")
    else:
        log.exception("while %s", doing)
        st.error(f"Something went wrong while {md(doing)}: {type(exc).__name__}: {md(exc)}. The details are in "
                 "the dashboard's log.", icon=":material/error:")


def fmt(value, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


# -- sign-in (team server with MLflow's basic-auth app) ------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _server_auth(tracking_uri: str):
    from core.auth import server_auth

    return server_auth(tracking_uri)


def auth_required() -> bool:
    return _server_auth(settings().tracking_uri).required


def credentials():
    """This browser session's credentials (kept in its memory only), or None."""
    return st.session_state.get("auth_creds")


def sign_in_gate() -> None:
    """First thing on every page: confine this browser session's reads to the allowed roots; on a server with
    sign-in, ask for it; then act as that user.

    Every MLflow call this page makes afterwards carries the session's credentials (core.auth), and every
    file or model folder it names, and any grid it submits, stays inside the allowed folders (core.paths).
    """
    from core import paths
    from core.auth import ANONYMOUS, Credentials, act_as, sign_in

    paths.confine()  # the dashboard serves others: they name files on this server, not on their own machine
    if not auth_required():
        act_as(None)  # the dashboard process's own identity: local store or an open server
        return
    creds = credentials()
    if creds is None:
        act_as(ANONYMOUS)
        st.title("Sign in")
        st.write("The team's MLflow server asks everyone to sign in. Use your account on that server; the "
                 "password stays in this browser session's memory and is sent only to the server.")
        with st.form("sign_in"):
            name = st.text_input("User name", key="auth_user")
            password = st.text_input("Password", type="password", key="auth_password")
            if st.form_submit_button("Sign in", type="primary"):
                try:
                    who = sign_in(settings().tracking_uri, name, password)
                    st.session_state["auth_creds"] = Credentials(who.username, password)
                    st.session_state["auth_admin"] = who.is_admin
                    st.session_state.pop("auth_password", None)
                    st.rerun()
                except TuneboardError as exc:
                    st.error(md(exc), icon=":material/lock:")
        st.stop()
    act_as(creds)
    with st.sidebar:
        st.caption(f"Signed in as **{md(creds.username)}**" + (" (admin)" if st.session_state.get("auth_admin")
                                                                 else ""))
        if st.button("Sign out", key="auth_sign_out"):
            for key in ("auth_creds", "auth_admin"):
                st.session_state.pop(key, None)
            st.rerun()


def promotion_rights(model_name: str, exists: bool) -> tuple[bool, str]:
    """(may promote and roll back, the sentence that says so) for the signed-in user and this model."""
    from core.auth import may_promote, model_permission

    if not auth_required():
        return True, (f"This store has no sign-in: anyone who can open this dashboard can promote and roll back. "
                      f"Changes are recorded under the name {md(user())}.")
    creds = credentials()
    if not exists:
        return True, f"{md(model_name)} is new: you will own it (MANAGE) once its first version is registered."
    permission = model_permission(settings().tracking_uri, creds, model_name)
    if may_promote(permission):
        return True, f"You ({md(creds.username)}) may promote and roll back {md(model_name)} (MANAGE)."
    return False, (f"You ({md(creds.username)}) have {permission} permission on {md(model_name)}: promoting and "
                   "rolling back need MANAGE. Ask the model's owner or a server admin to grant it.")


def request_rights(model_name: str, exists: bool) -> tuple[bool, str]:
    """(may request a promotion, the sentence that says so): the server asks for EDIT on the model."""
    from core.auth import model_permission

    if not auth_required() or not exists:
        return True, "You may request promotions of this model."
    creds = credentials()
    permission = model_permission(settings().tracking_uri, creds, model_name)
    if permission in ("EDIT", "MANAGE"):
        return True, f"You ({md(creds.username)}) may request promotions of {md(model_name)} ({permission})."
    return False, (f"You ({md(creds.username)}) have {permission} permission on {md(model_name)}: requesting a "
                   "promotion needs EDIT. Ask the model's owner or a server admin to grant it.")
