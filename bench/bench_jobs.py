"""The local job queue's latencies, on a fresh store with the real worker.

    python bench/bench_jobs.py [--drain 200] [--cpu-jobs 1]

1. submit -> RUNNING latency for a job on an idle worker (target: under 2 s; model load excluded,
   since RUNNING is set when the job is handed to its process);
2. idle gap on one slot between a job's run ending and the next one RUNNING (target: under 1 s);
3. ``--drain`` tiny jobs (pretrained-model evaluations on a 40-row file) queued at once: time to
   list the queue (target: under 0.5 s), then all must end FINISHED, each started exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


from core.demo import build_model
from core.grid import GridSpec
from core.jobs import STARTED_AT, JobQueue, JobStatus
from core.worker import ensure_worker, stop_worker


def make_grid(work: Path, model: str, name: str, n: int = 1) -> GridSpec:
    sets = tuple({"n_epochs": 1, "max_steps": 2, "seed": i} for i in range(n))
    return GridSpec(base_name=name, data_src="Bench", dataset_versions=("small.csv",), hyperparameters=sets,
                    base_model_versions=(model,), output_dir=str(work / "out"),
                    train_file=str(work / "data" / "{data_version}"),
                    validation_file=str(work / "data" / "small.csv"), evaluate_pretrained_model=False,
                    user_id="bench")


def wait(queue: JobQueue, run_id: str, done) -> float:
    while not done(queue.get(run_id)):
        time.sleep(0.02)
    return time.time()


def latency_and_gap(queue: JobQueue, work: Path, model: str, trials: int) -> dict:
    """On an idle one-slot worker: submit -> RUNNING, then the gap between two consecutive jobs."""
    latencies, gaps = [], []
    for trial in range(trials):
        start = time.time()
        (job,) = queue.submit(make_grid(work, model, f"Latency{trial}"))
        latencies.append(wait(queue, job.run_id, lambda j: j.status != JobStatus.SCHEDULED) - start)
        wait(queue, job.run_id, lambda j: j.status.is_terminal())
        time.sleep(8)  # the next spare is ready again: the worker is idle
    for trial in range(trials):
        first, second = queue.submit(make_grid(work, model, f"Gap{trial}", 2))
        wait(queue, second.run_id, lambda j: j.status.is_terminal())
        ended = queue.client.get_run(first.run_id).info.end_time / 1000
        gaps.append(float(queue.client.get_run(second.run_id).data.tags[STARTED_AT]) - ended)
    print(f"submit -> RUNNING on an idle worker: median {statistics.median(latencies):.2f} s "
          f"(max {max(latencies):.2f} s over {len(latencies)})")
    print(f"idle gap between consecutive jobs on one slot: median {statistics.median(gaps):.2f} s "
          f"(max {max(gaps):.2f} s over {len(gaps)})")
    return {"submit_to_running_s": latencies, "idle_gap_s": gaps}


def drain(queue: JobQueue, work: Path, model: str, n: int) -> dict:
    """``n`` jobs queued at once: list them, wait for all, check each ran exactly once."""
    t0 = time.time()
    jobs = queue.submit(make_grid(work, model, "Drain", n))
    submit_s = time.time() - t0
    listings = []
    for _ in range(5):
        t = time.perf_counter()
        listed = queue.jobs(grid_id=jobs[0].grid_id)
        listings.append(time.perf_counter() - t)
    t = time.perf_counter()
    whole = queue.jobs()
    list_all = time.perf_counter() - t
    while any(not j.status.is_terminal() for j in queue.jobs(grid_id=jobs[0].grid_id)):
        time.sleep(2)
    drained = time.time() - t0
    final = queue.jobs(grid_id=jobs[0].grid_id)
    statuses = {s.value: sum(j.status == s for j in final) for s in JobStatus}
    logs = [(work / "home" / "jobs" / f"{j.run_id}.log").read_text() for j in final]
    once = all(len(re.findall(rf"job {j.run_id}: ", text)) == 2 for j, text in zip(final, logs, strict=True))
    print(f"{n} jobs: submitted in {submit_s:.1f} s, listed {len(listed)} in median "
          f"{statistics.median(listings):.3f} s (whole queue of {len(whole)}: {list_all:.3f} s), drained in "
          f"{drained:.0f} s; final states {statuses}; each started exactly once: {once}")
    return {"drain": n, "submit_s": submit_s, "list_s": listings, "list_all_s": list_all, "drain_s": drained,
            "statuses": statuses, "started_once": once}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drain", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--cpu-jobs", type=int, default=1, help="slots for the drain")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneboard-jobs-bench-"))
    os.environ.update(TUNEBOARD_HOME=str(work / "home"), TUNEBOARD_CPU_JOBS="1", TUNEBOARD_DATA_ROOTS=str(work),
                      TUNEBOARD_MODEL_ROOTS=str(work))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    model = str(build_model(work / "demo-bert-tiny"))
    (work / "data").mkdir()
    lines = (ROOT / "data" / "test.csv").read_text().splitlines()
    (work / "data" / "small.csv").write_text("\n".join(lines[:41]) + "\n")
    queue = JobQueue()
    summary: dict = {}
    try:
        ensure_worker()
        time.sleep(15)  # the worker's warm spare finishes importing: the worker is idle
        summary.update(latency_and_gap(queue, work, model, args.trials))
        if args.drain:
            stop_worker()
            os.environ["TUNEBOARD_CPU_JOBS"] = str(args.cpu_jobs)
            ensure_worker()
            summary.update(drain(queue, work, model, args.drain))
    finally:
        stop_worker()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
