"""An 8-run grid through the job queue against the same 8 fine-tunes run one after another by a plain script.

    python bench/bench_grid.py                    # tiny demo model on CPU
    python bench/bench_grid.py --shape base       # DeBERTa-v3-base shape, 32-256 token mix (GPU)

2 dataset versions x 4 parameter sets. The plain side is one Python process looping over the 8 runs with
the HF Trainer: load the model, tokenize, train, evaluate each epoch, predict, save the model. The queue side
submits the grid (ExperimentManager's checks, 8 MLflow runs), and the local worker runs it (warm spare
processes, jobs packed on the GPU as memory allows, compiled when it pays), each run logging its metrics,
curves, confusion matrix and model to MLflow. Both are timed end to end, from nothing loaded to every model
saved; the ratio is plain seconds over queue seconds. The plain side runs first, so it warms no cache of ours.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench_pipeline import SHAPES, plain_trainer, write_data  # after the path and env set-up

LEARNING_RATES = (2e-5, 3e-5, 5e-5, 3e-5)
WEIGHT_DECAYS = (0.01, 0.01, 0.01, 0.1)


def param_sets(args) -> list[dict]:
    tiny = args.shape == "tiny"
    steps = -(-args.examples // args.batch)
    return [{"num_train_epochs": args.epochs, "learning_rate": lr * (10 if tiny else 1), "weight_decay": wd,
             "per_device_train_batch_size": args.batch, "per_device_eval_batch_size": 64,
             "max_length": args.max_length, "logging_steps": max(1, min(50, steps // 4))}
            for lr, wd in zip(LEARNING_RATES, WEIGHT_DECAYS, strict=True)]


def run_plain(model: str, work: Path, sets: list[dict], versions: list[str]) -> dict:
    start = time.perf_counter()
    runs = []
    for version in versions:
        for i, params in enumerate(sets):
            out = work / "plain" / f"{version}-{i}"
            result = plain_trainer(model, work / "data" / version / "train.csv", work / "data" / "v1" / "eval.csv",
                                   params, str(out), save=True)
            runs.append({k: v for k, v in result.items() if k != "loss_curve"})
            print(f"  plain {version} set {i + 1}: {result['wall_seconds']:.1f} s, "
                  f"{result['train_samples_per_second']:.0f} samples/s", flush=True)
    return {"seconds": time.perf_counter() - start, "runs": runs}


def run_queue(model: str, work: Path, sets: list[dict], versions: list[str], timeout: float) -> dict:
    from core.grid import GridSpec
    from core.jobs import JobQueue
    from core.worker import stop_worker

    grid = GridSpec(base_name="GridBench", data_src="Bench", dataset_versions=tuple(versions),
                    hyperparameters=tuple(sets), base_model_versions=(model,), output_dir=str(work / "queue"),
                    train_file=str(work / "data" / "{data_version}" / "train.csv"),
                    validation_file=str(work / "data" / "v1" / "eval.csv"), evaluate_pretrained_model=False,
                    user_id="bench")
    start = time.perf_counter()
    queue = JobQueue()
    jobs = queue.submit(grid)
    try:
        while True:
            listed = queue.jobs(grid_id=jobs[0].grid_id)
            if all(j.status.is_terminal() for j in listed) or time.perf_counter() - start > timeout:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    finally:
        stop_worker()
    runs = []
    for job in listed:
        run = queue.client.get_run(job.run_id)
        metrics, tags = run.data.metrics, run.data.tags
        runs.append({"name": job.run_name, "status": job.status.value, "error": tags.get("error"),
                     "train_samples_per_second": metrics.get("train_samples_per_second"),
                     "steady_samples_per_second": metrics.get("train_samples_per_second_steady"),
                     "gpu_seconds": metrics.get("gpu_seconds"), "gpu_memory_peak_mb": metrics.get("gpu_memory_peak_mb"),
                     "compile": tags.get("compile"), "bucket_edges": tags.get("bucket_edges"),
                     "gpu_jobs_sharing": tags.get("gpu_jobs_sharing"), "slot": tags.get("job_slot"),
                     "accuracy": metrics.get("accuracy")})
        print(f"  queued {runs[-1]}", flush=True)
    return {"seconds": seconds, "runs": runs, "all_finished": all(r["status"] == "FINISHED" for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--examples", type=int, default=256, help="training examples per dataset version")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=1800, help="give up waiting on the queue after this")
    parser.add_argument("--json", help="also write the figures to this file (after each side)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cut off by a time limit: still stop the worker
    work = Path(tempfile.mkdtemp(prefix="tuneboard-grid-bench-"))
    os.environ.update(TUNEBOARD_HOME=str(work / "home"), TUNEBOARD_DATA_ROOTS=str(work),
                      TUNEBOARD_MODEL_ROOTS=str(work))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import torch

    from core.demo import build_model

    model = str(build_model(work / f"model-{args.shape}", **SHAPES[args.shape]))
    versions = ["v1", "v2"]
    for i, version in enumerate(versions):
        write_data(work / "data" / version, args.examples, max(64, args.examples // 4), args.shape != "tiny", i)
    sets = param_sets(args)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"grid of {len(versions) * len(sets)} ({len(versions)} dataset versions x {len(sets)} parameter sets), "
          f"shape {args.shape} on {device}; {args.examples} examples x {args.epochs} epochs, batch {args.batch}",
          flush=True)
    summary: dict = {"shape": args.shape, "device": device, "examples": args.examples, "epochs": args.epochs,
                     "batch": args.batch, "jobs_per_gpu_cap": os.environ.get("TUNEBOARD_JOBS_PER_GPU", "default"),
                     "compile_env": os.environ.get("TUNEBOARD_COMPILE", "auto")}

    def write() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))

    summary["plain"] = run_plain(model, work, sets, versions)
    print(f"plain script, 8 runs one after another: {summary['plain']['seconds']:.1f} s", flush=True)
    write()
    summary["queue"] = run_queue(model, work, sets, versions, args.timeout)
    print(f"queue and worker, 8 runs: {summary['queue']['seconds']:.1f} s "
          f"(all finished: {summary['queue']['all_finished']})", flush=True)
    summary["ratio"] = round(summary["plain"]["seconds"] / summary["queue"]["seconds"], 3)
    write()
    print(json.dumps({k: summary[k] for k in ("shape", "device", "ratio")}))
    print(f"grid: queue / plain script end to end: {summary['ratio']:.2f}x faster "
          f"({summary['queue']['seconds']:.0f} s vs {summary['plain']['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
