"""The local worker: ``python -m core.worker`` runs this machine's queued jobs (``LocalBackend`` queues them).

One worker owns the queue at a time (an exclusive lock on ``<home>/worker.lock``),
so no job ever runs twice. Each job runs in its own training process
(``python -m core.train_job``, ``core.jobs.runner``) in a slot: one per GPU by default (``CUDA_VISIBLE_DEVICES``
set per job). Several jobs share a GPU while their memory estimates fit in it
(:mod:`core.packing`), at most ``TUNEBOARD_JOBS_PER_GPU`` (default 4); a packed job that runs out of GPU
memory goes back to the queue to run alone. ``TUNEBOARD_CPU_JOBS`` (default 1) on a machine without GPUs. Each free
GPU slot keeps a warm spare process with everything imported, and CPU slots fork each job from one warm
server (``core.jobs.forks``), so consecutive jobs start without an idle gap (``TUNEBOARD_WARM_SPARES=0`` or
``--no-spares``: neither, to save the memory and CPU they take).

Faults: a job whose process dies ends FAILED with the reason; a cancelled job
is stopped within seconds and ends KILLED; training processes die with the
worker (Linux parent-death signal), and a worker that starts finds runs left
RUNNING by a dead one and ends them FAILED (or queues them again when their
process had not started yet). Queued jobs stay queued. Runs whose submit was
cut off are ended FAILED after a grace period. While MLflow cannot be reached
the worker keeps its jobs running, retries, and records their ends once it can.
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
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import faults, packing, paths, tracking
from core import runs as runs_mod
from core.jobs import kinds
from core.jobs.forks import ForkedJob, ForkServer
from core.jobs.model import (
    CANCEL,
    JOB_ENV,
    PID,
    QUEUE,
    REQUEUED_CODE,
    SLOT,
    SPEC,
    STARTED_AT,
    Job,
    JobStatus,
    end_half_submitted,
    end_run,
)
from core.packing import SHARED_TAG
from core.settings import REPO_ROOT, Settings, configure_mlflow

POLL_SECONDS = 0.1
IDLE_SCAN_SECONDS = 2.0  # how often an idle worker looks for jobs nobody told it about
KILL_GRACE_SECONDS = 5.0
HOUSEKEEPING_SECONDS = 5.0  # how often the worker looks for orphaned and half-submitted runs
MAX_BACKOFF_SECONDS = 10.0  # the longest pause between two tries while MLflow cannot be reached


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


LOST_THE_LOCK = 3  # a worker's exit code when another worker owns the queue


def ensure_worker(settings: Settings | None = None, wait_seconds: float = 180.0) -> int:
    """Start the worker in the background if none is running; return its pid.

    Waits while the new worker is alive and starting (a new store's tables and the imports take seconds, and
    more than 20 on a loaded machine); says at once when it exited instead, with the end of its log.
    """
    settings = settings or Settings.from_env()
    info = worker_info(settings)
    if info:
        return info["pid"]
    (settings.home / "jobs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TUNEBOARD_HOME": str(settings.home), "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "MLFLOW_REGISTRY_URI": settings.registry_uri}
    log_path = settings.home / "worker.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "core.worker"], cwd=REPO_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        info = worker_info(settings)
        if info:
            return info["pid"]
        if worker.poll() not in (None, LOST_THE_LOCK):  # it failed to start (when it lost the lock to another
            with open(log_path, "rb") as f:               # worker, that one's info is on its way)
                f.seek(start)
                said = f.read().decode("utf-8", "replace").strip().splitlines()[-1:]  # its error's last line
            raise RuntimeError(f"the worker exited (code {worker.returncode}) while starting: "
                               f"{said[0] if said else 'it wrote nothing'}; see {log_path}")
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not start within {wait_seconds:.0f} s; see {log_path}")


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

    def launch(self, jobs: list[Job], start: bool = True) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        wake_path(self.settings).write_text(str(time.time()))
        if start:
            ensure_worker(self.settings)

    def cancel(self, job: Job) -> None:
        """The worker sees the job's cancel tag within a second and stops its process."""
        if not worker_info(self.settings):
            self.reconcile([job])

    def log_tail(self, job: Job, lines: int) -> str:
        return tail(log_path(self.settings, job.run_id), lines)

    def capacity(self) -> int | None:
        """The running worker's slots (None while no worker runs)."""
        info = worker_info(self.settings)
        return len(info["slots"]) if info else None

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
    elif not run.data.tags.get(PID):
        # claimed, but the worker died before it started the job's process: it never ran, so queue it again
        client.update_run(run_id, status=JobStatus.SCHEDULED.value)
    else:
        end_run(client, run_id, JobStatus.FAILED, "the worker stopped while this job was running (the worker or "
                "the machine was stopped or crashed); nothing was lost from the queue. Retry it to run it again.")


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a file, read from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max(4096, 200 * lines)))  # whole lines, long ones (tracebacks) included
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
    need: int | None = None  # the running job's GPU memory estimate (bytes)
    alone: bool = False  # the running job must have its GPU to itself
    shared: int = 1  # the most jobs that shared this slot's GPU while its job ran


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


def gpu_memory() -> dict[str, int]:
    """Each GPU's total memory in bytes (nvidia-smi); empty when it cannot be read."""
    if not shutil.which("nvidia-smi"):
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return {i.strip(): int(float(m)) * 2**20 for i, m in (line.split(",") for line in out.splitlines() if line)}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def make_slots() -> list[Slot]:
    gpus = detect_gpus()
    if gpus:
        per_gpu = packing.cap()  # how many of them take jobs at once: the memory estimates decide
        return [Slot(f"gpu{g}" + (f".{k}" if per_gpu > 1 else ""), g) for g in gpus for k in range(per_gpu)]
    cpu_jobs = max(1, int(os.environ.get("TUNEBOARD_CPU_JOBS", "1")))
    return [Slot(f"cpu{k}", None) for k in range(cpu_jobs)]


class Worker:
    """Owns the queue of this machine: claims SCHEDULED runs in order and runs them in slots."""

    def __init__(self, settings: Settings | None = None, slots: list[Slot] | None = None,
                 spares: bool = True, checkpoint: Callable[[str], None] | None = None):
        """``checkpoint``: called with "claimed" once a job is claimed, before its process starts (a test seam:
        ``core.faults``)."""
        self.settings = configure_mlflow(settings)
        self.checkpoint = checkpoint or (lambda stage: None)
        self.client = runs_mod.client(self.settings.tracking_uri, self.settings.registry_uri)
        self.slots = slots or make_slots()
        self.spares = spares
        self.queue = queue_id(self.settings)
        self.stopping = False
        self.forks: ForkServer | None = None  # the CPU slots' fork server (with spares)
        self._lock_file = None
        self.to_finalize: dict[str, int] = {}  # ended jobs whose end MLflow has not recorded yet: run id -> code
        self.gpu_bytes = gpu_memory() if any(s.gpu for s in self.slots) else {}
        self._measured: dict[str, tuple[float, int]] = {}  # base model -> (peak bytes, batch x max_length)
        # CPU jobs share the cores; an OMP_NUM_THREADS the worker was given (a machine shared with other work, the
        # tests) is kept as the most each job takes
        threads = max(1, (os.cpu_count() or 1) // len(self.slots))
        if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
        for slot in self.slots:
            slot.env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.gpu or "", "TUNEBOARD_WORKER_PID": str(os.getpid()),
                        "TUNEBOARD_HOME": str(self.settings.home), "MLFLOW_TRACKING_URI": self.settings.tracking_uri,
                        "MLFLOW_REGISTRY_URI": self.settings.registry_uri, **JOB_ENV,
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
        """Runs of this queue RUNNING but not in a slot of this worker (which alone runs them) were left by a
        worker that died: end them FAILED with the reason (queue them again if they had not started); end
        runs whose submit was cut off."""
        mine = {s.job_id for s in self.slots} | set(self.to_finalize)
        for job in self._jobs("RUNNING"):
            if job.run_id not in mine:
                _end_orphan(self.client, job.run_id)
                say(f"ended or queued again {job.run_id}, left running by a worker that stopped")
        for run_id in end_half_submitted(self.client, self.queue):
            say(f"ended {run_id}: its submission was cut off")

    # -- the loop --------------------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        say(f"worker {os.getpid()} owns queue {self.queue} with slots {[s.name for s in self.slots]}")
        if paths.confines_jobs(self.settings.tracking_uri):  # team mode or roots turned on (core.paths)
            say(f"every job reads only inside the allowed folders: data {', '.join(map(str, paths.data_roots()))}; "
                f"base models {', '.join(map(str, paths.model_roots()))}")
        if self.spares:
            self.keep_spares()  # warming from the start: the first CPU jobs wait for the fork server
        last_cancel_check = last_scan = last_housekeeping = 0.0
        last_wake = None
        failures = 0
        while not self.stopping:
            try:
                self.check_children()
                now = time.monotonic()
                if now - last_housekeeping > HOUSEKEEPING_SECONDS:
                    self.reap_orphans()
                    last_housekeeping = now
                if now - last_cancel_check > 0.5:
                    self.check_cancels()
                    last_cancel_check = now
                wake = self._wake_stamp(), self.forks is not None and self.forks.ready.is_set()
                if any(s.job_id is None for s in self.slots) and (wake != last_wake
                                                                  or now - last_scan > IDLE_SCAN_SECONDS):
                    started, queued = self.launch_ready()
                    last_wake, last_scan = wake, now
                    if until_idle and not started and not queued and not self.to_finalize \
                            and all(s.job_id is None for s in self.slots):
                        break
                if self.spares:
                    self.keep_spares()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - MLflow unreachable: keep the jobs running and try again
                failures += 1
                pause = min(MAX_BACKOFF_SECONDS, POLL_SECONDS * 2 ** failures)
                say(f"a call to MLflow at {self.settings.tracking_uri} failed ({type(exc).__name__}: "
                    f"{str(exc)[:300]}); the jobs keep running, trying again in {pause:.1f} s")
                if failures == 1 and "API request to" not in str(exc):  # not MLflow being away: show where
                    traceback.print_exc()
                time.sleep(pause)
                continue
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
        if self.spares:  # a fork server that died while CPU jobs ran starts again before the next one: the jobs
            self.keep_spares()  # wait for its warm-up once instead of each starting cold (about 9 s more a job)
        warming = self.forks is not None and self.forks.warming()  # CPU jobs wait for it: it forks them warm
        free = [s for s in self.slots if s.job_id is None and not (warming and not s.gpu)]
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
            slot = self._slot_for(run, free)
            if slot is None:
                break  # queue order: the next job waits for room rather than being overtaken
            free.remove(slot)
            self.start(slot, job)
            started += 1
        return started, len(queued) - started

    def _slot_for(self, run, free: list[Slot]) -> Slot | None:
        """A free slot whose GPU has room for this job (packing.fits); CPU slots always do."""
        cpu = [s for s in free if s.gpu is None]
        if cpu:
            return cpu[0]
        text = run.data.tags.get(SPEC, "{}")
        kind = kinds.for_spec(text)
        need = kind.gpu_bytes(kind.spec_from_json(text), self._measured_peak)
        alone = packing.RUN_ALONE_TAG in run.data.tags
        for slot in free:
            busy = [s for s in self.slots if s.gpu == slot.gpu and s.job_id]
            if packing.fits(need, [s.need for s in busy], self.gpu_bytes.get(slot.gpu), alone=alone,
                            running_alone=any(s.alone for s in busy),
                            limit=sum(s.gpu == slot.gpu for s in self.slots)):
                slot.need, slot.alone = need, alone
                return slot
        return None

    def _measured_peak(self, base_model_name: str | None) -> tuple[float, int] | None:
        """The GPU memory peak of the latest finished run of this base model, with its batch x max_length;
        asked again until one is found (runs may have ended since)."""
        if base_model_name and self._measured.get(base_model_name) is None:
            self._measured[base_model_name] = runs_mod.memory_peak(self.client, base_model_name)
        return self._measured.get(base_model_name) if base_model_name else None

    def start(self, slot: Slot, job: Job) -> None:
        """Claim the job (RUNNING), then start its process and tag it (pid, slot, start).

        A run RUNNING without a pid tag was claimed by a worker that died before the job's process
        started: :func:`_end_orphan` queues it again. A spare is tagged before it is handed the job.
        """
        log = log_path(self.settings, job.run_id)
        self.client.update_run(job.run_id, status="RUNNING")
        self.checkpoint("claimed")
        spare, slot.spare = slot.spare, None
        if spare is not None and spare.poll() is None:
            try:
                self._tag_started(slot, job, spare)
            except Exception:
                slot.spare = spare  # not handed the job: it stays the slot's spare
                raise
            slot.job_id, slot.proc, slot.killing_since = job.run_id, spare, None
            spare.stdin.write(f"{job.run_id}\t{log}\n")
            spare.stdin.flush()
            proc = spare
        else:
            proc = self._forked(slot, job.run_id, log)
            if proc is None:
                with open(log, "ab") as out:
                    proc = subprocess.Popen([sys.executable, "-m", "core.train_job", job.run_id, "--log", str(log)],
                                            cwd=REPO_ROOT,
                                            env=slot.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
            slot.job_id, slot.proc, slot.killing_since = job.run_id, proc, None
            self._tag_started(slot, job, proc)
        say(f"started {job.run_name} ({job.run_id}) in {slot.name}, pid {proc.pid}")

    def _forked(self, slot: Slot, run_id: str, log: Path) -> ForkedJob | None:
        """The job's process forked from the warm server (a CPU slot), or None: start one of its own."""
        if slot.gpu or self.forks is None or not self.forks.usable():
            return None
        try:
            return self.forks.start(run_id, log)
        except RuntimeError as exc:
            say(f"{exc}: {run_id} starts a process of its own")
            return None

    def _tag_started(self, slot: Slot, job: Job, proc: subprocess.Popen) -> None:
        import psutil
        from mlflow.entities import RunTag

        created = psutil.Process(proc.pid).create_time()
        sharing = [s for s in self.slots if slot.gpu and s.gpu == slot.gpu and (s.job_id or s is slot)]
        slot.shared = len(sharing) if slot.gpu else 1
        self.client.log_batch(job.run_id, tags=[
            RunTag(PID, f"{proc.pid}@{created:.3f}"), RunTag(STARTED_AT, f"{time.time():.6f}"),
            RunTag(SLOT, slot.name + (f" (GPU {slot.gpu})" if slot.gpu else " (CPU)")),
            RunTag(SHARED_TAG, str(slot.shared))])
        for other in sharing:  # the jobs already there now share their GPU with one more
            if other is not slot and other.shared < len(sharing) and other.job_id:
                other.shared = len(sharing)
                self.client.set_tag(other.job_id, SHARED_TAG, str(other.shared))

    def keep_spares(self) -> None:
        """GPU slots keep a warm spare each; CPU slots share a fork server, started only while no CPU job runs:
        warming up takes a core for seconds, and a CPU job's threads that lose a core to it wait on each other
        at every step (bench/bench_grid.py --breakdown: tiny-BERT training at 20-33 samples/s beside a warming
        spare, 226-475 alone, on 2 cores)."""
        cpu_slots = [s for s in self.slots if not s.gpu]
        if cpu_slots and (self.forks is None or not self.forks.alive()) \
                and all(s.job_id is None for s in cpu_slots):
            if self.forks is not None:
                self.forks.close()  # it died (e.g. an import error): start another
            self.forks = ForkServer(cpu_slots[0].env, self.settings.home / "jobs" / "fork-server.log",
                                    on_ready=lambda pid: say(f"fork server {pid} ready: CPU jobs start warm"))
        for slot in self.slots:
            if not slot.gpu:
                continue
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
        ended = False
        for slot in self.slots:
            if slot.job_id is None:
                continue
            code = slot.proc.poll()
            if code is None:
                if slot.killing_since and time.monotonic() - slot.killing_since > KILL_GRACE_SECONDS:
                    self._signal(slot, signal.SIGKILL)
                continue
            ended = True
            say(f"process of {slot.job_id} exited with code {code}")
            if code != REQUEUED_CODE or self.client.get_run(slot.job_id).info.status != "SCHEDULED":
                self.to_finalize[slot.job_id] = code
            else:
                say(f"{slot.job_id} ran out of GPU memory beside other jobs: queued again to run alone")
            slot.job_id, slot.proc, slot.killing_since = None, None, None
            slot.need, slot.alone, slot.shared = None, False, 1
        if ended and not self.stopping:
            self.launch_ready()  # the freed slots take their next jobs before the bookkeeping below
        self.finalize_ended()

    def finalize_ended(self) -> None:
        """Record the ends of the jobs whose processes exited; what MLflow refuses now stays for the next try."""
        for run_id, code in list(self.to_finalize.items()):
            self.finalize(run_id, code)
            del self.to_finalize[run_id]

    def finalize(self, run_id: str, code: int) -> None:
        """Attach the job's whole log, then give the run its true final state (a run that reads as ended holds
        its log; one its process ended itself got it from the process, and gets the last lines here)."""
        run = self.client.get_run(run_id)
        self._attach_log(run_id)
        cancelled_by = run.data.tags.get(CANCEL)
        if cancelled_by:
            end_run(self.client, run_id, JobStatus.KILLED, f"cancelled by {cancelled_by} while it was running")
        elif code != 0:
            last = tail(log_path(self.settings, run_id), 1).strip()
            if code < 0:
                why = f"the training process was killed by signal {-code}"
                if -code == signal.SIGKILL:
                    why += " (by someone, or by the system when memory ran out)"
            else:
                why = f"the training process exited with code {code}"
            end_run(self.client, run_id, JobStatus.FAILED, f"{why}. Last log line: {last[:500]}" if last else why)
        else:
            end_run(self.client, run_id, JobStatus.FAILED, "the training process ended without reporting a result")
        say(f"ended {run_id}: {self.client.get_run(run_id).info.status}")

    def _attach_log(self, run_id: str) -> None:
        """The whole log, its last lines included (the job's process attached it before its run ended)."""
        tracking.attach_log(self.client, run_id, log_path(self.settings, run_id))

    def shutdown(self) -> None:
        """Stop: running jobs end KILLED (retry them to run again); spares are let go."""
        try:
            self.finalize_ended()
        except Exception as exc:  # noqa: BLE001 - MLflow unreachable: the next worker ends these runs
            say(f"could not record the end of {sorted(self.to_finalize)}: {exc}")
        for slot in self.slots:  # the jobs first: a forked job dies with its server
            if slot.job_id:
                self._signal(slot, signal.SIGTERM)
                try:
                    slot.proc.wait(KILL_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self._signal(slot, signal.SIGKILL)
                    slot.proc.wait()
                try:
                    self.client.set_tag(slot.job_id, CANCEL, "the worker being stopped")
                    self.finalize(slot.job_id, slot.proc.returncode)
                except Exception as exc:  # noqa: BLE001 - MLflow unreachable: the next worker ends this run
                    say(f"could not record the end of {slot.job_id}: {exc}")
                slot.job_id = None
            if slot.spare is not None and slot.spare.poll() is None:
                slot.spare.stdin.close()
                self._kill_quietly(slot.spare)
        if self.forks is not None:
            self.forks.close()
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
    worker = Worker(spares=not args.no_spares and os.environ.get("TUNEBOARD_WARM_SPARES", "1") != "0",
                    checkpoint=faults.checkpoint())
    if not worker.acquire():
        info = worker_info(worker.settings)
        print(f"another worker (pid {info['pid'] if info else '?'}) already owns this queue; not starting",
              flush=True)
        return LOST_THE_LOCK
    worker.run(until_idle=args.until_idle)
    return 0

