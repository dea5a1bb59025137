"""Jobs on a Ray cluster, through the Ray Jobs API, behind the same queue interface.

Selected with ``JOB_BACKEND=ray`` and ``RAY_ADDRESS`` (the dashboard address,
e.g. ``http://127.0.0.1:8265``). Each queued run becomes one Ray job whose
entrypoint is the same training process as the local worker's
(``python -m core.train_job RUN_ID``), with ``entrypoint_num_gpus`` from
``TUNEBOARD_RAY_GPUS_PER_JOB`` (fractional values pack small runs onto one GPU).
Progress and results flow into the shared MLflow store exactly as locally,
so the tracking URI must be reachable from the cluster's nodes.

| Ray job status | run status |
| --- | --- |
| PENDING | SCHEDULED |
| RUNNING | RUNNING (set by the training process itself) |
| SUCCEEDED | FINISHED |
| FAILED | FAILED |
| STOPPED | KILLED |
"""

from __future__ import annotations

import os
import time

from core import paths
from core import runs as runs_mod
from core.errors import TuneboardError
from core.jobs.model import CANCEL, JOB_ENV, Job, JobStatus, end_run
from core.settings import REPO_ROOT, Settings

EXCLUDES = [".venv", ".mlflow", ".git", "tests", "bench", "__pycache__", "*.pyc", ".whl"]


def submission_id(run_id: str) -> str:
    return f"tuneboard-{run_id}"


class RayBackend:
    name = "ray"

    def __init__(self, settings: Settings | None = None, address: str | None = None):
        self.settings = settings or Settings.from_env()
        self.address = address or os.environ.get("RAY_ADDRESS", "")
        if not self.address:
            raise TuneboardError("JOB_BACKEND=ray needs RAY_ADDRESS, the Ray dashboard address "
                                 "(e.g. http://127.0.0.1:8265).")
        self.gpus_per_job = float(os.environ.get("TUNEBOARD_RAY_GPUS_PER_JOB", "0") or 0)
        self.python = os.environ.get("TUNEBOARD_RAY_PYTHON", "python")
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TuneboardError(f"could not reach the Ray cluster at {self.address}: {exc}. Check RAY_ADDRESS "
                                     "and that the cluster is running.") from None
        return self._client

    def queue_id(self) -> str:
        return f"ray:{self.address}"

    def launch(self, jobs: list[Job], start: bool = True) -> None:
        """Every job goes to the cluster (``start`` is the local worker's choice: Ray always runs them)."""
        env = {"MLFLOW_TRACKING_URI": self.settings.tracking_uri, "MLFLOW_REGISTRY_URI": self.settings.registry_uri,
               "TUNEBOARD_HOME": str(self.settings.home), "TUNEBOARD_DATA_DIR": str(self.settings.data_dir),
               **JOB_ENV}
        # The hub as the submitter set it (HF_HUB_OFFLINE=1: never tried); unset, the cluster's own setting stands.
        env.update({v: os.environ[v] for v in ("HF_HUB_OFFLINE", "HF_ENDPOINT") if os.environ.get(v, "").strip()})
        # A confined job (its spec says so) reads its files behind the same fence they were checked against
        # here: the roots this deployment set, else the same defaults (home and data folder above).
        env.update({v: os.environ[v] for v in (paths.DATA_ROOTS, paths.MODEL_ROOTS) if os.environ.get(v, "").strip()})
        failed = []
        for job in jobs:
            try:
                self._submit(job, env)
            except (RuntimeError, ConnectionError) as exc:
                failed.append(job)
                client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
                end_run(client, job.run_id, JobStatus.FAILED, f"could not hand the job to Ray at {self.address}: {exc}")
        if failed:
            raise TuneboardError(f"{len(failed)} of {len(jobs)} job(s) could not be handed to the Ray cluster at "
                                 f"{self.address}; they were marked FAILED (retry them when the cluster is up).")

    def _submit(self, job: Job, env: dict, patience: float = 60.0) -> None:
        """Submit one job; a cluster that has just started has no job agent for a few seconds, so wait for it."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self.client.submit_job(
                    entrypoint=f"{self.python} -m core.train_job {job.run_id}",
                    submission_id=submission_id(job.run_id),
                    runtime_env={"working_dir": str(REPO_ROOT), "excludes": EXCLUDES, "env_vars": env},
                    entrypoint_num_gpus=self.gpus_per_job or None, entrypoint_num_cpus=1,
                    metadata={"run_name": job.run_name, "grid_id": job.grid_id or ""})
                return
            except RuntimeError as exc:
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def status(self, job: Job) -> str | None:
        try:
            return str(self.client.get_job_status(submission_id(job.run_id)).value)
        except RuntimeError:  # unknown to this cluster
            return None

    def cancel(self, job: Job) -> None:
        self.client.stop_job(submission_id(job.run_id))
        client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
        who = client.get_run(job.run_id).data.tags.get(CANCEL, "someone")
        end_run(client, job.run_id, JobStatus.KILLED, f"cancelled by {who} while it was running")

    def capacity(self) -> int | None:
        """The cluster decides how many run at once: not known here."""
        return None

    def log_tail(self, job: Job, lines: int) -> str:
        try:
            text = self.client.get_job_logs(submission_id(job.run_id))
        except RuntimeError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def reconcile(self, jobs: list[Job]) -> list[str]:
        """Runs whose Ray job ended without ending the run (killed, crashed) get their true state."""
        client, ended = None, []
        for job in jobs:
            status = self.status(job)
            if status in ("FAILED", "STOPPED") or (status is None and job.status == JobStatus.RUNNING):
                client = client or runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
                final = JobStatus.KILLED if status == "STOPPED" else JobStatus.FAILED
                tail = self.log_tail(job, 1).strip()
                reason = f"the Ray job ended {status or 'and is unknown to the cluster'}"
                end_run(client, job.run_id, final, f"{reason}. Last log line: {tail[:500]}" if tail else reason)
                ended.append(job.run_id)
        return ended
