"""The background queue: jobs of any kind, run by this machine's worker or a Ray cluster, recorded in MLflow.

- ``model``: job states, a job as pages see it, the tags, the backend protocol (the bottom, like Ray's
  ``common.py``);
- ``kinds``: the one table of job kinds (training, scoring, and any listed in ``TUNEBOARD_JOB_KINDS``);
- ``queue``: :class:`JobQueue`, submit / list / cancel / retry, knowing no kind;
- ``local``: the local worker and its backend; ``ray``: the Ray Jobs backend;
- ``runner``: one job's process, whatever its kind.

``python -m core.worker`` and ``python -m core.train_job`` start the worker and a job's process.
"""

from __future__ import annotations

from core.jobs.kinds import job_spec
from core.jobs.model import (
    BACKEND,
    CANCEL,
    PID,
    PRIORITY,
    PROGRESS,
    QUEUE,
    QUEUED_AT,
    REASON,
    RETRIED_BY,
    RETRY_OF,
    SLOT,
    SPEC,
    STARTED_AT,
    SUBMITTED_BY,
    SUBMITTING,
    Job,
    JobBackend,
    JobStatus,
    end_half_submitted,
    end_run,
)
from core.jobs.queue import JobQueue, backend_from_env

__all__ = ["BACKEND", "CANCEL", "PID", "PRIORITY", "PROGRESS", "QUEUE", "QUEUED_AT", "REASON", "RETRIED_BY",
           "RETRY_OF", "SLOT", "SPEC", "STARTED_AT", "SUBMITTED_BY", "SUBMITTING", "Job", "JobBackend", "JobQueue",
           "JobStatus", "backend_from_env", "end_half_submitted", "end_run", "job_spec"]
