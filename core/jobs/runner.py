"""One job's process: ``python -m core.train_job RUN_ID [--log LOG_PATH]``, any kind of job.

It reads the job's spec from its MLflow run (tag ``job_spec``), asks the kind table (``core.jobs.kinds``) whose
it is, and lets that kind run it with a :class:`Context`: the job's stages and progress go into the run's
``job_progress`` tag (at most every ``PROGRESS_SECONDS``, from a background thread, so the job never waits on
it) and into its log; its log is attached to the run before the run ends (``--log``, the file the worker sends
this process's output to). The exit code is 0 when the run finished, 1 when it failed, and
``REQUEUED_CODE`` when a job that ran out of GPU memory beside others went back to the queue to run alone.

``--wait`` starts a warm spare for the local worker: it imports everything, then waits on stdin for
``RUN_ID<TAB>LOG_PATH``, so the next job starts with no import delay (the worker's idle gap between jobs).
``--fork-server`` (the worker's CPU slots) imports everything once, then forks a process for each job it is given:
no job pays the imports, and nothing warms up beside a running job (:func:`_fork_server`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

from core import faults, tracking
from core.faults import Checkpoint
from core.jobkind import Outcome
from core.jobs import kinds
from core.jobs.model import JOB_ENV, PID, PROGRESS, REQUEUED_CODE, SLOT, SPEC, STARTED_AT, JobStatus
from core.packing import RUN_ALONE_TAG, SHARED_TAG
from core.progress import Progress, ProgressBar
from core.settings import Settings, configure_mlflow

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


class Context:
    """What a job's kind is given to run it (``core.jobkind.JobContext``): where its stages and progress go."""

    def __init__(self, run_id: str, settings: Settings, log_path: str | None = None,
                 checkpoint: Checkpoint | None = None):
        from mlflow.tracking import MlflowClient

        self.run_id, self.settings = run_id, settings
        self.client = MlflowClient()
        self.progress = Progress()
        self.log_lines = ProgressBar(tty=False)  # the log is a file: a line per tenth, never a redrawn bar
        self._log_path, self._hold, self._last = log_path, checkpoint, 0.0

    def stage(self, name: str, *, hold: bool = True) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        self.progress = replace(self.progress, stage=name, updated_at=time.time())
        self._push(force=True)
        if hold:
            self.checkpoint(name)

    def report(self, progress: Progress, *, force: bool = False) -> None:
        self.progress = progress
        self.log_lines.update(progress)
        self._push(force)

    def checkpoint(self, name: str) -> None:
        if self._hold is not None:  # the stage reaches MLflow first, so the test sees where the job is held
            self._hold(name, before=lambda: (self._push(force=True), tracking.flush()))

    def requeue(self, exc: BaseException) -> bool:
        return _packed_out_of_memory(self.run_id, exc)

    def before_end(self, status: str) -> None:
        """The last progress (finished or failed) and the log so far (``job.log``): a run that reads FINISHED or
        FAILED already holds both; the worker attaches the whole log again once this process has exited."""
        self.finish(Outcome(status))
        if self._log_path:
            sys.stdout.flush()
            sys.stderr.flush()
            tracking.attach_log(self.client, self.run_id, self._log_path)

    def finish(self, outcome: Outcome) -> None:
        """The last progress: finished or failed, nothing left to wait for (once: ``before_end`` may have said it)."""
        stage = "finished" if outcome.status == "FINISHED" else "failed"
        if self.progress.stage == stage:
            return
        self.progress = replace(self.progress, stage=stage, eta_seconds=0.0, updated_at=time.time())
        self._push(force=True)
        tracking.flush()

    def _push(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        text = self.progress.to_json()
        tracking.writer.submit(lambda: self.client.set_tag(self.run_id, PROGRESS, text), key="progress")


def run_job(run_id: str, log_path: str | None = None, checkpoint: Checkpoint | None = None,
            handed_at: float | None = None) -> int:
    """Run the job whose MLflow run is ``run_id`` through its kind; returns the process's exit code.

    ``handed_at``: when the worker handed the job over (a forked job: its start tag may not be written yet)."""
    settings = configure_mlflow()
    context = Context(run_id, settings, log_path, checkpoint)
    tags = context.client.get_run(run_id).data.tags
    text = tags[SPEC]
    handed_at = handed_at or (float(tags[STARTED_AT]) if tags.get(STARTED_AT) else None)
    if handed_at:  # from the worker handing the job over to this process starting on it
        context.client.log_metric(run_id, "stage_startup_seconds", round(time.time() - handed_at, 3))
    kind = kinds.for_spec(text)
    outcome = kind.run(kind.spec_from_json(text), context)
    if outcome.status == "REQUEUED":
        _queue_alone(run_id, outcome.error or "")
        return REQUEUED_CODE
    context.finish(outcome)
    print(f"job {run_id}: {outcome.status}" + (f", {outcome.detail}" if outcome.detail else "")
          + (f" — {outcome.error}" if outcome.error else ""), flush=True)
    return 0 if outcome.status == "FINISHED" else 1


def _packed_out_of_memory(run_id: str, exc: BaseException) -> bool:
    """Whether the job ran out of GPU memory while other jobs shared its GPU (so it may fit alone)."""
    import torch
    from mlflow.tracking import MlflowClient

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


def _warm_up(*, store: bool) -> None:
    """Pay every first-time cost a job would: the imports, each kind's own warm-up, and with ``store`` the
    tracking store's engine (without it, only its code: connections and threads do not survive a fork)."""
    if store:
        from mlflow.tracking import MlflowClient

        MlflowClient(configure_mlflow().tracking_uri).search_experiments(max_results=1)  # the store's engine, once
    else:
        import mlflow.store.tracking.sqlalchemy_store  # the embedded store's code
        import mlflow.tracking  # noqa: F401
    for kind in kinds.all_kinds():
        warm_up = getattr(kind, "warm_up", None)
        if warm_up is not None:
            warm_up()


def _warm_spare(checkpoint: Checkpoint | None) -> int:
    """Warm up, then wait for a job from the worker on stdin."""
    _warm_up(store=True)
    print("ready", flush=True)
    line = sys.stdin.readline().strip()
    if not line:
        return 0  # the worker let the spare go
    run_id, log_path = line.split("\t")
    _output_to(log_path)
    return run_job(run_id, log_path, checkpoint)


def _output_to(log_path: str) -> None:
    """This process's stdout and stderr append to the job's log (a spare or forked job handed its job)."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if log > 2:  # 1 and 2 hold it now (it is one of them only if that one was closed before)
        os.close(log)


def _fork_server(checkpoint: Checkpoint | None) -> int:
    """Warm up once, then fork a process for each job the worker gives it (its CPU slots).

    A forked job starts with everything imported and costs no warm-up beside a running job (a spare's imports
    took a core from the job training beside it). Lines on stdin: ``RUN_ID<TAB>LOG_PATH<TAB>HANDED_AT``; on
    stdout: ``ready`` once warm, ``started PID`` for each job at once, ``ended PID CODE`` when its process has
    ended (CODE as ``subprocess`` gives it: negative for a signal). Stdin closed: the server leaves, and its
    jobs' processes with it (their parent-death signal), as they do with a worker that dies. Nothing here
    may start a thread before forking: a fork copies only the thread that forks.
    """
    import select
    import threading

    _warm_up(store=False)
    if threading.active_count() > 1:  # a library started one while importing: forking would copy a broken copy
        print(f"the warm-up started threads ({', '.join(t.name for t in threading.enumerate())}): no forking",
              file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    running: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.1)
        for pid in list(running):  # report ended jobs, reaping them
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                print(f"ended {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
        if not readable:
            continue
        data = os.read(0, 4096)
        if not data:
            return 0  # the worker let the server go
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            run_id, log_path, handed_at = line.decode().split("\t")
            pid = os.fork()
            if pid == 0:
                _forked_job(run_id, log_path, float(handed_at), checkpoint)  # never returns
            os.setpgid(pid, pid)  # its own group (the child sets it too): a cancel signals the job alone
            running.add(pid)
            print(f"started {pid}", flush=True)


def _forked_job(run_id: str, log_path: str, handed_at: float, checkpoint: Checkpoint | None) -> None:
    """In a process the fork server forked: run the job in its own process group, its output to its log,
    then leave without returning to the server's loop."""
    code = 1
    try:
        try:
            os.setpgid(0, 0)
        except PermissionError:
            pass  # the server set it first
        _die_with_parent(os.getppid())
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        _output_to(log_path)
        code = run_job(run_id, log_path, checkpoint, handed_at=handed_at)
    except BaseException:  # noqa: BLE001 - an error outside the run's own handling: the worker ends it FAILED
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


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
    for name, value in JOB_ENV.items():  # started by hand or by another executor: the same quiet log
        os.environ.setdefault(name, value)
    parent = int(os.environ.get("TUNEBOARD_WORKER_PID", "0"))
    _die_with_parent(parent)
    _yield_cpu()
    checkpoint = faults.checkpoint()  # None unless a test armed it (core.faults)
    if argv and argv[0] == "--wait":
        return _warm_spare(checkpoint)
    if argv and argv[0] == "--fork-server":
        return _fork_server(checkpoint)
    if len(argv) == 3 and argv[1] == "--log":
        return run_job(argv[0], argv[2], checkpoint)
    if len(argv) != 1:
        print("usage: python -m core.train_job RUN_ID [--log LOG_PATH] | --wait | --fork-server", file=sys.stderr)
        return 2
    return run_job(argv[0], checkpoint=checkpoint)


def run_as_main() -> None:
    """``python -m core.train_job``: run :func:`main`, then leave at once."""
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
