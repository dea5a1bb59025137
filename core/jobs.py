"""Background training jobs: one queue interface over MLflow, with pluggable executors.

MLflow is the single source of truth. Submitting a grid creates every run at
once with status SCHEDULED, its full spec (params, a ``run_spec.json``
artifact and a ``job_spec`` tag the executor reads), the seed's run name and
tags, and a ``grid_id``. An executor (the local worker, or a Ray cluster)
moves runs through RUNNING to FINISHED / FAILED / KILLED; it only keeps what
MLflow cannot hold (process ids, log files). Anything that reads MLflow, its
own UI included, sees the queue.

    queue = JobQueue()                       # backend from JOB_BACKEND (local | ray)
    jobs = queue.submit(grid_spec)           # validated first; nothing is created if it is bad
    queue.jobs(grid_id=jobs[0].grid_id)      # status, progress, reason
    queue.cancel(run_id); queue.retry(run_id); queue.log_tail(run_id)
"""

from __future__ import annotations

import enum
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from core import paths
from core import runs as runs_mod
from core.errors import NotFoundError, TuneboardError
from core.grid import GridSpec, RunSpec
from core.naming import ERROR_TAG, RUN_TYPE_TAG
from core.progress import Progress
from core.scoring.job import ScoreSpec
from core.settings import Settings, configure_mlflow, current_user, ensure_experiment

log = logging.getLogger(__name__)

# Tag names (no dots, so they can be used in MLflow filter strings as they are)
BACKEND = "job_backend"
QUEUE = "job_queue"
PRIORITY = "job_priority"
QUEUED_AT = "job_queued_at"
SPEC = "job_spec"
PROGRESS = "job_progress"
CANCEL = "job_cancel"
REASON = ERROR_TAG  # the same tag a failed run carries in-process
RETRY_OF = "job_retry_of"
RETRIED_BY = "job_retried_by"
PID = "job_pid"
SLOT = "job_slot"
STARTED_AT = "job_started_at"
SUBMITTED_BY = "job_submitted_by"
SUBMITTING = "job_submitting"  # the queue id while a submit is writing the run, "done" once it is a job

# A run whose submit was cut off (the app killed half way) is ended FAILED once it is this old (seconds;
# env TUNEBOARD_SUBMIT_GRACE_SECONDS); a submit writes each run in well under a second
SUBMIT_GRACE_SECONDS = float(os.environ.get("TUNEBOARD_SUBMIT_GRACE_SECONDS", "30"))


class JobStatus(str, enum.Enum):
    """MLflow run statuses, as job states."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    def is_terminal(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.KILLED)


@dataclass(frozen=True)
class Job:
    """One queued run as the pages and the CLI see it."""

    run_id: str
    run_name: str
    experiment_id: str
    status: JobStatus
    backend: str
    grid_id: str | None
    priority: int
    queued_at: float
    start_time: float | None
    end_time: float | None
    progress: Progress | None
    reason: str | None
    retry_of: str | None
    slot: str | None
    kind: str

    @classmethod
    def from_run(cls, run) -> Job:
        info = run.info
        return cls._of(info.run_id, info.run_name, info.experiment_id, info.status, info.end_time, run.data.tags)

    @classmethod
    def from_row(cls, row: dict) -> Job:
        """The same job from its row of ``core.runs.runs_frame`` (as ``core.runs_cache`` keeps it)."""
        import pandas as pd

        end = row.get("end_time")
        tags = {k[5:]: v for k, v in row.items() if k.startswith("tags.") and isinstance(v, str)}  # lacking: NaN
        return cls._of(row["run_id"], row.get("run_name"), row["experiment_id"], row["status"],
                       end.value // 1_000_000 if isinstance(end, pd.Timestamp) else None, tags)  # NaT: none

    @classmethod
    def _of(cls, run_id: str, run_name: str | None, experiment_id: str, status: str, end_ms: int | None,
            tags: dict) -> Job:
        return cls(
            run_id=run_id, run_name=run_name or "", experiment_id=experiment_id, status=JobStatus(status),
            backend=tags.get(BACKEND, "?"), grid_id=tags.get("grid_id"),
            priority=int(tags.get(PRIORITY, "0") or 0), queued_at=float(tags.get(QUEUED_AT, "0") or 0),
            start_time=float(tags[STARTED_AT]) if tags.get(STARTED_AT) else None,
            end_time=end_ms / 1000 if end_ms else None,
            progress=Progress.from_json(tags.get(PROGRESS)), reason=tags.get(REASON),
            retry_of=tags.get(RETRY_OF), slot=tags.get(SLOT), kind=tags.get(RUN_TYPE_TAG, "fine_tune"))

    def spec_order(self) -> tuple:
        """Queue order: higher priority first, then first come first served."""
        return (-self.priority, self.queued_at, self.run_id)


class JobBackend(Protocol):
    """What an executor adds to the MLflow queue."""

    name: str

    def queue_id(self) -> str:
        """Which executor instance takes the jobs (tag ``job_queue``)."""

    def launch(self, jobs: list[Job]) -> None:
        """Make sure the new SCHEDULED jobs will run (start the worker, or hand them to Ray)."""

    def cancel(self, job: Job) -> None:
        """Stop a RUNNING job; it must end KILLED within seconds."""

    def log_tail(self, job: Job, lines: int) -> str:
        """The last lines the job's training process wrote."""

    def reconcile(self, jobs: list[Job]) -> list[str]:
        """End runs whose executor says they are gone, so nothing looks alive that is not; return their ids."""


def backend_from_env(settings: Settings | None = None) -> JobBackend:
    """``JOB_BACKEND=local`` (default) or ``ray`` (with ``RAY_ADDRESS``)."""
    name = os.environ.get("JOB_BACKEND", "local").strip().lower()
    if name == "local":
        from core.worker import LocalBackend

        return LocalBackend(settings)
    if name == "ray":
        from core.ray_backend import RayBackend

        return RayBackend(settings)
    raise TuneboardError(f"JOB_BACKEND={name!r} is not a job backend: use 'local' or 'ray'.")


class JobQueue:
    """Submit, list, cancel and retry background training jobs."""

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
    def submit(self, grid: GridSpec, *, priority: int = 0, start: bool = True) -> list[Job]:
        """Check the grid, then create every run SCHEDULED at once and hand them to the backend.

        Submitted from a confined context (a page), or to a store whose jobs are confined anyway (a team's
        server, roots turned on), the grid is checked against the allowed roots, and its runs carry
        ``confined`` so the training process checks again (``core.paths``).
        ``start=False`` leaves the jobs queued without starting a local worker (one started later runs them).
        """
        from core.experiment_manager import ExperimentManager

        confined = paths.is_confined() or paths.confines_jobs(self.settings.tracking_uri)
        with paths.confined(confined):
            specs = ExperimentManager.from_spec(grid, self.settings).validate()  # raises before anything exists
        grid_id = uuid.uuid4().hex[:12]
        experiment_id = ensure_experiment(grid.experiment_name, self.settings)
        for key in ("base_name", "data_src", "user_id"):  # so the grid can be rebuilt from the experiment
            self.client.set_experiment_tag(experiment_id, f"grid_{key}", getattr(grid, key))
        jobs = [self._create(replace(spec, grid_id=grid_id, confined=confined), experiment_id, priority)
                for spec in specs]
        if start or self.backend.name != "local":
            self.backend.launch(jobs)
        return jobs

    def submit_run(self, spec: RunSpec, *, tags: dict[str, str] | None = None, priority: int = 0,
                   start: bool = True) -> Job:
        """Queue one run outside a grid (an evaluation of a registered version: ``core.examples.evaluation``).

        Its validation file and model are checked first, as a grid's are, inside the allowed roots when the
        caller is confined (a page) or the store confines jobs; nothing is created if they are bad.
        """
        from core.data import align_labels, load_examples
        from core.models.loading import load_config

        confined = paths.is_confined() or paths.confines_jobs(self.settings.tracking_uri)
        with paths.confined(confined):
            validation = load_examples(spec.validation_path)
            config = load_config(spec.base_model)
            align_labels(validation, validation, getattr(config, "label2id", None), getattr(config, "num_labels", 2))
        experiment_id = ensure_experiment(spec.experiment_name, self.settings)
        job = self._create(replace(spec, confined=confined), experiment_id, priority, tags)
        if start or self.backend.name != "local":
            self.backend.launch([job])
        return job

    def _create(self, spec: RunSpec, experiment_id: str, priority: int, extra_tags: dict | None = None) -> Job:
        """One run, written so that a submit killed half way never leaves a job that looks alive.

        The ``job_queue`` tag, the one executors and listings select jobs by, comes last, in one
        ``log_batch`` with the params. Until then the run carries ``job_submitting`` = the queue id, by
        which :func:`end_half_submitted` finds and fails it if the submit never completes.
        """
        from mlflow.entities import Param, RunTag

        from core.training import spec_tags

        queue = self.backend.queue_id()
        identity = spec_tags(spec) if isinstance(spec, RunSpec) else spec.tags  # a ScoreSpec: submit_score's
        tags = {**identity, BACKEND: self.backend.name, SUBMITTING: queue,
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

    def submit_score(self, spec: ScoreSpec, *, priority: int = 0, start: bool = True) -> Job:
        """Queue a scoring job (``core.scoring.job``): a job kind of its own, in ``Scoring - <model>``.

        The model and the file are checked first (inside the allowed roots when the caller is confined or the
        store confines jobs), and for topic tagging that the model is NLI: nothing is created if any is bad. An
        alias is pinned to the version it points at now, so the job scores with what the user chose.
        """
        from core.models import sources as models
        from core.scoring import files
        from core.scoring import job as score_job

        confined = paths.is_confined() or paths.confines_jobs(self.settings.tracking_uri)
        source = models.resolve(spec.model, self.client)
        if spec.mode == "topics":  # a model that is not NLI is refused now, not minutes later in the job
            from core.scoring.topics import check_nli

            check_nli(models.labels(source))  # its config only (the download is the one the job then uses)
        with paths.confined(confined):
            files.choose_columns(files.read(spec.input_path), spec.text_column, spec.pair_column,
                                 transcripts=spec.mode == "topics")
        spec = replace(spec, confined=confined)
        experiment_id = ensure_experiment(score_job.experiment_name(source), self.settings)
        job = self._create(_Scoring(spec, score_job.run_tags(spec, source)), experiment_id, priority)
        if start or self.backend.name != "local":
            self.backend.launch([job])
        return job

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
        """Queue a new run with the same spec, linked to the old one (tags job_retry_of / job_retried_by)."""
        old = self.get(run_id)
        if not old.status.is_terminal():
            raise TuneboardError(f"job {old.run_name} is {old.status.value.lower()}; only an ended job can be retried.")
        tags = self.client.get_run(run_id).data.tags
        spec = job_spec(tags[SPEC])
        if not isinstance(spec, RunSpec):  # a scoring job: the same model version and file, tagged as before
            spec = _Scoring(spec, {**{k: v for k, v in tags.items() if k in _SCORE_TAGS},
                                   "submitted_by": current_user()})
        from core.examples.evaluation import RUN_TAGS  # an evaluation of a registered version: found by these

        kept = {k: v for k, v in tags.items() if k in RUN_TAGS}
        job = self._create(spec, old.experiment_id, old.priority if priority is None else priority,
                           {**kept, RETRY_OF: run_id})
        self.client.set_tag(run_id, RETRIED_BY, job.run_id)
        if start or self.backend.name != "local":
            self.backend.launch([job])
        return job


def job_spec(text: str):
    """The spec in a job's ``job_spec`` tag: a training run's RunSpec, or a scoring job's ScoreSpec."""
    from core.scoring.job import ScoreSpec, is_score_spec

    return ScoreSpec.from_json(text) if is_score_spec(text) else RunSpec.from_json(text)


_SCORE_TAGS = ("run_type", "mlflow.runName", "model_ref", "model_uri", "model_name", "model_label", "model_version",
               "model_run_id", "score_mode", "input_file")


@dataclass(frozen=True)
class _Scoring:
    """A ScoreSpec as ``_create`` writes it: its spec, run name and params, with the tags naming its model."""

    spec: ScoreSpec
    tags: dict

    @property
    def run_name(self) -> str:
        return self.spec.run_name

    def params(self) -> dict:
        return self.spec.params()

    def to_json(self) -> str:
        return self.spec.to_json()


def end_run(client, run_id: str, status: JobStatus, reason: str | None = None) -> None:
    """End a run in a final state with its reason, unless it already ended."""
    run = client.get_run(run_id)
    if JobStatus(run.info.status).is_terminal():
        return
    if reason:
        client.set_tag(run_id, REASON, reason[:4000])
    client.set_terminated(run_id, status=status.value)


def end_half_submitted(client, queue: str, experiment_ids: list[str] | None = None,
                       grace: float = SUBMIT_GRACE_SECONDS) -> list[str]:
    """End FAILED the runs of ``queue`` whose submit was cut off more than ``grace`` seconds ago; return their ids.

    Such a run never became a job (no ``job_queue`` tag), so no executor would ever take or end it.
    """
    ids = experiment_ids or runs_mod.experiment_ids(client)
    ended = []
    for run in runs_mod.search_all(client, ids, f"tags.{SUBMITTING} = '{queue}' and attributes.status != 'FAILED'"):
        tags = run.data.tags
        if JobStatus(run.info.status).is_terminal() or QUEUE in tags:
            continue
        queued_at = float(tags.get(QUEUED_AT) or run.info.start_time / 1000)
        if time.time() - queued_at < grace:
            continue  # a submit may still be writing it
        end_run(client, run.info.run_id, JobStatus.FAILED,
                f"its submission was cut off (the app or command that submitted it stopped on "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(queued_at))} before it finished writing the "
                "run), so it was never queued and never ran. Submit the grid again to run it.")
        ended.append(run.info.run_id)
    return ended


def past_grid(client, experiment_id: str) -> dict:
    """The grid arguments of an experiment's queued runs, to start a new grid from (GridSpec.from_dict form)."""
    experiment = client.get_experiment(experiment_id)
    specs = [spec for r in runs_mod.search_all(client, [experiment_id], order_by=["attributes.start_time ASC"])
             if SPEC in r.data.tags and isinstance(spec := job_spec(r.data.tags[SPEC]), RunSpec)]
    if not specs:
        raise NotFoundError(f"experiment {experiment.name!r} was not launched from the queue, so it holds no grid "
                            "to start from.")
    tunes = [s for s in specs if s.kind == "fine_tune"]
    first = tunes[0] if tunes else specs[0]
    sets: dict[int, dict] = {}
    for spec in tunes:
        sets.setdefault(spec.param_set or 0, dict(spec.hyperparameters))
    train_file = (first.train_path.replace(first.dataset_version, "{data_version}")
                  if first.train_path and first.dataset_version else "{data_version}")
    tags = experiment.tags
    return {
        "base_name": tags.get("grid_base_name", "Experiment"), "data_src": tags.get("grid_data_src", "Data"),
        "user_id": tags.get("grid_user_id", current_user()),
        "base_model_versions": list(dict.fromkeys(s.base_model for s in specs)),
        "dataset_versions": list(dict.fromkeys(s.dataset_version for s in tunes if s.dataset_version)),
        "hyperparameters": [sets[k] for k in sorted(sets)], "train_file": train_file,
        "validation_file": first.validation_path,
        "output_dir": str(os.path.dirname(os.path.dirname(tunes[0].output_dir)) if tunes else first.output_dir),
        "evaluate_pretrained_model": any(s.kind == "baseline" for s in specs),
    }
