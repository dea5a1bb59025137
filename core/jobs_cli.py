"""The command line's background-job commands: submit, jobs, cancel, retry, logs, worker."""

from __future__ import annotations

import time

from core import faults
from core.grid import GridSpec
from core.jobs.local import ensure_worker, stop_worker, worker_info
from core.jobs.model import Job, JobStatus
from core.jobs.queue import JobQueue
from core.progress import progress_text
from core.settings import Settings

WATCH_SECONDS = 2.0


def describe(job: Job) -> str:
    """One line a person can read: name, state, progress, and why it failed."""
    p = job.progress
    state = job.status.value.lower()
    if job.status == JobStatus.RUNNING and p:
        state = f"{p.stage} {progress_text(p)}".rstrip()
    line = f"{job.run_id[:8]}  {job.run_name:<50} {state}"
    if job.slot and job.status == JobStatus.RUNNING:
        line += f"  [{job.slot}]"
    if job.reason and job.status in (JobStatus.FAILED, JobStatus.KILLED):
        line += f"\n          reason: {job.reason}"
    return line


def show(queue: JobQueue, grid_id: str | None, watch: bool) -> int:
    while True:
        jobs = queue.jobs(grid_id=grid_id)
        counts = {s: sum(j.status == s for j in jobs) for s in JobStatus}
        print(f"-- {time.strftime('%H:%M:%S')} {queue.backend_name} queue: "
              + ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items() if n))
        for grid, eta in queue.grid_etas(jobs).items():
            print(f"grid {grid}: {eta.sentence()}")
        for job in jobs:
            print(describe(job))
        if not watch or all(j.status.is_terminal() for j in jobs):
            return 0 if all(j.status != JobStatus.FAILED for j in jobs) else 1
        time.sleep(WATCH_SECONDS)


def dispatch(args) -> int:
    if args.command == "worker":
        settings = Settings.from_env()
        if args.action == "start":
            print(f"worker running, pid {ensure_worker(settings)}; its log: {settings.home / 'worker.log'}")
        elif args.action == "stop":
            print("worker stopped" if stop_worker(settings) else "no worker was running")
        else:
            info = worker_info(settings)
            print(f"worker pid {info['pid']}, slots {', '.join(info['slots'])}" if info else "no worker running")
        return 0
    queue = JobQueue(checkpoint=faults.checkpoint())  # a test may hold a submit half-written
    if args.command == "submit":
        jobs = queue.submit(GridSpec.from_file(args.grid), priority=args.priority)
        print(f"queued {len(jobs)} job(s) on the {queue.backend_name} backend, grid {jobs[0].grid_id}:")
        for job in jobs:
            print(f"  {job.run_id}  {job.run_name}")
        return show(queue, jobs[0].grid_id, True) if args.watch else 0
    if args.command == "jobs":
        return show(queue, args.grid, args.watch)
    if args.command == "cancel":
        print(describe(queue.cancel(args.run_id)))
        return 0
    if args.command == "retry":
        job = queue.retry(args.run_id)
        print(f"queued {job.run_id} {job.run_name} (retry of {args.run_id})")
        return 0
    printed = ""
    while True:
        text = queue.log_tail(args.run_id, args.lines if not printed else 10_000)
        print(text.removeprefix(printed), end="", flush=True)
        printed = text
        if not args.follow or queue.get(args.run_id).status.is_terminal():
            print()
            return 0
        time.sleep(1.0)
