"""The training process of one job: ``python -m core.train_job RUN_ID``.

It reads the job's spec from its MLflow run (tag ``job_spec``), runs it with
:func:`core.training.execute` on that run, and reports progress (stage, step
of total, epoch, loss, samples/s, ETA) into the run's ``job_progress`` tag at
most every ``PROGRESS_SECONDS``, from a background thread, so training never waits on it.
The exit code is 0 when the run finished, 1 when it failed.

``--wait`` starts a warm spare for the local worker: it imports everything,
then waits on stdin for ``RUN_ID<TAB>LOG_PATH``, so the next job starts with no
import delay (the worker's idle gap between jobs).
"""

from __future__ import annotations

import os
import sys
import time

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
    """Trainer callback and stage reporter writing the ``job_progress`` tag of one run."""

    def __init__(self, run_id: str):
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.client = MlflowClient()
        self.stage = "starting"
        self.loss: float | None = None
        self._last = 0.0
        self._t0: float | None = None
        self._step0 = 0
        self._numbers: dict = {}  # the last step, total, epoch, speed and ETA, kept across stage changes

    def callback(self):
        from transformers import TrainerCallback

        reporter = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                reporter._t0, reporter._step0 = time.monotonic(), state.global_step
                reporter.push(state, args, force=True)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    reporter.loss = float(logs["loss"])

            def on_step_end(self, args, state, control, **kwargs):
                reporter.push(state, args)
                _hold("training", reporter, state, args)  # test hook: mid-training, after the first step

            def on_train_end(self, args, state, control, **kwargs):
                reporter.push(state, args, force=True)

        return _Callback()

    def on_status(self, stage: str) -> None:
        self.stage = stage
        self.push(None, None, force=True)

    def push(self, state, args, force: bool = False) -> None:
        from core import tracking
        from core.jobs import PROGRESS, Progress

        now = time.monotonic()
        if not force and now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        if state is not None:
            self._numbers.update(step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0))
            if self._t0 is not None and state.global_step > self._step0:
                steps_per_s = (state.global_step - self._step0) / (now - self._t0)
                per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
                self._numbers["samples_per_second"] = round(steps_per_s * per_step, 2)
                self._numbers["eta_seconds"] = round(max(0, state.max_steps - state.global_step) / steps_per_s, 1)
        fields = {**self._numbers, "stage": self.stage, "loss": self.loss, "updated_at": time.time()}
        if self.stage in ("finished", "failed"):
            fields["eta_seconds"] = 0.0
        text = Progress(**fields).to_json()
        tracking.writer.submit(lambda: self.client.set_tag(self.run_id, PROGRESS, text), key="progress")


def _hold(stage: str, reporter: ProgressReporter, state=None, args=None) -> None:
    """Test hook (see :func:`core.jobs.hold_for_test`): report the stage to MLflow, then hold. No-op unless set."""
    from core import tracking
    from core.jobs import hold_for_test

    hold_for_test(stage, before=lambda: (reporter.push(state, args, force=True), tracking.flush()))


def run_job(run_id: str) -> int:
    """Execute the job whose MLflow run is ``run_id``; returns the process exit code."""
    from mlflow.tracking import MlflowClient

    from core import tracking
    from core.grid import RunSpec
    from core.jobs import SPEC
    from core.settings import configure_mlflow
    from core.training import execute

    settings = configure_mlflow()
    spec = RunSpec.from_json(MlflowClient().get_run(run_id).data.tags[SPEC])
    reporter = ProgressReporter(run_id)
    print(f"job {run_id}: {spec.run_name} ({spec.kind}) on {os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'}",
          flush=True)

    def on_status(stage: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True)
        reporter.on_status(stage)
        if stage != "training":  # that hold point is after the first step (the callback)
            _hold(stage, reporter)

    result = execute(spec, run_id=run_id, settings=settings, callbacks=[reporter.callback()], on_status=on_status,
                     requeue=lambda exc: _packed_out_of_memory(run_id, exc))
    if result.status == "REQUEUED":
        _queue_alone(run_id, result.error or "")
        return REQUEUED_CODE
    reporter.stage = "finished" if result.status == "FINISHED" else "failed"
    reporter.push(None, None, force=True)
    tracking.flush()
    print(f"job {run_id}: {result.status}" + (f" — {result.error}" if result.error else ""), flush=True)
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

    from core.jobs import PID, PROGRESS, SLOT, STARTED_AT, JobStatus, Progress
    from core.packing import RUN_ALONE_TAG

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
    return run_job(run_id)


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
    if len(argv) != 1:
        print("usage: python -m core.train_job RUN_ID | --wait", file=sys.stderr)
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
