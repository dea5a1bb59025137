"""The background queue: one interface over MLflow, with pluggable executors, that knows no kind of job.

MLflow is the single source of truth. Submitting a request (a grid, one run, a file to score) asks its kind
(``core.jobs.kinds``) to check it and say which runs to make, then creates every run at once with status
SCHEDULED, its full spec (params, a ``run_spec.json`` artifact and a ``job_spec`` tag the job's process reads)
and the kind's tags. An executor (the local worker, or a Ray cluster) moves runs through RUNNING to FINISHED /
FAILED / KILLED; it only keeps what MLflow cannot hold (process ids, log files). Anything that reads MLflow,
its own UI included, sees the queue.

    queue = JobQueue()                       # backend from JOB_BACKEND (local | ray)
    jobs = queue.submit(grid_spec)           # checked first; nothing is created if it is bad
    queue.jobs(grid_id=jobs[0].grid_id)      # status, progress, reason
    queue.cancel(run_id); queue.retry(run_id); queue.log_tail(run_id)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from core import paths
from core import runs as runs_mod
from core.errors import NotFoundError, TuneboardError
from core.jobkind import Planned
from core.jobs import kinds
from core.jobs.eta import GridEta, grid_etas
from core.jobs.local import LocalBackend
from core.jobs.model import (
    BACKEND,
    CANCEL,
    PRIORITY,
    PROGRESS,
    QUEUE,
    QUEUED_AT,
    RETRIED_BY,
    RETRY_OF,
    SPEC,
    SUBMITTED_BY,
    SUBMITTING,
    Job,
    JobBackend,
    JobStatus,
    end_half_submitted,
    end_run,
)
from core.jobs.ray import RayBackend
from core.progress import Progress
from core.settings import Settings, configure_mlflow, current_user, ensure_experiment

log = logging.getLogger(__name__)


def backend_from_env(settings: Settings | None = None) -> JobBackend:
    """``JOB_BACKEND=local`` (default) or ``ray`` (with ``RAY_ADDRESS``)."""
    name = os.environ.get("JOB_BACKEND", "local").strip().lower()
    if name == "local":
        return LocalBackend(settings)
    if name == "ray":
        return RayBackend(settings)
    raise TuneboardError(f"JOB_BACKEND={name!r} is not a job backend: use 'local' or 'ray'.")


class JobQueue:
    """Submit, list, cancel and retry background jobs of any kind."""

    def __init__(self, settings: Settings | None = None, backend: JobBackend | None = None, *,
                 checkpoint: Callable[[str], None] | None = None):
        """``checkpoint``: called with "submitting" while a submit writes a run (a test seam: ``core.faults``)."""
        self.settings = configure_mlflow(settings)
        self.checkpoint = checkpoint or (lambda stage: None)
        self.backend = backend or backend_from_env(self.settings)
        self.client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, request: object, *, priority: int = 0, start: bool = True,
               tags: Mapping[str, str] | None = None) -> list[Job]:
        """Check ``request`` through its kind, then create every run it makes SCHEDULED and hand them over.

        A grid (``GridSpec``) makes a run per baseline and fine-tune; one ``RunSpec`` (an evaluation of a
        registered version, ``core.examples.evaluation``) or a ``ScoreSpec`` (a file to score) makes one.
        Submitted from a confined context (a page), or to a store whose jobs are confined anyway (a team's
        server, roots turned on), the request is checked against the allowed roots, and its runs carry
        ``confined`` so the job's process checks again (``core.paths``). ``tags`` are added to every run.
        ``start=False`` leaves the jobs queued without starting a local worker (one started later runs them).
        """
        kind = kinds.for_request(request)
        confined = paths.is_confined() or paths.confines_jobs(self.settings.tracking_uri)
        with paths.confined(confined):
            planned = kind.plan(request, self.settings, confined)  # raises before anything exists
        experiments: dict[str, str] = {}
        for plan in planned:
            if plan.experiment_name not in experiments:
                experiments[plan.experiment_name] = ensure_experiment(plan.experiment_name, self.settings)
                for key, value in plan.experiment_tags.items():
                    self.client.set_experiment_tag(experiments[plan.experiment_name], key, value)
        jobs = [self._create(plan, experiments[plan.experiment_name], priority, tags) for plan in planned]
        self.backend.launch(jobs, start=start)
        return jobs

    def _create(self, plan: Planned, experiment_id: str, priority: int, extra_tags: Mapping | None = None) -> Job:
        """One run, written so that a submit killed half way never leaves a job that looks alive.

        The ``job_queue`` tag, the one executors and listings select jobs by, comes last, in one
        ``log_batch`` with the params. Until then the run carries ``job_submitting`` = the queue id, by
        which :func:`end_half_submitted` finds and fails it if the submit never completes.
        """
        from mlflow.entities import Param, RunTag

        spec, queue = plan.spec, self.backend.queue_id()
        tags = {**plan.tags, BACKEND: self.backend.name, SUBMITTING: queue,
                PRIORITY: str(priority), QUEUED_AT: f"{time.time():.6f}", SPEC: spec.to_json(),
                SUBMITTED_BY: current_user(), PROGRESS: Progress().to_json(), **(extra_tags or {})}
        run = self.client.create_run(experiment_id, run_name=spec.run_name, tags=tags)
        run_id = run.info.run_id
        self.checkpoint("submitting")
        self.client.update_run(run_id, status=JobStatus.SCHEDULED.value)
        self.client.log_text(run_id, spec.to_json(), "run_spec.json")
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in spec.params().items()],
                              tags=[RunTag("mlflow.runName", spec.run_name), RunTag(QUEUE, queue),
                                    RunTag(SUBMITTING, "done")])
        return self.get(run_id)

    # -- reading ---------------------------------------------------------------------------------
    def jobs(self, *, grid_id: str | None = None, statuses: set[JobStatus] | None = None,
             experiment_ids: list[str] | None = None, loader=None, loader_key: tuple = (),
             max_age: float = 0.0) -> list[Job]:
        """Jobs of this backend's queue, in queue order; optionally one grid or some statuses.

        With ``loader`` (a ``core.runs_cache.RunsLoader``, shared with the pages that show runs), the runs
        come from its frames, so a poll reads again only what changed since its last refresh (under
        ``max_age`` seconds old: not at all); ``loader_key`` is its key (what one identity may see)."""
        queue = self.backend.queue_id()
        ids = experiment_ids or runs_mod.experiment_ids(self.client)
        try:
            end_half_submitted(self.client, queue, ids)
        except Exception as exc:  # noqa: BLE001 - e.g. a reader may not end others' runs: the worker does it too
            log.info("could not end half-submitted runs: %s", exc)
        if loader is None:
            filters = [f"tags.{QUEUE} = '{queue}'"] + ([f"tags.grid_id = '{grid_id}'"] if grid_id else [])
            found = [Job.from_run(r) for r in runs_mod.search_all(self.client, ids, " and ".join(filters))]
        else:
            found = [j for j in self._from_loader(loader, ids, loader_key, max_age, queue)
                     if not grid_id or j.grid_id == grid_id]
        ended = set(self.backend.reconcile([j for j in found if not j.status.is_terminal()]))
        if ended and loader is not None:
            loader.invalidate(ended)
        found = [self.get(j.run_id) if j.run_id in ended else j for j in found]
        if statuses:
            found = [j for j in found if j.status in statuses]
        return sorted(found, key=Job.spec_order)

    def _from_loader(self, loader, ids: list[str], key: tuple, max_age: float, queue: str) -> list[Job]:
        """The queue's jobs, from the loader's frame."""
        frame = loader.load(self.client, ids, key=key, max_age=max_age).frame
        column = f"tags.{QUEUE}"
        rows = frame[frame[column] == queue].to_dict("records") if column in frame.columns else []
        return [Job.from_row(row) for row in rows]

    def grid_etas(self, jobs: list[Job]) -> dict[str, GridEta]:
        """When each grid among ``jobs`` (this queue's, just listed) should end (``core.jobs.eta``)."""
        return grid_etas(jobs, self.backend.capacity())

    def get(self, run_id: str) -> Job:
        try:
            return Job.from_run(self.client.get_run(run_id))
        except Exception as exc:
            raise NotFoundError(f"there is no job with run id {run_id!r}.") from exc

    def log_tail(self, job: str | Job, lines: int = 50) -> str:
        """The last lines of a job's log; ``job``: its run id, or the Job just listed (no read of the run)."""
        return self.backend.log_tail(job if isinstance(job, Job) else self.get(job), lines)

    # -- changing --------------------------------------------------------------------------------
    def cancel(self, run_id: str, *, user: str | None = None) -> Job:
        """Queued: it never starts. Running: it stops within seconds. Ended: nothing to do."""
        job = self.get(run_id)
        if job.status.is_terminal():
            return job
        who = user or current_user()
        self.client.set_tag(run_id, CANCEL, who)
        if job.status == JobStatus.SCHEDULED:
            end_run(self.client, run_id, JobStatus.KILLED, f"cancelled by {who} before it started")
        else:
            self.backend.cancel(job)
        return self.get(run_id)

    def retry(self, run_id: str, *, priority: int | None = None, start: bool = True) -> Job:
        """Queue a new run with the same spec, linked to the old one (tags job_retry_of / job_retried_by).

        Retried from a confined context (a page), or on a store that confines its jobs, a job submitted unconfined
        (from the CLI or the API) is checked against the allowed folders first, as a submit from there is, and
        its retry is confined; a file outside them is refused in words and nothing is queued."""
        old = self.get(run_id)
        if not old.status.is_terminal():
            raise TuneboardError(f"job {old.run_name} is {old.status.value.lower()}; only an ended job can be retried.")
        tags = self.client.get_run(run_id).data.tags
        kind = kinds.for_spec(tags[SPEC])
        spec = kind.spec_from_json(tags[SPEC])
        if not getattr(spec, "confined", True) and (paths.is_confined()
                                                     or paths.confines_jobs(self.settings.tracking_uri)):
            with paths.confined():  # a kind plans its own spec as a request (every kind here does)
                spec = kind.plan(spec, self.settings, True)[0].spec
        plan = Planned(spec, "", kind.retry_tags(spec, tags))  # in the old run's experiment
        job = self._create(plan, old.experiment_id, old.priority if priority is None else priority,
                           {RETRY_OF: run_id})
        self.client.set_tag(run_id, RETRIED_BY, job.run_id)
        self.backend.launch([job], start=start)
        return job
