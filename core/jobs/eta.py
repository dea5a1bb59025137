"""When each grid in the queue should end: jobs left, and the time, as the queue will run them.

Each job's expected length comes from its kind (``JobKind.expected_seconds``), learnt from the queue's finished
jobs (its own grid's first, and past ones of the same base models). A running job has left what it was
expected to take less what it has run, and at least its own progress ETA. Then the queue is played forward on
the executor's slots (``JobBackend.capacity``): running jobs first, queued ones in queue order, each on the slot
that frees first, so a grid waits for what is queued ahead of it. A grid's end is its last job's end; it is
unknown while any of its jobs' lengths is (nothing finished yet to learn from).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.jobkind import Past
from core.jobs import kinds
from core.jobs.model import Job, JobStatus
from core.progress import duration_text


@dataclass(frozen=True)
class GridEta:
    grid_id: str
    jobs: int
    left: int  # queued or running
    running: int
    ends_at: float | None  # epoch seconds; None: not known yet
    now: float

    @property
    def seconds_left(self) -> float | None:
        return None if self.ends_at is None else max(0.0, self.ends_at - self.now)

    def sentence(self) -> str:
        """``"3 of 10 jobs left (1 running); it should end at 14:32, in 6 min"``."""
        left = f"{self.left} of {self.jobs} jobs left ({self.running} running)"
        if self.ends_at is None:
            # nothing it could learn from has finished yet (its first jobs are running)
            return f"{left}; its end is estimated once a job like each of its own has finished"
        return f"{left}; it should end at {time.strftime('%H:%M', time.localtime(self.ends_at))}, in " \
               f"{duration_text(self.seconds_left)}"


def _spec(job: Job):
    """The job's spec, or None when this process cannot read it (a kind it does not know)."""
    try:
        return kinds.job_spec(job.spec or "")
    except Exception:  # noqa: BLE001 - such a job teaches nothing, and its own length is unknown
        return None


def _past(jobs: Sequence[Job]) -> list[Past]:
    found = []
    for job in jobs:
        if job.status == JobStatus.FINISHED and job.start_time and job.end_time and (spec := _spec(job)):
            found.append(Past(spec, job.end_time - job.start_time, dict(job.figures)))
    return found


def _expected(job: Job, past: list[Past]) -> float | None:
    spec = _spec(job)
    expected = getattr(kinds.for_spec(job.spec), "expected_seconds", None) if spec is not None else None
    return expected(spec, past) if expected else None


def grid_etas(jobs: Sequence[Job], capacity: int | None, now: float | None = None) -> dict[str, GridEta]:
    """Every grid with jobs left: its :class:`GridEta`. ``capacity``: the executor's slots (None: one)."""
    now = time.time() if now is None else now
    past = _past(jobs)
    running = [j for j in jobs if j.status == JobStatus.RUNNING]
    queued = sorted((j for j in jobs if j.status == JobStatus.SCHEDULED), key=Job.spec_order)
    ends: dict[str, float | None] = {}
    slots: list[float] = []
    for job in running:
        expected = _expected(job, past)
        progress = job.progress.eta_seconds if job.progress and job.progress.eta_seconds else 0.0
        if expected is None:
            ends[job.run_id] = None
            slots.append(now + progress)
            continue
        ran = now - job.start_time if job.start_time else 0.0
        ends[job.run_id] = now + max(expected - ran, progress, 1.0)
        slots.append(ends[job.run_id])
    slots += [now] * max(0, (capacity or 1) - len(slots))
    heapq.heapify(slots)
    for job in queued:
        expected = _expected(job, past)
        start = heapq.heappop(slots)
        ends[job.run_id] = None if expected is None else start + expected
        heapq.heappush(slots, start + (expected or 0.0))
    etas = {}
    grids = {j.grid_id for j in jobs if j.grid_id and not j.status.is_terminal()}
    for grid_id in sorted(grids):
        mine = [j for j in jobs if j.grid_id == grid_id]
        left = [j for j in mine if not j.status.is_terminal()]
        times = [ends.get(j.run_id) for j in left]
        etas[grid_id] = GridEta(grid_id, len(mine), len(left), sum(j.status == JobStatus.RUNNING for j in left),
                                None if any(t is None for t in times) else max(times), now)
    return etas
