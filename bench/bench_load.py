"""Page data under load: hundreds of queued jobs, the worker training, ten dashboard sessions polling at once.

    python bench/bench_load.py [--jobs 200] [--sessions 10] [--seconds 60] [--cpu-jobs 2]

Each session is a Streamlit ``AppTest`` of one page (the same script a browser session runs, reading
MLflow through the page's own cached loaders, sharing the process's caches as browser sessions of one
dashboard do), re-run in a loop as the Jobs page's auto-refresh does. Sessions are spread over the Jobs,
Home and Compare pages. The queue holds ``--jobs`` tiny jobs while the local worker trains them, so the two
cores are busy too. Prints every page's run time: median, p95, max (target: under 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAGES = ("jobs", "home", "compare")
HARNESS_RETRIES: list[str] = []


def session(page: str, stop: float, times: list[float], errors: list[str]) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()  # the session opens the dashboard (first run: imports, not counted), then goes to its page
    at.switch_page(f"pages/{page}.py")
    while time.monotonic() < stop:
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            message = at.exception[0].message
            if "AST constructor recursion depth mismatch" in message:
                # CPython 3.11's parser is not safe when threads parse at once; AppTest re-parses the page on
                # every run (a Streamlit server caches it), so this is the harness, not the page: run again
                times.pop()
                HARNESS_RETRIES.append(page)
                continue
            errors.append(f"{page}: {message}")
            return
        time.sleep(0.5)  # a browser polls every 2 s; 0.5 s keeps the load above that


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--cpu-jobs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneboard-load-bench-"))
    os.environ.update(TUNEBOARD_HOME=str(work / "home"), TUNEBOARD_CPU_JOBS=str(args.cpu_jobs),
                      TUNEBOARD_DATA_ROOTS=str(work), TUNEBOARD_MODEL_ROOTS=str(work), TUNEBOARD_USER="bench")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    from bench_jobs import make_grid

    from core.demo import build_model
    from core.jobs import JobQueue, JobStatus
    from core.worker import ensure_worker, stop_worker

    model = str(build_model(work / "demo-bert-tiny"))
    (work / "data").mkdir()
    lines = (ROOT / "data" / "test.csv").read_text().splitlines()
    (work / "data" / "small.csv").write_text("\n".join(lines[:41]) + "\n")
    queue = JobQueue()
    t0 = time.time()
    jobs = queue.submit(make_grid(work, model, "Load", args.jobs))
    print(f"queued {len(jobs)} jobs in {time.time() - t0:.1f} s")
    times: dict[str, list[float]] = {p: [] for p in PAGES}
    errors: list[str] = []
    try:
        ensure_worker()
        stop = time.monotonic() + args.seconds
        threads = [threading.Thread(target=session, args=(PAGES[i % len(PAGES)], stop, times[PAGES[i % len(PAGES)]],
                                                          errors)) for i in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        states = {s.value: n for s in JobStatus if (n := sum(j.status == s for j in queue.jobs()))}
    finally:
        stop_worker()
    print(f"{args.sessions} sessions for {args.seconds:.0f} s over {len(jobs)} queued jobs; queue now {states}")
    summary = {}
    for page, samples in times.items():
        if not samples:
            continue
        samples.sort()
        p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
        summary[page] = {"runs": len(samples), "median_s": round(statistics.median(samples), 3),
                         "p95_s": round(p95, 3), "max_s": round(samples[-1], 3)}
        print(f"{page:8s} page: {len(samples):4d} runs, median {statistics.median(samples):.2f} s, "
              f"p95 {p95:.2f} s, max {samples[-1]:.2f} s  (target < 2 s)")
    print(f"page runs repeated for the harness's parser race (not counted): {len(HARNESS_RETRIES)}")
    for error in errors:
        print("ERROR", error)
    print(json.dumps(summary))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
