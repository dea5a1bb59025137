"""What a kind of job is, as the background queue sees it: the protocol training and scoring implement.

The queue (``core.jobs``) knows no kind of job. It asks ``core.jobs.kinds`` for the kind that takes a request
(a grid, a run, a file to score) and then only calls the kind:

- :meth:`JobKind.plan` checks the request and says which runs to create (:class:`Planned`); nothing is
  created when it raises;
- :meth:`JobKind.retry_tags` says how a retry of an ended run is tagged (it keeps the spec and experiment);
- :meth:`JobKind.run` does the job in its own process, told by a :class:`JobContext` where to report;
- :meth:`JobKind.gpu_bytes` is what the job needs of a GPU, for the worker's packing.

A job's spec is kept as JSON in its run's ``job_spec`` tag (:data:`SPEC_TAG`); its ``kind`` field names the
kind (one of the kind's :attr:`JobKind.names`), which is also the run's ``run_type`` tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.progress import Progress
from core.settings import Settings

SPEC_TAG = "job_spec"  # the JSON spec a job's process runs


class JobSpec(Protocol):
    """What every kind's spec offers: a run name, the params to log, and a JSON form with its ``kind``."""

    kind: str

    @property
    def run_name(self) -> str: ...

    def params(self) -> dict[str, Any]: ...

    def to_json(self) -> str: ...


@dataclass(frozen=True)
class Planned:
    """One run the queue creates for a job: its spec, experiment, the tags that identify it (run type, model,
    dataset...), and tags for its experiment (e.g. what rebuilds a grid from it)."""

    spec: JobSpec
    experiment_name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    experiment_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Past:
    """A finished job, as a kind learns from it how long the next ones take: its spec, its seconds from start to
    end, and what it measured (``train_runtime``, ``train_samples_per_second``, ``eval_runtime``...)."""

    spec: JobSpec
    seconds: float
    figures: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How a job's run ended: FINISHED, FAILED (``error`` says why) or REQUEUED (left open to queue again);
    ``detail`` is said in the job's last log line (e.g. "1,200 rows")."""

    status: str
    error: str | None = None
    detail: str = ""


class JobContext(Protocol):
    """What the process running one job gives its kind (``core.jobs.runner``)."""

    run_id: str
    settings: Settings

    def stage(self, name: str, *, hold: bool = True) -> None:
        """Say the job reached a stage ("reading data"): in its log and its progress; a test may hold there."""

    def report(self, progress: Progress, *, force: bool = False) -> None:
        """The job's progress, written to its run at most every second (at once when ``force``)."""

    def checkpoint(self, name: str) -> None:
        """A point a test may hold the process at (``core.faults``); nothing otherwise."""

    def requeue(self, exc: BaseException) -> bool:
        """Whether a failure should put the job back in the queue rather than fail it (out of GPU memory
        while sharing the GPU)."""

    def before_end(self, status: str) -> None:
        """Called while the run is still open, just before it ends ``status`` (FINISHED or FAILED): the job's
        last progress and its log are written there, so a run that reads ended already holds both."""


class JobKind(Protocol):
    """A kind of background job: training runs, scoring a file, or one a plugin or a test adds."""

    names: tuple[str, ...]  # the ``kind`` its specs carry (the runs' ``run_type``)
    labels: Mapping[str, str]  # how pages name each of those ("fine-tune", "score a file")

    def accepts(self, request: object) -> bool:
        """Whether ``request`` (what a caller submits) is this kind's."""

    def plan(self, request: object, settings: Settings, confined: bool) -> list[Planned]:
        """Check the request (inside the allowed folders when ``confined``) and say which runs to create."""

    def spec_from_json(self, text: str) -> JobSpec:
        """The spec kept in a job's ``job_spec`` tag."""

    def retry_tags(self, spec: JobSpec, tags: Mapping[str, str]) -> dict[str, str]:
        """The tags that identify a retry of an ended run (its spec, its experiment, and these)."""

    def run(self, spec: JobSpec, context: JobContext) -> Outcome:
        """Do the job on its run (``context.run_id``), in this process."""

    def gpu_bytes(self, spec: JobSpec, memory_peak: Callable[[str], tuple[float, int] | None]) -> int | None:
        """The GPU memory the job needs; ``memory_peak(base_model_name)`` gives a past run's measured peak."""

    def expected_seconds(self, spec: JobSpec, past: Sequence[Past]) -> float | None:
        """How long the job should take from start to end, from finished jobs (None: no idea; optional)."""


def spec_kind(text: str) -> str | None:
    """The ``kind`` field of a job's JSON spec, or None when it has none or is not JSON."""
    try:
        kind = json.loads(text).get("kind")
    except (ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None
