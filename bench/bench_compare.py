"""The Compare page's runs loader on an experiment of 2,000 runs: cold, warm, and after one run finished.

    python bench/bench_compare.py [--runs 2000] [--deleted 100]

Builds a fresh SQLite store with one experiment of ``--runs`` finished runs (8 metrics, 8 params, 6 tags
each, as our runs carry), started and ended over the past days as a real experiment's are, then times on the
same store:
- ``mlflow.search_runs`` (the reference, returns a DataFrame);
- the loader cold (``core.runs_cache.RunsLoader``, nothing kept: a full read + DataFrame);
- the loader warm (nothing changed: the refresh's queries, no run read again);
- a refresh after one run finished (a job seen RUNNING logs its metrics and ends: one run read, the
  frame rebuilt), each time a new run;
- the same after ``--deleted`` runs were deleted (what the deleted-runs query costs each refresh).
Targets: cold no slower than 1.2x mlflow.search_runs, warm under 0.3 s, after one run finished under 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(client, experiment_id: str, n: int) -> None:
    """``n`` finished runs, started a minute apart over the past days, each ended 50 s after its start."""
    from mlflow.entities import Metric, Param, RunTag

    rng = random.Random(0)
    now = int(time.time() * 1000)
    for i in range(n):
        start = now - (n - i + 10) * 60_000
        run = client.create_run(experiment_id, run_name=f"model{i % 4}_data{i % 3}_param_set{i % 50}",
                                start_time=start)
        names = ("accuracy", "f1", "precision", "recall", "roc_auc", "eval_loss", "loss", "train_samples_per_second")
        metrics = [Metric(k, rng.random(), now, 0) for k in names]
        params = [Param(k, str(v)) for k, v in {
            "learning_rate": rng.choice([1e-5, 2e-5, 3e-5, 5e-5]), "num_train_epochs": rng.choice([3, 5, 8]),
            "weight_decay": 0.01, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32,
            "max_length": 128, "base_model": f"/models/model{i % 4}", "train_file": f"/data/data{i % 3}.csv"}.items()]
        tags = [RunTag(k, v) for k, v in {"run_type": "fine_tune", "base_model_name": f"model{i % 4}",
                                          "dataset_name": f"data{i % 3}", "param_set": f"param_set{i % 50}",
                                          "grid_id": "bench", "metric_average": "binary"}.items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 50_000)


def one_finishes(client, experiment_id: str, load) -> None:
    """A job starts (a refresh sees it RUNNING), logs its metrics and ends: the next refresh is timed apart."""
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, run_name="just_finished", tags={"run_type": "fine_tune"})
    load()
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, random.random(), now, 0) for k in ("accuracy", "f1")])
    client.set_terminated(run.info.run_id, "FINISHED")


def timed(fn, repeats: int = 5) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--deleted", type=int, default=100)
    args = parser.parse_args()
    os.environ["TUNEBOARD_HOME"] = tempfile.mkdtemp(prefix="tuneboard-compare-bench-")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    import mlflow
    import pandas as pd

    from core import runs as runs_mod
    from core.runs_cache import RunsLoader
    from core.settings import ensure_experiment
    from pages import common

    client = common.client()
    experiment_id = ensure_experiment("/Users/bench/compare_2000")
    start = time.perf_counter()
    build(client, experiment_id, args.runs)
    print(f"built {args.runs} runs in {time.perf_counter() - start:.0f} s")
    med = statistics.median

    reference = timed(lambda: mlflow.search_runs([experiment_id], max_results=100_000))
    cold = timed(lambda: RunsLoader().load(client, [experiment_id]), repeats=5)
    loader = RunsLoader()
    def load():
        return loader.load(client, [experiment_id])

    load()
    warm = timed(load, repeats=10)
    finished = []
    for _ in range(5):
        one_finishes(client, experiment_id, load)
        read = loader.runs_read
        finished += timed(load, repeats=1)
        assert loader.runs_read - read == 1, loader.runs_read - read
    frame = load().frame
    pd.testing.assert_frame_equal(frame, runs_mod.load_frame(client, [experiment_id]), check_exact=True)
    assert len(frame) == args.runs + 5, len(frame)
    print(f"mlflow.search_runs:        median {med(reference):.3f} s")
    print(f"loader, cold:              median {med(cold):.3f} s "
          f"({med(cold) / med(reference):.2f}x search_runs; target <= 1.2x)")
    print(f"loader, warm:              median {med(warm):.3f} s (target < 0.3 s)")
    print(f"refresh, one run finished: median {med(finished):.3f} s, max {max(finished):.3f} s (target < 0.2 s)")
    if args.deleted:
        for row in frame.head(args.deleted).itertuples():
            client.delete_run(row.run_id)
        load()
        warm_deleted = timed(load, repeats=10)
        finished_deleted = []
        for _ in range(5):
            one_finishes(client, experiment_id, load)
            finished_deleted += timed(load, repeats=1)
        print(f"with {args.deleted} deleted runs: warm median {med(warm_deleted):.3f} s, one run finished median "
              f"{med(finished_deleted):.3f} s")


if __name__ == "__main__":
    main()
