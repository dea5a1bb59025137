"""The Compare page's runs loader on an experiment of 2,000 runs, cold and warm, against mlflow.search_runs.

    python bench/bench_compare.py [--runs 2000]

Builds a fresh SQLite store with one experiment of ``--runs`` finished runs (8 metrics, 8 params,
6 tags each, as our runs carry), then times on the same store:
- ``mlflow.search_runs`` (the reference, returns a DataFrame);
- our loader cold (the cache empty: change token + paginated search + DataFrame);
- our loader warm (the cache holds it: only the change token is read).
Targets: cold no slower than 1.2x mlflow.search_runs, warm under 0.3 s.
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
    from mlflow.entities import Metric, Param, RunTag

    rng = random.Random(0)
    now = int(time.time() * 1000)
    for i in range(n):
        run = client.create_run(experiment_id, run_name=f"model{i % 4}_data{i % 3}_param_set{i % 50}")
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
    args = parser.parse_args()
    os.environ["TUNEBOARD_HOME"] = tempfile.mkdtemp(prefix="tuneboard-compare-bench-")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    import mlflow

    from core import runs as runs_mod
    from core.settings import ensure_experiment
    from pages import common

    client = common.client()
    experiment_id = ensure_experiment("/Users/bench/compare_2000")
    start = time.perf_counter()
    build(client, experiment_id, args.runs)
    print(f"built {args.runs} runs in {time.perf_counter() - start:.0f} s")

    reference = timed(lambda: mlflow.search_runs([experiment_id], max_results=100_000))
    cold = []
    for _ in range(5):
        common._frame.clear()
        cold += timed(lambda: common.load_runs([experiment_id]), repeats=1)
    warm = timed(lambda: common.load_runs([experiment_id]), repeats=10)
    token = timed(lambda: runs_mod.change_token(client, [experiment_id]), repeats=10)
    frame = common.load_runs([experiment_id])
    assert len(frame) == args.runs, len(frame)
    med = statistics.median
    print(f"mlflow.search_runs: median {med(reference):.3f} s")
    print(f"our loader, cold:   median {med(cold):.3f} s "
          f"({med(cold) / med(reference):.2f}x search_runs; target <= 1.2x)")
    print(f"our loader, warm:   median {med(warm):.3f} s "
          f"(target < 0.3 s; of which the change token {med(token):.3f} s)")


if __name__ == "__main__":
    main()
