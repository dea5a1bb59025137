"""A grid through the real job queue: where each job's time goes; and against a plain script.

    python bench/bench_grid.py --breakdown                # the 4-job demo grid: per-stage times of each job
    python bench/bench_grid.py --breakdown --warm         # the same, submitted to a worker whose spare is warm
    python bench/bench_grid.py --breakdown --shape base --steps 2   # one DeBERTa-v3-base-shaped job, few steps
    python bench/bench_grid.py --eta                      # Compose's demo grid: the ETA shown against the real end
    python bench/bench_grid.py                            # 8-run grid: queue vs plain script, tiny model on CPU
    python bench/bench_grid.py --shape base               # DeBERTa-v3-base shape, 32-256 token mix (GPU)

``--breakdown`` submits the demo grid (both demo models, one set of one epoch on ``train_sample.csv``,
baselines first; with ``--shape`` one fine-tune of that shape for ``--steps`` steps) to a fresh store and a
fresh worker, and prints each job's stages as the job recorded them (``stage_*_seconds``: start-up, reading
data, loading the model and tokenizer, tokenizing, training, evaluating, saving, logging the model), the
Trainer's ``train_runtime`` (which includes the evaluation it runs each epoch) and ``eval_runtime`` of the
evaluations outside training (a baseline's, or a separate final pass), finishing (the last stage's end to the
run's end, from MLflow), and the overhead: job start to end minus those two; then the median overhead per job
(issue 21's target: at most 2.0 s on the demo grid).

``--eta`` submits the grid Compose offers first (both demo models x ``full_dataset.csv`` and
``train_sample.csv`` x its two default sets, baselines first: 10 jobs) to a fresh store and worker, reads the
grid's ETA as the Jobs page does (``JobQueue.grid_etas``) every second, and prints, for the ETA read just after
each job finished, its error against the real end as a share of the time that was then left (issue 21's
target: within 25% once two jobs have finished).

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


STAGES = ("startup", "reading_data", "loading_model", "tokenizing", "training", "evaluating", "evaluating_topics",
          "saving_model", "logging_model")


def breakdown(queue, run_ids: list[str]) -> list[dict]:
    """Each job's recorded stages, its Trainer runtimes, finishing and overhead (seconds)."""
    rows = []
    for run_id in run_ids:
        run = queue.client.get_run(run_id)
        metrics, tags = run.data.metrics, run.data.tags
        started = float(tags.get("job_started_at", run.info.start_time / 1000))
        total = run.info.end_time / 1000 - started
        stages = {s: metrics.get(f"stage_{s}_seconds") for s in STAGES if f"stage_{s}_seconds" in metrics}
        # the Trainer's train_runtime includes the evaluations it ran each epoch: only the evaluations logged after
        # training ended (a baseline's, or a separate final pass) count beside it
        trained = queue.client.get_metric_history(run_id, "train_runtime")
        trained_at = max((m.timestamp for m in trained), default=0)
        history = queue.client.get_metric_history(run_id, "eval_runtime")
        eval_runtime = sum(m.value for m in history if m.timestamp >= trained_at)
        train_runtime = metrics.get("train_runtime", 0.0)
        accounted = sum(v for v in stages.values())
        rows.append({"run": run.info.run_name, "status": run.info.status, "total": round(total, 2),
                     "train_runtime": round(train_runtime, 2), "eval_runtime": round(eval_runtime, 2),
                     **{k: round(v, 2) for k, v in stages.items()},
                     "finishing": round(max(0.0, total - accounted), 2),
                     "overhead": round(total - train_runtime - eval_runtime, 2)})
    return rows


def wait_for_warm_worker(settings, timeout: float = 300) -> None:
    """Start the worker and wait until it says its fork server (CPU) or a slot's spare (GPU) is warm, as
    ``make run`` leaves a worker before anyone has composed a grid (without this, the first job pays the imports)."""
    from core.worker import ensure_worker

    ensure_worker(settings)
    deadline = time.monotonic() + timeout
    worker_log, spare_logs = settings.home / "worker.log", settings.home / "jobs"
    while time.monotonic() < deadline:
        said = worker_log.read_text(errors="replace") if worker_log.exists() else ""
        if "ready: CPU jobs start warm" in said or any("ready" in log.read_text(errors="replace").split()
                                                       for log in spare_logs.glob("spare-*.log")):
            return
        time.sleep(0.2)  # warming up: nothing to wait on but its line
    raise RuntimeError(f"the worker said nothing was warm within {timeout:.0f} s; see {worker_log}")


def run_breakdown(args, work: Path) -> dict:
    """The demo grid (or one job of ``--shape``) through a fresh queue; the per-stage breakdown of each job."""
    import statistics

    from core.demo import ensure_demo
    from core.grid import GridSpec
    from core.jobs import JobQueue
    from core.settings import Settings
    from core.worker import stop_worker

    settings = Settings.from_env()
    if args.shape == "tiny":
        models = tuple(str(p) for p in ensure_demo(settings).values())
        sets = ({"n_epochs": 1, "learning_rate": 5e-4, "train_batch_size": 8, "eval_batch_size": 64},)
        versions, baseline = ("train_sample.csv",), True
        data = settings.data_dir
    else:
        from core.demo import build_model

        models = (str(build_model(work / f"model-{args.shape}", **SHAPES[args.shape])),)
        write_data(work / "data" / "v1", args.examples, max(64, args.examples // 4), True, 0)
        sets = ({"n_epochs": 1, "max_steps": args.steps, "train_batch_size": args.batch, "eval_batch_size": 64,
                 "max_length": args.max_length},)
        versions, baseline, data = ("v1/train.csv",), False, work / "data"
    grid = GridSpec(base_name="Breakdown", data_src="Bench", dataset_versions=versions, hyperparameters=sets,
                    base_model_versions=models, output_dir=str(work / "out"), train_file=str(data / "{data_version}"),
                    validation_file=str(data / ("test.csv" if args.shape == "tiny" else "v1/eval.csv")),
                    evaluate_pretrained_model=baseline, user_id="bench")
    queue = JobQueue()
    if args.warm:
        wait_for_warm_worker(settings)
    start = time.perf_counter()
    jobs = queue.submit(grid)
    try:
        while not all(queue.get(j.run_id).status.is_terminal() for j in jobs):
            if time.perf_counter() - start > args.timeout:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    finally:
        stop_worker()
    rows = breakdown(queue, [j.run_id for j in jobs])
    columns = ["run", "status", "total", "train_runtime", "eval_runtime", *STAGES, "finishing", "overhead"]
    shown = [c for c in columns if any(c in r for r in rows)]
    print(" | ".join(shown))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in shown))
    overheads = [r["overhead"] for r in rows]
    summary = {"grid_seconds": round(seconds, 1), "jobs": rows, "median_overhead": statistics.median(overheads),
               "max_overhead": max(overheads)}
    print(f"{len(rows)} jobs in {seconds:.1f} s; overhead per job (start to end, less train_runtime and "
          f"eval_runtime): median {summary['median_overhead']:.2f} s, max {summary['max_overhead']:.2f} s")
    return summary


def run_eta(args) -> dict:
    """Compose's demo grid through a fresh queue; the ETA read after each finished job against the real end."""
    from core.demo import ensure_demo
    from core.grid import GridSpec
    from core.hyperparameter_sets import DEFAULT_SETS, sets_from_rows
    from core.jobs import JobQueue
    from core.settings import Settings
    from core.worker import stop_worker

    settings = Settings.from_env()
    models = tuple(str(p) for p in ensure_demo(settings).values())
    data = settings.data_dir
    grid = GridSpec(base_name="EtaBench", data_src="Bench", dataset_versions=("full_dataset.csv", "train_sample.csv"),
                    hyperparameters=tuple(sets_from_rows([dict(row) for row in DEFAULT_SETS])),
                    base_model_versions=models, output_dir=str(Path(settings.home) / "out"),
                    train_file=str(data / "{data_version}"), validation_file=str(data / "test.csv"),
                    evaluate_pretrained_model=True, user_id="bench")
    queue = JobQueue()
    start = time.time()
    jobs = queue.submit(grid)
    grid_id, readings, finished_seen = jobs[0].grid_id, [], -1
    try:
        while time.time() - start < args.timeout:
            listed = queue.jobs(grid_id=grid_id)
            finished = sum(j.status.is_terminal() for j in listed)
            if finished == len(listed):
                break
            if finished != finished_seen:  # the first reading after a job ended
                eta = queue.grid_etas(listed).get(grid_id)
                readings.append({"finished": finished, "at": time.time(), "ends_at": eta and eta.ends_at,
                                 "sentence": eta and eta.sentence()})
                finished_seen = finished
            time.sleep(1.0)
        end = time.time()
    finally:
        stop_worker()
    listed = queue.jobs(grid_id=grid_id)
    print(f"{len(listed)} jobs ({sum(j.status.value == 'FINISHED' for j in listed)} finished) in {end - start:.1f} s")
    rows = []
    for r in readings:
        left = end - r["at"]
        error = None if r["ends_at"] is None or left <= 0 else (r["ends_at"] - end) / left
        rows.append({"jobs_finished": r["finished"], "elapsed": round(r["at"] - start, 1),
                     "real_seconds_left": round(left, 1),
                     "eta_seconds_left": None if r["ends_at"] is None else round(r["ends_at"] - r["at"], 1),
                     "error_share_of_time_left": None if error is None else round(error, 3)})
        shown = "unknown" if error is None else f"{error:+.0%} of the time left"
        print(f"after {r['finished']} jobs ({r['at'] - start:.0f} s in): ETA {rows[-1]['eta_seconds_left']} s left, "
              f"really {left:.0f} s: {shown} ({r['sentence']})")
    return {"grid_seconds": round(end - start, 1), "readings": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--examples", type=int, default=256, help="training examples per dataset version")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=1800, help="give up waiting on the queue after this")
    parser.add_argument("--json", help="also write the figures to this file (after each side)")
    parser.add_argument("--breakdown", action="store_true", help="the per-stage breakdown of a grid's jobs")
    parser.add_argument("--warm", action="store_true",
                        help="--breakdown: start the worker and let its spare warm up before submitting")
    parser.add_argument("--eta", action="store_true", help="Compose's demo grid: its ETA against the real end")
    parser.add_argument("--steps", type=int, default=2, help="--breakdown --shape: training steps of the job")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cut off by a time limit: still stop the worker
    work = Path(tempfile.mkdtemp(prefix="tuneboard-grid-bench-"))
    os.environ.update(TUNEBOARD_HOME=str(work / "home"), TUNEBOARD_DATA_ROOTS=str(work),
                      TUNEBOARD_MODEL_ROOTS=str(work))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import torch

    from core.demo import build_model

    if args.breakdown or args.eta:
        os.environ["TUNEBOARD_DATA_DIR"] = str(work / "demo-data")  # the demo data, written there by ensure_demo
        summary = run_eta(args) if args.eta else run_breakdown(args, work)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))
        return
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
