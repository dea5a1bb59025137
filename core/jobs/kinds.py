"""The one table of job kinds: what the queue, the worker and a job's process ask when they need to know.

Built in: training (baselines and fine-tunes, ``core.training.kind``) and scoring a file
(``core.scoring.kind``). More can be listed in ``TUNEBOARD_JOB_KINDS``: module names, comma-separated, each
holding a ``KIND`` (``core.jobkind.JobKind``); every process of the queue (the dashboard, the worker, a job's
process) reads the same variable, so they all know the kind.
"""

from __future__ import annotations

import importlib
import os

from core.errors import TuneboardError
from core.jobkind import JobKind, JobSpec, spec_kind
from core.scoring.kind import SCORING
from core.training.kind import TRAINING

BUILT_IN: tuple[JobKind, ...] = (TRAINING, SCORING)
EXTRA_VARIABLE = "TUNEBOARD_JOB_KINDS"


def all_kinds() -> list[JobKind]:
    """The built-in kinds, then those ``TUNEBOARD_JOB_KINDS`` lists."""
    extra = []
    for name in filter(None, (n.strip() for n in os.environ.get(EXTRA_VARIABLE, "").split(","))):
        try:
            extra.append(importlib.import_module(name).KIND)
        except (ImportError, AttributeError) as exc:
            raise TuneboardError(f"{EXTRA_VARIABLE} lists {name!r}, which is not a module holding a KIND "
                                 f"({type(exc).__name__}: {exc}). Fix the variable or install that module.") from None
    return [*BUILT_IN, *extra]


def for_request(request: object) -> JobKind:
    """The kind that takes ``request`` (a grid, a run, a file to score...)."""
    for kind in all_kinds():
        if kind.accepts(request):
            return kind
    raise TuneboardError(f"no kind of job takes a {type(request).__name__}: submit a grid, a run or a file to "
                         "score.")


def for_spec(text: str) -> JobKind:
    """The kind of the job whose ``job_spec`` tag is ``text``."""
    name = spec_kind(text)
    for kind in all_kinds():
        if name in kind.names:
            return kind
    raise TuneboardError(f"this job is of kind {name!r}, which no process here knows: list its module in "
                         f"{EXTRA_VARIABLE} for the dashboard, the worker and the jobs alike.")


def job_spec(text: str) -> JobSpec:
    """The spec in a job's ``job_spec`` tag, read by its kind."""
    return for_spec(text).spec_from_json(text)


def label(run_type: str) -> str:
    """How pages name a run type ("fine-tune", "score a file"); the type itself when no kind names it."""
    for kind in all_kinds():
        if run_type in kind.labels:
            return kind.labels[run_type]
    return run_type
