"""What every page shares: the cached queue and MLflow client, the cached runs loader, error display."""

from __future__ import annotations

import logging

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
    from core.jobs import JobQueue

    return JobQueue(settings())


def queue():
    import os

    s = settings()
    return _queue(s.tracking_uri, str(s.home), os.environ.get("JOB_BACKEND", "local"))


@st.cache_data(show_spinner="Reading runs from MLflow...", max_entries=32)
def _frame(tracking_uri: str, experiment_ids: tuple[str, ...], token: tuple):
    return runs_mod.load_frame(client(), list(experiment_ids))


def load_runs(experiment_ids: list[str]):
    """All runs of the experiments; cached per store and experiments until a run starts, ends or appears."""
    ids = tuple(sorted(experiment_ids))
    return _frame(settings().tracking_uri, ids, runs_mod.change_token(client(), ids))


def experiments() -> list:
    return runs_mod.experiments(client())


def user() -> str:
    return current_user()


def show_error(exc: Exception, doing: str) -> None:
    """A user's mistake gets its plain message; anything else a short apology, with the traceback in the log."""
    if isinstance(exc, TuneboardError):
        st.error(str(exc), icon=":material/error:")
    else:
        log.exception("while %s", doing)
        st.error(f"Something went wrong while {doing}: {type(exc).__name__}: {exc}. The details are in the "
                 "dashboard's log.", icon=":material/error:")


def fmt(value, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"
