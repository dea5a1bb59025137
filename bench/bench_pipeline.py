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


def write_data(folder: Path, n_train: int, n_eval: int, long: bool) -> tuple[Path, Path]:
    """Demo pairs; with ``long``, premises of several snippets (a 32-256 token mix)."""
    import csv

    from core.demo import make_examples

    rng = random.Random(0)
    paths = []
    for name, n, seed in (("train.csv", n_train, 1), ("eval.csv", n_eval, 2)):
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


def plain_trainer(model_path: str, train: Path, evaluation: Path, params: dict, out: str) -> dict:
    """What a plain Trainer script does: read, tokenize, train, evaluate, predict."""
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
        dataloader_pin_memory=cuda)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), eval_dataset=encode(evaluation),
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if cuda else None),
                      processing_class=tokenizer,
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
    result = trainer.train()
    trainer.predict(trainer.eval_dataset)
    return {"train_samples_per_second": result.metrics["train_samples_per_second"],
            "train_runtime": result.metrics["train_runtime"], "wall_seconds": time.perf_counter() - start}


def pipeline(model_path: str, train: Path, evaluation: Path, params: dict, out: str, index: int) -> dict:
    from mlflow.tracking import MlflowClient

    from core import training
    from core.grid import RunSpec

    start = time.perf_counter()
    spec = RunSpec(kind="fine_tune", experiment_name="/Users/bench/pipeline_bench", run_name=f"bench_{index}",
                   base_model=model_path, validation_path=str(evaluation), output_dir=out,
                   hyperparameters=params, dataset_version=train.name, train_path=str(train), param_set=1)
    result = training.execute(spec)
    if result.status != "FINISHED":
        raise SystemExit(f"pipeline run failed: {result.error}")
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    return {"train_samples_per_second": metrics["train_samples_per_second"],
            "train_runtime": metrics["train_runtime"], "wall_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--examples", type=int, default=1600)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
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
    results: dict[str, list[dict]] = {"plain": [], "pipeline": []}
    for i in range(args.repeats):
        results["plain"].append(plain_trainer(model_path, train, evaluation, params, str(work / f"plain{i}")))
        print(f"  plain Trainer  #{i + 1}: {results['plain'][-1]}", flush=True)
        results["pipeline"].append(pipeline(model_path, train, evaluation, params, str(work / f"pipe{i}"), i))
        print(f"  our pipeline   #{i + 1}: {results['pipeline'][-1]}", flush=True)
    best = {k: max(v, key=lambda r: r["train_samples_per_second"]) for k, v in results.items()}
    ratio = best["pipeline"]["train_samples_per_second"] / best["plain"]["train_samples_per_second"]
    summary = {"shape": args.shape, "device": device, "examples": args.examples, "epochs": args.epochs,
               "batch": args.batch, "plain_samples_per_s": round(best["plain"]["train_samples_per_second"], 1),
               "pipeline_samples_per_s": round(best["pipeline"]["train_samples_per_second"], 1),
               "ratio": round(ratio, 3), "plain_wall_s": round(best["plain"]["wall_seconds"], 1),
               "pipeline_wall_s": round(best["pipeline"]["wall_seconds"], 1)}
    print(json.dumps(summary))
    print(f"pipeline / plain training throughput: {ratio:.2f}x "
          f"(end to end {summary['pipeline_wall_s']} s vs {summary['plain_wall_s']} s; "
          "the pipeline's extra time is checking data and logging the model)")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
