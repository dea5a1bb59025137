"""Our pipeline against a plain HF Trainer script: the same fine-tune, one process, one ratio.

    python bench/bench_pipeline.py                 # tiny demo model on CPU (the README's CPU figure)
    python bench/bench_pipeline.py --shape base    # DeBERTa-v3-base shape, 32-256 token mix (GPU)

Both sides train the same randomly initialised model on the same examples with
the same hyperparameters, precision and optimizer (bf16 and fused AdamW on
CUDA, fp32 on CPU), dynamic padding, one evaluation per epoch and a final
prediction. The pipeline side also reads and checks the files, logs every
step to MLflow (SQLite) and logs the model; the plain side does none of that.
Sides alternate (plain, pipeline, plain, pipeline...) and the best of each is
reported. The ratio is pipeline train samples/s over plain train samples/s:
1.0 or more means the pipeline's training loop is at least as fast.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHAPES = {
    "tiny": {"kind": "bert"},
    "base": {"kind": "deberta-v2", "hidden": 768, "layers": 12, "heads": 12, "model_vocab_size": 128100,
             "max_positions": 512},
    "large": {"kind": "deberta-v2", "hidden": 1024, "layers": 24, "heads": 16, "model_vocab_size": 128100,
              "max_positions": 512},
}


def write_data(folder: Path, n_train: int, n_eval: int, long: bool, version: int = 0) -> tuple[Path, Path]:
    """Demo pairs; with ``long``, premises of several snippets (a 32-256 token mix); ``version``: other rows."""
    import csv

    from core.demo import make_examples

    rng = random.Random(version)
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.csv", n_train, 1 + 2 * version), ("eval.csv", n_eval, 2 + 2 * version)):
        rows = make_examples(n, seed)
        if long:
            pool = [r["premise"] for r in rows]
            for row in rows:
                row["premise"] = " ".join([row["premise"], *rng.sample(pool, rng.randint(0, 10))])
        path = folder / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths[0], paths[1]


def plain_trainer(model_path: str, train: Path, evaluation: Path, params: dict, out: str, seed: int = 42,
                  save: bool = False) -> dict:
    """What a plain Trainer script does: read, tokenize, train, evaluate, predict (``save``: and save the model).

    Its only addition is a host-clock callback measuring steady throughput (no device sync per step)."""
    import pandas as pd
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path)
    label2id = model.config.label2id

    def encode(path: Path) -> Dataset:
        frame = pd.read_csv(path)
        enc = tokenizer(list(frame["premise"]), list(frame["hypothesis"]), truncation=True,
                        max_length=params["max_length"])
        enc["labels"] = [label2id[x] for x in frame["label"]]
        return Dataset.from_dict(dict(enc))

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=out, num_train_epochs=params["num_train_epochs"], learning_rate=params["learning_rate"],
        per_device_train_batch_size=params["per_device_train_batch_size"],
        per_device_eval_batch_size=params["per_device_eval_batch_size"], eval_strategy="epoch",
        save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=params["logging_steps"],
        bf16=cuda and torch.cuda.is_bf16_supported(), optim="adamw_torch_fused" if cuda else "adamw_torch",
        dataloader_pin_memory=cuda, seed=seed,
        **{k: params[k] for k in ("weight_decay", "warmup_ratio") if k in params})
    from core.speed import CostCallback

    cost = CostCallback()
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), eval_dataset=encode(evaluation),
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if cuda else None),
                      processing_class=tokenizer,
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
                      callbacks=[cost])
    result = trainer.train()
    predicted = trainer.predict(trainer.eval_dataset)
    if save:
        trainer.save_model(out)
    return {"train_samples_per_second": result.metrics["train_samples_per_second"],
            "train_runtime": result.metrics["train_runtime"], "wall_seconds": time.perf_counter() - start,
            "steady_samples_per_second": cost.figures.get("train_samples_per_second_steady"),
            "gpu_memory_peak_mb": cost.figures.get("gpu_memory_peak_mb"), "seed": seed,
            "accuracy": predicted.metrics.get("test_accuracy"),
            "loss_curve": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h]}


def pipeline(model_path: str, train: Path, evaluation: Path, params: dict, out: str, index: int,
             compile_mode: str | None = None) -> dict:
    """Our pipeline; ``compile_mode`` sets TUNEBOARD_COMPILE for this run (None: as the environment says)."""
    import torch
    from mlflow.tracking import MlflowClient

    from core.grid import RunSpec
    from core.training import run as training

    if compile_mode is not None:
        os.environ["TUNEBOARD_COMPILE"] = compile_mode
    torch._dynamo.reset()  # each variant compiles afresh in memory (the inductor's disk cache stays)
    start = time.perf_counter()
    spec = RunSpec(kind="fine_tune", experiment_name="/Users/bench/pipeline_bench", run_name=f"bench_{index}",
                   base_model=model_path, validation_path=str(evaluation), output_dir=out,
                   hyperparameters=params, dataset_version=train.name, train_path=str(train), param_set=1)
    result = training.execute(spec)
    if result.status != "FINISHED":
        raise SystemExit(f"pipeline run failed: {result.error}")
    client = MlflowClient()
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    return {"train_samples_per_second": metrics["train_samples_per_second"],
            "train_runtime": metrics["train_runtime"], "wall_seconds": time.perf_counter() - start,
            "steady_samples_per_second": metrics.get("train_samples_per_second_steady"),
            "gpu_memory_peak_mb": metrics.get("gpu_memory_peak_mb"), "gpu_seconds": metrics.get("gpu_seconds"),
            "variant": compile_mode or os.environ.get("TUNEBOARD_COMPILE", "auto"),
            "compile": run.data.tags.get("compile"), "bucket_edges": run.data.tags.get("bucket_edges"),
            "accuracy": metrics.get("accuracy"),
            "loss_curve": [[m.step, m.value] for m in client.get_metric_history(result.run_id, "loss")]}


def spread(results: dict[str, list[dict]]) -> dict:
    """Is each pipeline run's loss curve and accuracy within what two seeds of the plain Trainer differ by?"""
    plain = results["plain"]
    if len(plain) < 2:
        return {}

    def gap(a: list, b: list) -> float:
        pairs = list(zip([v for _, v in a], [v for _, v in b], strict=False))
        return sum(abs(x - y) for x, y in pairs) / max(1, len(pairs))

    seeds_gap = gap(plain[0]["loss_curve"], plain[1]["loss_curve"])
    accuracies = [p["accuracy"] for p in plain if p["accuracy"] is not None]
    out = {"plain_seed_loss_gap": round(seeds_gap, 4), "plain_accuracies": accuracies}
    for run in results["pipeline"]:
        mine = gap(run["loss_curve"], plain[0]["loss_curve"])
        within_acc = run["accuracy"] is not None and min(accuracies) - 0.01 <= run["accuracy"] <= max(accuracies) + 0.01
        out[run["variant"]] = {"loss_gap_to_same_seed": round(mine, 4), "loss_within_spread": mine <= seeds_gap,
                               "accuracy": run["accuracy"], "accuracy_within_spread": within_acc}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--examples", type=int, default=1600)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file (rewritten after every run)")
    parser.add_argument("--seeds", type=int, default=1, help="plain Trainer runs per repeat, seeds 42, 43, ...")
    parser.add_argument("--variants", default="",
                        help="comma-separated TUNEBOARD_COMPILE values, one pipeline run each (default: the env's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    os.environ["TUNEBOARD_HOME"] = str(work / "home")
    os.environ["TUNEBOARD_DATA_ROOTS"] = os.environ["TUNEBOARD_MODEL_ROOTS"] = str(work)  # the bench's own files
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import torch

    from core.demo import build_model

    model_path = str(build_model(work / f"model-{args.shape}", **SHAPES[args.shape]))
    train, evaluation = write_data(work, args.examples, max(64, args.examples // 4), long=args.shape != "tiny")
    steps = -(-args.examples // args.batch)
    params = {"num_train_epochs": args.epochs, "learning_rate": 5e-4 if args.shape == "tiny" else 3e-5,
              "weight_decay": 0.01, "per_device_train_batch_size": args.batch, "per_device_eval_batch_size": 64,
              "max_length": args.max_length, "logging_steps": max(1, min(50, steps // 4))}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"shape {args.shape} on {device}; {args.examples} examples x {args.epochs} epochs, batch {args.batch}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] or [None]
    results: dict[str, list[dict]] = {"plain": [], "pipeline": []}
    summary: dict = {}

    def report() -> None:
        best = {k: max(v, key=lambda r: r["train_samples_per_second"]) for k, v in results.items() if v}
        if len(best) < 2:
            return
        ratio = best["pipeline"]["train_samples_per_second"] / best["plain"]["train_samples_per_second"]
        summary.update({
            "shape": args.shape, "device": device, "examples": args.examples, "epochs": args.epochs,
            "batch": args.batch, "plain_samples_per_s": round(best["plain"]["train_samples_per_second"], 1),
            "pipeline_samples_per_s": round(best["pipeline"]["train_samples_per_second"], 1),
            "ratio": round(ratio, 3), "plain_wall_s": round(best["plain"]["wall_seconds"], 1),
            "pipeline_wall_s": round(best["pipeline"]["wall_seconds"], 1)})
        plain_steady = max((r["steady_samples_per_second"] or 0) for r in results["plain"])
        if plain_steady:
            summary["variants"] = {
                r["variant"]: {"samples_per_s": round(r["train_samples_per_second"], 1),
                               "steady_samples_per_s": r["steady_samples_per_second"],
                               "steady_ratio": round((r["steady_samples_per_second"] or 0) / plain_steady, 3),
                               "ratio": round(r["train_samples_per_second"]
                                              / best["plain"]["train_samples_per_second"], 3),
                               "compile": r["compile"], "wall_s": round(r["wall_seconds"], 1)}
                for r in results["pipeline"]}
            summary["plain_steady_samples_per_s"] = plain_steady
        summary["spread"] = spread(results)
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))

    for i in range(args.repeats):
        for seed in range(42, 42 + args.seeds):
            results["plain"].append(plain_trainer(model_path, train, evaluation, params,
                                                  str(work / f"plain{i}-{seed}"), seed))
            shown = {k: v for k, v in results["plain"][-1].items() if k != "loss_curve"}
            print(f"  plain Trainer  #{i + 1} seed {seed}: {shown}", flush=True)
            report()
        for variant in variants:
            try:
                results["pipeline"].append(pipeline(model_path, train, evaluation, params,
                                                    str(work / f"pipe{i}-{variant}"), len(results["pipeline"]),
                                                    variant))
            except BaseException as exc:  # noqa: BLE001 - one failing variant must not hide the others' figures
                print(f"  our pipeline   #{i + 1} {variant}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            shown = {k: v for k, v in results["pipeline"][-1].items() if k != "loss_curve"}
            print(f"  our pipeline   #{i + 1} {variant or ''}: {shown}", flush=True)
            report()
    report()
    print(json.dumps({k: v for k, v in summary.items()}))
    if "ratio" in summary:
        print(f"pipeline / plain training throughput: {summary['ratio']:.2f}x "
              f"(end to end {summary['pipeline_wall_s']} s vs {summary['plain_wall_s']} s; "
              "the pipeline's extra time is checking data and logging the model)")


if __name__ == "__main__":
    main()
