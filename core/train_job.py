"""The training process of one job: ``python -m core.train_job RUN_ID``.

It reads the job's spec from its MLflow run (tag ``job_spec``), runs it with
:func:`core.training.execute` on that run, and reports progress (stage, step
of total, epoch, loss, samples/s, ETA) into the run's ``job_progress`` tag at
most every ``PROGRESS_SECONDS``, from a background thread, so training never waits on it.
The exit code is 0 when the run finished, 1 when it failed. With ``--log LOG_PATH`` (the file the worker
sends its output to) the log is attached to the run (``job.log``) before the run ends.

``--wait`` starts a warm spare for the local worker: it imports everything,
then waits on stdin for ``RUN_ID<TAB>LOG_PATH``, so the next job starts with no
import delay (the worker's idle gap between jobs).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

PROGRESS_SECONDS = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """Linux: end this process if the worker that started it dies (kill -9 included)."""
    if parent_pid <= 1 or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class ProgressReporter:
    """Writes one run's :class:`core.progress.TrainingProgress` into its ``job_progress`` tag, at most every
    ``PROGRESS_SECONDS``, and a line per tenth of the steps into the job's log."""

    def __init__(self, run_id: str):
        from mlflow.tracking import MlflowClient

        from core.progress import ProgressBar, TrainingProgress

        self.run_id = run_id
        self.client = MlflowClient()
        self.progress = TrainingProgress()
        self.log_lines = ProgressBar(tty=False)  # the log is a file: lines, never a redrawn bar
        self._last = 0.0

    def callback(self):
        def changed(event: str) -> None:
            self.log_lines.update(self.progress.snapshot())
            self.push(force=event != "step")
            if event == "step":
                _hold("training", self)  # test hook: mid-training, after the first step

        return self.progress.callback(changed)

    def on_status(self, stage: str) -> None:
        self.progress.stage = stage
        self.push(force=True)

    def push(self, force: bool = False) -> None:
        from core import tracking
        from core.jobs import PROGRESS

        now = time.monotonic()
        if not force and now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        text = self.progress.snapshot().to_json()
        tracking.writer.submit(lambda: self.client.set_tag(self.run_id, PROGRESS, text), key="progress")


def _hold(stage: str, reporter: ProgressReporter) -> None:
    """The test seam of this entry point (``core.faults``): report the stage to MLflow, then hold, when armed."""
    from core import faults, tracking

    checkpoint = faults.checkpoint()
    if checkpoint is not None:
        checkpoint(stage, before=lambda: (reporter.push(force=True), tracking.flush()))


def _log_attacher(run_id: str, log_path: str | None):
    """What a job does just before its run ends: attach its log so far (``job.log``), so a run that reads
    FINISHED or FAILED already holds it; the worker attaches the whole log again once the process exits."""
    if not log_path:
        return None

    def attach() -> None:
        from mlflow.tracking import MlflowClient

        from core import tracking

        sys.stdout.flush()
        sys.stderr.flush()
        tracking.attach_log(MlflowClient(), run_id, log_path)

    return attach


def run_job(run_id: str, log_path: str | None = None) -> int:
    """Execute the job whose MLflow run is ``run_id``; returns the process exit code. ``log_path``: the file
    this process writes its output to (the worker's job log), attached to the run before it ends."""
    from mlflow.tracking import MlflowClient

    from core import paths, tracking
    from core.grid import RunSpec
    from core.jobs import SPEC
    from core.scoring.job import ScoreSpec, is_score_spec
    from core.settings import configure_mlflow
    from core.training import execute

    settings = configure_mlflow()
    text = MlflowClient().get_run(run_id).data.tags[SPEC]
    if is_score_spec(text):
        return run_score_job(run_id, ScoreSpec.from_json(text), settings, log_path)
    spec = RunSpec.from_json(text)
    # The trust boundary (core.paths): a job from a page reads only inside the roots, checked again here since
    # files can change after submit; on a team's server every job does, whoever wrote its spec.
    spec = replace(spec, confined=spec.confined or paths.confines_jobs(settings.tracking_uri))
    reporter = ProgressReporter(run_id)
    print(f"job {run_id}: {spec.run_name} ({spec.kind}) on {os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'}"
          + (", reading only inside the allowed folders" if spec.confined else ""), flush=True)

    def on_status(stage: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True)
        reporter.on_status(stage)
        if stage != "training":  # that hold point is after the first step (the callback)
            _hold(stage, reporter)

    result = execute(spec, run_id=run_id, settings=settings, callbacks=[reporter.callback()], on_status=on_status,
                     requeue=lambda exc: _packed_out_of_memory(run_id, exc),
                     before_end=_log_attacher(run_id, log_path))
    if result.status == "REQUEUED":
        _queue_alone(run_id, result.error or "")
        return REQUEUED_CODE
    reporter.progress.stage = "finished" if result.status == "FINISHED" else "failed"
    reporter.push(force=True)
    tracking.flush()
    print(f"job {run_id}: {result.status}" + (f" — {result.error}" if result.error else ""), flush=True)
    return 0 if result.status == "FINISHED" else 1


def run_score_job(run_id: str, spec, settings, log_path: str | None = None) -> int:
    """A scoring job (``core.scoring.job``): progress is rows done of the file's rows, stage "scoring"."""
    from dataclasses import replace as with_changes

    from core import faults, paths, tracking
    from core.jobs import PROGRESS
    from core.progress import Progress
    from core.scoring.job import score

    spec = with_changes(spec, confined=spec.confined or paths.confines_jobs(settings.tracking_uri))
    reporter = ProgressReporter(run_id)
    print(f"job {run_id}: scoring {spec.input_path} with {spec.model} ({spec.mode}) on "
          f"{os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'}"
          + (", reading only inside the allowed folders" if spec.confined else ""), flush=True)
    started = time.monotonic()
    state = {"stage": "queued", "done": 0, "total": 0}

    def snapshot() -> Progress:
        seconds = time.monotonic() - started
        speed = state["done"] / seconds if state["done"] and seconds > 0 else None
        eta = (state["total"] - state["done"]) / speed if speed else None
        return Progress(stage=state["stage"], step=state["done"], total_steps=state["total"], unit="row",
                        samples_per_second=speed, eta_seconds=eta, updated_at=time.time())

    def push(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - reporter._last < PROGRESS_SECONDS:
            return
        reporter._last = now
        text = snapshot().to_json()
        tracking.writer.submit(lambda: reporter.client.set_tag(run_id, PROGRESS, text), key="progress")

    def on_status(stage: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True)
        state["stage"] = stage
        push(force=True)

    def on_progress(done: int, total: int) -> None:
        first = state["done"] == 0
        state["done"], state["total"] = done, total
        push()
        checkpoint = faults.checkpoint() if first else None
        if checkpoint is not None:  # the test seam (core.faults): after the first batch
            checkpoint("scoring", before=lambda: (push(force=True), tracking.flush()))

    result = score(spec, run_id, on_progress=on_progress, on_status=on_status,
                   before_end=_log_attacher(run_id, log_path))
    state["stage"] = "finished" if result.status == "FINISHED" else "failed"
    push(force=True)
    tracking.flush()
    print(f"job {run_id}: {result.status}" + (f", {result.rows} rows" if result.rows else "")
          + (f" — {result.error}" if result.error else ""), flush=True)
    return 0 if result.status == "FINISHED" else 1


REQUEUED_CODE = 75  # EX_TEMPFAIL: the job went back to the queue (see _queue_alone); the worker does not end it


def _packed_out_of_memory(run_id: str, exc: BaseException) -> bool:
    """Whether the job ran out of GPU memory while other jobs shared its GPU (so it may fit alone)."""
    import torch
    from mlflow.tracking import MlflowClient

    from core.packing import SHARED_TAG

    seen = set()
    while exc is not None and id(exc) not in seen and not isinstance(exc, torch.OutOfMemoryError):
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    if not isinstance(exc, torch.OutOfMemoryError):
        return False
    try:
        return int(MlflowClient().get_run(run_id).data.tags.get(SHARED_TAG, "1")) > 1
    except Exception:  # noqa: BLE001 - cannot tell: end it FAILED as any out-of-memory run
        return False


def _queue_alone(run_id: str, error: str) -> None:
    """Put a packed job that ran out of GPU memory back in the queue, to start only on an empty GPU."""
    from mlflow.tracking import MlflowClient

    from core.jobs import PID, PROGRESS, SLOT, STARTED_AT, JobStatus
    from core.packing import RUN_ALONE_TAG
    from core.progress import Progress

    client = MlflowClient()
    note = f"ran out of GPU memory while sharing the GPU ({error.splitlines()[0][:300]}); queued again to run alone"
    print(f"job {run_id}: {note}", flush=True)
    client.set_tag(run_id, RUN_ALONE_TAG, note)
    client.set_tag(run_id, PROGRESS, Progress().to_json())
    present = client.get_run(run_id).data.tags
    for tag in (PID, SLOT, STARTED_AT):  # it has not started yet, as far as the queue is concerned
        if tag in present:
            client.delete_tag(run_id, tag)
    client.update_run(run_id, status=JobStatus.SCHEDULED.value)


def _warm_spare() -> int:
    """Import what training needs, then wait for a job from the worker on stdin."""
    import mlflow  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import core.training  # noqa: F401 - the point is to import it now

    print("ready", flush=True)
    line = sys.stdin.readline().strip()
    if not line:
        return 0  # the worker let the spare go
    run_id, log_path = line.split("\t")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    return run_job(run_id, log_path)


def _yield_cpu() -> None:
    """Background training gives way to interactive work (the dashboard, the CLI) on a shared machine's CPUs.

    ``TUNEBOARD_TRAIN_NICE`` (default 10; 0 turns it off). A GPU job's speed is the GPU's: the CPU priority only
    matters when the cores are contended. bench/bench_load.py: ten dashboard sessions beside two CPU trainers.
    """
    raw = os.environ.get("TUNEBOARD_TRAIN_NICE", "10")
    try:
        os.nice(max(0, min(19, int(raw))))
    except (ValueError, OSError):
        print(f"TUNEBOARD_TRAIN_NICE={raw!r} is not a niceness from 0 to 19; training at normal priority",
              file=sys.stderr)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parent = int(os.environ.get("TUNEBOARD_WORKER_PID", "0"))
    _die_with_parent(parent)
    _yield_cpu()
    if argv and argv[0] == "--wait":
        return _warm_spare()
    if len(argv) == 3 and argv[1] == "--log":
        return run_job(argv[0], argv[2])
    if len(argv) != 1:
        print("usage: python -m core.train_job RUN_ID [--log LOG_PATH] | --wait", file=sys.stderr)
        return 2
    return run_job(argv[0])


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - an error outside the run's own handling: the worker ends it FAILED
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # The run is ended and its logging flushed: skip the interpreter's slow teardown (torch, thread pools)
    # so the worker can start the next job on this slot at once. Never let interpreter exit run MLflow's
    # atexit hook either: it would end a run still active after an unexpected error FINISHED.
    os._exit(code)
