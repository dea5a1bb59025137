"""The local worker: ``python -m core.worker`` runs this machine's queued jobs.

One worker owns the queue at a time (an exclusive lock on ``<home>/worker.lock``),
so no job ever runs twice. Each job runs in its own training process
(``core.train_job``) in a slot: one per GPU by default (``CUDA_VISIBLE_DEVICES``
set per job), ``TUNEBOARD_JOBS_PER_GPU`` to pack small fine-tunes onto a large
GPU, ``TUNEBOARD_CPU_JOBS`` (default 1) on a machine without GPUs. Each free
slot keeps a warm spare process with everything imported, so consecutive jobs
start without an idle gap.

Faults: a job whose process dies ends FAILED with the reason; a cancelled job
is stopped within seconds and ends KILLED; training processes die with the
worker (Linux parent-death signal), and a worker that starts finds runs left
RUNNING by a dead one and ends them FAILED. Queued jobs stay queued.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import runs as runs_mod
from core.jobs import CANCEL, PID, QUEUE, SLOT, STARTED_AT, Job, JobStatus, end_run
from core.settings import REPO_ROOT, Settings, configure_mlflow

POLL_SECONDS = 0.1
IDLE_SCAN_SECONDS = 2.0  # how often an idle worker looks for jobs nobody told it about
KILL_GRACE_SECONDS = 5.0


def say(message: str) -> None:
    """A line of the worker's log, with the time to the millisecond."""
    now = time.time()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {message}", flush=True)


def queue_id(settings: Settings) -> str:
    return f"local:{socket.gethostname()}:{settings.home}"


def wake_path(settings: Settings) -> Path:
    """Touched on every submit, so the worker looks at the queue at once instead of polling MLflow."""
    return settings.home / "queue.wake"


def log_path(settings: Settings, run_id: str) -> Path:
    return settings.home / "jobs" / f"{run_id}.log"


def worker_info(settings: Settings) -> dict | None:
    """The running worker's pid and start, or None when no worker is alive."""
    import psutil

    path = settings.home / "worker.json"
    try:
        info = json.loads(path.read_text())
        proc = psutil.Process(info["pid"])
        if abs(proc.create_time() - info["created"]) < 1 and proc.status() != psutil.STATUS_ZOMBIE:
            return info
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None


def ensure_worker(settings: Settings | None = None, wait_seconds: float = 20.0) -> int:
    """Start the worker in the background if none is running; return its pid."""
    settings = settings or Settings.from_env()
    info = worker_info(settings)
    if info:
        return info["pid"]
    (settings.home / "jobs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TUNEBOARD_HOME": str(settings.home), "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "MLFLOW_REGISTRY_URI": settings.registry_uri}
    with open(settings.home / "worker.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "core.worker"], cwd=REPO_ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        info = worker_info(settings)
        if info:
            return info["pid"]
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not start within {wait_seconds:.0f} s; see {settings.home / 'worker.log'}")


def stop_worker(settings: Settings | None = None, wait_seconds: float = 30.0) -> bool:
    """Ask the worker to stop (its running jobs end KILLED); True if one was running."""
    settings = settings or Settings.from_env()
    info = worker_info(settings)
    if not info:
        return False
    os.kill(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and worker_info(settings):
        time.sleep(0.1)
    return True


class LocalBackend:
    """Jobs run by this machine's worker."""

    name = "local"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()

    def queue_id(self) -> str:
        return queue_id(self.settings)

    def launch(self, jobs: list[Job]) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        wake_path(self.settings).write_text(str(time.time()))
        ensure_worker(self.settings)

    def cancel(self, job: Job) -> None:
        """The worker sees the job's cancel tag within a second and stops its process."""
        if not worker_info(self.settings):
            self.reconcile([job])

    def log_tail(self, job: Job, lines: int) -> str:
        return tail(log_path(self.settings, job.run_id), lines)

    def reconcile(self, jobs: list[Job]) -> list[str]:
        """With no worker alive, a RUNNING job is dead: end it FAILED (KILLED if it was cancelled)."""
        running = [j for j in jobs if j.status == JobStatus.RUNNING]
        if not running or worker_info(self.settings):
            return []
        client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
        for job in running:
            _end_orphan(client, job.run_id)
        return [j.run_id for j in running]


def _end_orphan(client, run_id: str) -> None:
    run = client.get_run(run_id)
    if run.data.tags.get(CANCEL):
        end_run(client, run_id, JobStatus.KILLED, f"cancelled by {run.data.tags[CANCEL]}")
    else:
        end_run(client, run_id, JobStatus.FAILED, "the worker stopped while this job was running (the worker or "
                "the machine was stopped or crashed); nothing was lost from the queue. Retry it to run it again.")


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a file, read from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200 * max(lines, 1)))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Slot:
    name: str
    gpu: str | None
    job_id: str | None = None
    proc: subprocess.Popen | None = None
    spare: subprocess.Popen | None = None
    killing_since: float | None = None
    env: dict = field(default_factory=dict)


def detect_gpus() -> list[str]:
    """``TUNEBOARD_GPUS`` ("0,1"; empty for none), else what nvidia-smi lists."""
    configured = os.environ.get("TUNEBOARD_GPUS")
    if configured is not None:
        return [g.strip() for g in configured.split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_slots() -> list[Slot]:
    gpus = detect_gpus()
    if gpus:
        per_gpu = max(1, int(os.environ.get("TUNEBOARD_JOBS_PER_GPU", "1")))
        return [Slot(f"gpu{g}" + (f".{k}" if per_gpu > 1 else ""), g) for g in gpus for k in range(per_gpu)]
    cpu_jobs = max(1, int(os.environ.get("TUNEBOARD_CPU_JOBS", "1")))
    return [Slot(f"cpu{k}", None) for k in range(cpu_jobs)]


class Worker:
    """Owns the queue of this machine: claims SCHEDULED runs in order and runs them in slots."""

    def __init__(self, settings: Settings | None = None, slots: list[Slot] | None = None,
                 spares: bool = True):
        self.settings = configure_mlflow(settings)
        self.client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
        self.slots = slots or make_slots()
        self.spares = spares
        self.queue = queue_id(self.settings)
        self.stopping = False
        self._lock_file = None
        threads = max(1, (os.cpu_count() or 1) // len(self.slots))
        for slot in self.slots:
            slot.env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.gpu or "", "TUNEBOARD_WORKER_PID": str(os.getpid()),
                        "TUNEBOARD_HOME": str(self.settings.home), "MLFLOW_TRACKING_URI": self.settings.tracking_uri,
                        "MLFLOW_REGISTRY_URI": self.settings.registry_uri, "TOKENIZERS_PARALLELISM": "false",
                        **({} if slot.gpu else {"OMP_NUM_THREADS": str(threads)})}

    # -- ownership -------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the queue's lock; False if another worker holds it."""
        import psutil

        self.settings.home.mkdir(parents=True, exist_ok=True)
        (self.settings.home / "jobs").mkdir(exist_ok=True)
        self._lock_file = open(self.settings.home / "worker.lock", "w")  # noqa: SIM115 - held for the worker's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            return False
        info = {"pid": os.getpid(), "created": psutil.Process().create_time(), "host": socket.gethostname(),
                "slots": [s.name for s in self.slots], "queue": self.queue}
        tmp = self.settings.home / "worker.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.settings.home / "worker.json")
        return True

    def reap_orphans(self) -> None:
        """Runs of this queue left RUNNING by a worker that died: end them FAILED with the reason."""
        for job in self._jobs("RUNNING"):
            _end_orphan(self.client, job.run_id)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        self.reap_orphans()
        say(f"worker {os.getpid()} owns queue {self.queue} with slots {[s.name for s in self.slots]}")
        last_cancel_check = last_scan = 0.0
        last_wake = None
        while not self.stopping:
            self.check_children()
            now = time.monotonic()
            if now - last_cancel_check > 0.5:
                self.check_cancels()
                last_cancel_check = now
            wake = self._wake_stamp()
            if any(s.job_id is None for s in self.slots) and (wake != last_wake or now - last_scan > IDLE_SCAN_SECONDS):
                last_wake, last_scan = wake, now
                started, queued = self.launch_ready()
                if until_idle and not started and not queued and all(s.job_id is None for s in self.slots):
                    break
            if self.spares:
                self.keep_spares()
            time.sleep(POLL_SECONDS)
        self.shutdown()

    def _wake_stamp(self) -> float | None:
        try:
            return wake_path(self.settings).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _jobs(self, status: str) -> list[Job]:
        found = runs_mod.search_all(self.client, runs_mod.experiment_ids(self.client),
                                    f"tags.{QUEUE} = '{self.queue}' and attributes.status = '{status}'")
        return sorted((Job.from_run(r) for r in found), key=Job.spec_order)

    def launch_ready(self) -> tuple[int, int]:
        """Start queued jobs in the free slots; return (started, still queued)."""
        free = [s for s in self.slots if s.job_id is None]
        if not free:
            return 0, -1
        started = 0
        queued = self._jobs("SCHEDULED")
        for job in queued:
            if not free:
                break
            run = self.client.get_run(job.run_id)  # claim only what is still queued and not cancelled
            if run.info.status != "SCHEDULED" or run.data.tags.get(CANCEL):
                continue
            self.start(free.pop(0), job)
            started += 1
        return started, len(queued) - started

    def start(self, slot: Slot, job: Job) -> None:
        import psutil

        log = log_path(self.settings, job.run_id)
        self.client.update_run(job.run_id, status="RUNNING")
        self.client.set_tag(job.run_id, STARTED_AT, f"{time.time():.6f}")
        spare, slot.spare = slot.spare, None
        if spare is not None and spare.poll() is None:
            spare.stdin.write(f"{job.run_id}\t{log}\n")
            spare.stdin.flush()
            proc = spare
        else:
            with open(log, "ab") as out:
                proc = subprocess.Popen([sys.executable, "-m", "core.train_job", job.run_id], cwd=REPO_ROOT,
                                        env=slot.env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        slot.job_id, slot.proc, slot.killing_since = job.run_id, proc, None
        created = psutil.Process(proc.pid).create_time()
        self.client.set_tag(job.run_id, PID, f"{proc.pid}@{created:.3f}")
        self.client.set_tag(job.run_id, SLOT, slot.name + (f" (GPU {slot.gpu})" if slot.gpu else " (CPU)"))
        say(f"started {job.run_name} ({job.run_id}) in {slot.name}, pid {proc.pid}")

    def keep_spares(self) -> None:
        for slot in self.slots:
            if slot.spare is not None and slot.spare.poll() is not None:
                slot.spare = None  # died while waiting (e.g. an import error): start another
            if slot.spare is None:
                with open(self.settings.home / "jobs" / f"spare-{slot.name}.log", "ab") as out:
                    slot.spare = subprocess.Popen(
                        [sys.executable, "-m", "core.train_job", "--wait"], cwd=REPO_ROOT, env=slot.env,
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True,
                        start_new_session=True)

    def check_cancels(self) -> None:
        for slot in self.slots:
            if slot.job_id and slot.killing_since is None and self.client.get_run(slot.job_id).data.tags.get(CANCEL):
                self._signal(slot, signal.SIGTERM)
                slot.killing_since = time.monotonic()

    def _signal(self, slot: Slot, sig: int) -> None:
        try:
            os.killpg(slot.proc.pid, sig)
        except ProcessLookupError:
            pass

    def check_children(self) -> None:
        ended = []
        for slot in self.slots:
            if slot.job_id is None:
                continue
            code = slot.proc.poll()
            if code is None:
                if slot.killing_since and time.monotonic() - slot.killing_since > KILL_GRACE_SECONDS:
                    self._signal(slot, signal.SIGKILL)
                continue
            ended.append((slot.job_id, code))
            say(f"process of {slot.job_id} exited with code {code}")
            slot.job_id, slot.proc, slot.killing_since = None, None, None
        if ended and not self.stopping:
            self.launch_ready()  # the freed slots take their next jobs before the bookkeeping below
        for run_id, code in ended:
            self.finalize(run_id, code)

    def finalize(self, run_id: str, code: int) -> None:
        """Give the run its true final state and attach the job's log."""
        run = self.client.get_run(run_id)
        cancelled_by = run.data.tags.get(CANCEL)
        if cancelled_by:
            end_run(self.client, run_id, JobStatus.KILLED, f"cancelled by {cancelled_by} while it was running")
        elif code != 0:
            last = tail(log_path(self.settings, run_id), 1).strip()
            if code < 0:
                why = f"the training process was killed by signal {-code}"
                if -code == signal.SIGKILL:
                    why += " (often the system running out of memory)"
            else:
                why = f"the training process exited with code {code}"
            end_run(self.client, run_id, JobStatus.FAILED, f"{why}. Last log line: {last[:500]}" if last else why)
        else:
            end_run(self.client, run_id, JobStatus.FAILED, "the training process ended without reporting a result")
        self._attach_log(run_id)
        say(f"ended {run_id}: {self.client.get_run(run_id).info.status}")

    def _attach_log(self, run_id: str) -> None:
        path = log_path(self.settings, run_id)
        if not path.is_file():
            return
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "job.log"
            shutil.copyfile(path, copy)
            try:
                self.client.log_artifact(run_id, str(copy))
            except OSError as exc:  # a full artifact disk must not stop the queue
                say(f"could not attach the log of {run_id}: {exc}")

    def shutdown(self) -> None:
        """Stop: running jobs end KILLED (retry them to run again); spares are let go."""
        for slot in self.slots:
            if slot.spare is not None and slot.spare.poll() is None:
                slot.spare.stdin.close()
                self._kill_quietly(slot.spare)
            if slot.job_id:
                self.client.set_tag(slot.job_id, CANCEL, "the worker being stopped")
                self._signal(slot, signal.SIGTERM)
                try:
                    slot.proc.wait(KILL_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self._signal(slot, signal.SIGKILL)
                    slot.proc.wait()
                self.finalize(slot.job_id, slot.proc.returncode)
                slot.job_id = None
        (self.settings.home / "worker.json").unlink(missing_ok=True)
        say("worker stopped")

    @staticmethod
    def _kill_quietly(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.worker", description="Run this machine's queued jobs.")
    parser.add_argument("--until-idle", action="store_true", help="stop when the queue is empty")
    parser.add_argument("--no-spares", action="store_true", help="start each job's process only when it is due")
    args = parser.parse_args(argv)
    worker = Worker(spares=not args.no_spares)
    if not worker.acquire():
        info = worker_info(worker.settings)
        print(f"another worker (pid {info['pid'] if info else '?'}) already owns this queue; not starting",
              flush=True)
        return 3
    worker.run(until_idle=args.until_idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
