"""Page data under load: hundreds of queued jobs, the worker training, ten dashboard sessions polling at once.

    python bench/bench_load.py [--jobs 200] [--sessions 10] [--seconds 60] [--cpu-jobs 2] [--interval 2]

Each session is a Streamlit ``AppTest`` of one page (the same script a browser session runs, reading
MLflow through the page's own cached loaders, sharing the process's caches as browser sessions of one
dashboard do), re-run in a loop as the Jobs page's auto-refresh does; its first run (opening the page) is
reported apart. Sessions are spread over the Jobs, Home and Compare pages. The queue holds ``--jobs`` tiny
jobs while the local worker trains them, so the two cores are busy too. Prints every page's run time:
median, p95, max (target: under 2 s).
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
OPENS: list[float] = []
INTERVAL = 2.0


def one_server() -> None:
    """Make concurrent AppTests behave like sessions of one Streamlit server.

    For each run AppTest puts a fresh mock Runtime into a process-wide slot and empties the slot when the run
    ends, and compiles the page again; with sessions running at once, one session's end pulled the runtime
    from under the others ("Runtime hasn't been created!") and CPython 3.11's parser raced. A server has
    one runtime and one compiled-script cache for all its sessions: so do we here.
    """
    from unittest.mock import MagicMock

    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
    from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test

    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    Runtime._instance = runtime

    class PerRunSlot:  # where AppTest now puts (and clears) its own per-run runtime, unused
        _instance = None

    scripts = ScriptCache()
    app_test.Runtime = PerRunSlot
    app_test.ScriptCache = lambda: scripts


def session(page: str, stop: float, times: list[float], errors: list[str]) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()  # the session opens the dashboard (first run: imports, not counted), then goes to its page
    at.switch_page(f"pages/{page}.py")
    t = time.perf_counter()
    at.run()
    OPENS.append(time.perf_counter() - t)  # opening the page (its first run) is counted apart from polling
    while time.monotonic() < stop:
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            message = at.exception[0].message
            errors.append(f"{page}: {message}")
            return
        time.sleep(INTERVAL)  # the Jobs page refreshes itself every 2 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--cpu-jobs", type=int, default=2)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between a session's page runs")
    args = parser.parse_args()
    global INTERVAL
    INTERVAL = args.interval
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
    one_server()
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
    print(f"opening a page (first run in a session, {len(OPENS)} sessions): median {statistics.median(OPENS):.2f} s, "
          f"max {max(OPENS):.2f} s")
    summary["open"] = {"median_s": round(statistics.median(OPENS), 3), "max_s": round(max(OPENS), 3)}
    for error in errors:
        print("ERROR", error)
    print(json.dumps(summary))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
