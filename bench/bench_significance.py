"""Is the difference real? The cost of comparing a pair of runs of 5,000 validation examples each (issue 19).

    python bench/bench_significance.py [--examples 5000] [--classes 2] [--repeats 5]

Builds two runs' predictions tables the way runs build them (``core.examples.table.build_table``): ``--classes``
classes, two models whose scores share most of their signal (they split on about a sixth of the examples, the
second a little better), then times, best and median of ``--repeats``:
- ``significance.compare_tables`` per metric, on the tables in memory (matching the examples, the metric of both
  runs, the p-value and the seeded paired bootstrap's 95% interval over 2,000 resamples);
- the same through a fresh SQLite MLflow store (``noise.compare_runs``: both runs read, both tables downloaded and
  parsed), as ``python -m core.cli compare`` does after its imports;
- one run's 95% interval (``significance.estimate``) and the smallest detectable difference.
Target: a pair of 5,000-example runs compared in under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 0.5


def pair(examples: int, classes: int, seed: int = 0):
    """Two predictions tables on the same examples: models sharing most of their signal, the second a bit better."""
    from core.examples.table import build_table

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, examples)
    names = {0: "not_entailment", 1: "entailment"} if classes == 2 else {i: f"topic {i}" for i in range(classes)}
    shared = rng.normal(size=(examples, classes))

    def model(strength: float) -> np.ndarray:
        logits = shared + 0.5 * rng.normal(size=(examples, classes)) + strength * np.eye(classes)[labels]
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    rows = [f"line {i + 2}" for i in range(examples)]
    texts = [f"call transcript {i}: the customer asks about their account" for i in range(examples)]
    return (build_table(rows, texts, None, labels, model(1.6), names),
            build_table(rows, texts, None, labels, model(1.7), names))


def timed(call, repeats: int) -> tuple[float, float, object]:
    """(best, median) seconds of ``call()`` over ``repeats`` runs, and its last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from core.examples import significance as sig

    a, b = pair(args.examples, args.classes)
    first = sig.compare_tables(a, b, "accuracy")
    print(f"{args.examples} examples, {args.classes} classes; the runs split on {first.discordance:.1%} of them; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"{'measure':<58} {'best':>8} {'median':>8}  verdict")
    worst = 0.0
    for metric in sig.METRICS:
        best, median, found = timed(lambda m=metric: sig.compare_tables(a, b, m), args.repeats)
        worst = max(worst, best)
        print(f"{'compare_tables, ' + metric + ', tables in memory':<58} {best:>7.3f}s {median:>7.3f}s  "
              f"{found.verdict(better='difference')}")
    for metric in ("accuracy", "f1"):
        best, median, _ = timed(lambda m=metric: sig.estimate(b, m), args.repeats)
        print(f"{'estimate (one run, 95% interval), ' + metric:<58} {best:>7.3f}s {median:>7.3f}s")
    best, median, _ = timed(lambda: sig.detectable_difference.__wrapped__(args.examples, first.discordance),
                            args.repeats)
    print(f"{'detectable_difference (80% power), uncached':<58} {best:>7.3f}s {median:>7.3f}s")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNEBOARD_HOME"] = tmp
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        import mlflow

        from core import runs
        from core.examples import noise
        from core.examples.table import ARTIFACT
        from core.settings import Settings, configure_mlflow

        configure_mlflow(Settings.from_env())
        mlflow.set_experiment("bench-significance")
        ids = []
        for name, table in (("run-a", a), ("run-b", b)):
            with mlflow.start_run(run_name=name) as run:
                mlflow.log_params({"validation_digest": "same-file"})
                mlflow.log_table(table, ARTIFACT)
            ids.append(run.info.run_id)
        client = runs.client()
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        for metric in ("accuracy", "f1"):
            best, median, _ = timed(lambda m=metric: noise.compare_runs(client, *ids, m), args.repeats)
            print(f"{'compare_runs, ' + metric + ', both runs read from MLflow':<58} {best:>7.3f}s {median:>7.3f}s")
            if metric == "accuracy":
                target = best
    print(f"Target: a pair of {args.examples}-example runs compared (accuracy, read from MLflow) in under "
          f"{TARGET} s: {'met' if target < TARGET else 'NOT met'} ({target:.3f} s); slowest metric in memory "
          f"{worst:.3f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
