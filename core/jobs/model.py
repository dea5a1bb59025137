"""The job model, the bottom of the queue: job states, a job as the pages see it, the tags, the backend protocol.

Like Ray's job ``common.py``: states with :meth:`JobStatus.is_terminal`, a :class:`Job` read from its MLflow
run, and :func:`end_run`, which never moves a run out of a terminal state. It knows no kind of job
(``core.jobkind``); the queue (``core.jobs.queue``) and the executors (``core.jobs.local``, ``core.jobs.ray``)
build on it.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core import runs as runs_mod
from core.jobkind import SPEC_TAG
from core.naming import ERROR_TAG, RUN_TYPE_TAG
from core.progress import Progress

# Tag names (no dots, so they can be used in MLflow filter strings as they are)
BACKEND = "job_backend"
QUEUE = "job_queue"
PRIORITY = "job_priority"
QUEUED_AT = "job_queued_at"
SPEC = SPEC_TAG  # the job's JSON spec (core.jobkind)
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
# A job's process runs with these: its log is read by people, so no progress bars or library chatter in it; and no
# MLflow telemetry, whose thread, when it cannot fetch its config (offline), removes _MLFLOW_TELEMETRY_SESSION_ID
# from os.environ while the job's first call to a tracking server reads it (requests' proxies): the job failed
# with "API request to ... failed with exception '_MLFLOW_TELEMETRY_SESSION_ID'" (once in each of two 30-minute
# team chaos soaks, 1 job of 152 and 1 of about 110)
JOB_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
# What a finished job measured that says how long the next ones take (core.jobs.eta)
FIGURES = ("train_runtime", "eval_runtime", "train_samples_per_second", "eval_samples_per_second", "rows_per_second")
REQUEUED_CODE = 75  # EX_TEMPFAIL: a job's process put its job back in the queue; the worker does not end it


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
    spec: str | None = None  # the job's JSON spec (its ``job_spec`` tag), which its kind reads
    figures: Mapping[str, float] = field(default_factory=dict)  # what it measured (FIGURES), once it ran

    @classmethod
    def from_run(cls, run) -> Job:
        info = run.info
        return cls._of(info.run_id, info.run_name, info.experiment_id, info.status, info.end_time, run.data.tags,
                       run.data.metrics)

    @classmethod
    def from_row(cls, row: dict) -> Job:
        """The same job from its row of ``core.runs.runs_frame`` (as ``core.runs_cache`` keeps it)."""
        import pandas as pd

        end = row.get("end_time")
        tags = {k[5:]: v for k, v in row.items() if k.startswith("tags.") and isinstance(v, str)}  # lacking: NaN
        metrics = {name: row[f"metrics.{name}"] for name in FIGURES if pd.notna(row.get(f"metrics.{name}"))}
        return cls._of(row["run_id"], row.get("run_name"), row["experiment_id"], row["status"],
                       end.value // 1_000_000 if isinstance(end, pd.Timestamp) else None, tags, metrics)  # NaT: none

    @classmethod
    def _of(cls, run_id: str, run_name: str | None, experiment_id: str, status: str, end_ms: int | None,
            tags: dict, metrics: Mapping[str, float]) -> Job:
        return cls(
            run_id=run_id, run_name=run_name or "", experiment_id=experiment_id, status=JobStatus(status),
            backend=tags.get(BACKEND, "?"), grid_id=tags.get("grid_id"),
            priority=int(tags.get(PRIORITY, "0") or 0), queued_at=float(tags.get(QUEUED_AT, "0") or 0),
            start_time=float(tags[STARTED_AT]) if tags.get(STARTED_AT) else None,
            end_time=end_ms / 1000 if end_ms else None,
            progress=Progress.from_json(tags.get(PROGRESS)), reason=tags.get(REASON),
            retry_of=tags.get(RETRY_OF), slot=tags.get(SLOT), kind=tags.get(RUN_TYPE_TAG, ""), spec=tags.get(SPEC),
            figures={k: float(metrics[k]) for k in FIGURES if k in metrics})

    def spec_order(self) -> tuple:
        """Queue order: higher priority first, then first come first served."""
        return (-self.priority, self.queued_at, self.run_id)


class JobBackend(Protocol):
    """What an executor adds to the MLflow queue."""

    name: str

    def queue_id(self) -> str:
        """Which executor instance takes the jobs (tag ``job_queue``)."""

    def launch(self, jobs: list[Job], start: bool = True) -> None:
        """Make sure the new SCHEDULED jobs will run: hand them to Ray, or tell the local worker and start it
        (``start=False``: leave them queued for a worker started later)."""

    def cancel(self, job: Job) -> None:
        """Stop a RUNNING job; it must end KILLED within seconds."""

    def log_tail(self, job: Job, lines: int) -> str:
        """The last lines the job's training process wrote."""

    def reconcile(self, jobs: list[Job]) -> list[str]:
        """End runs whose executor says they are gone, so nothing looks alive that is not; return their ids."""

    def capacity(self) -> int | None:
        """How many jobs run at once (None: not known here)."""


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
