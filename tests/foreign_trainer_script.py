"""A team's own fine-tuning script, as it would be written without Tuneboard: the fixture for foreign runs.

It uses nothing from this repository: the plain HF Trainer with ``report_to="mlflow"`` (so the Trainer's
MLflow callback logs ~150 TrainingArguments and model-config params, ``loss`` / ``learning_rate`` /
``grad_norm`` per logging step and ``eval_*`` per epoch), ``trainer.evaluate()`` at the end, and the model
logged by MLflow itself:

- ``--style logged-model`` (MLflow 3): ``mlflow.transformers.log_model(name="model")`` in the run the
  callback logged into, which links a LoggedModel to the run as a model output;
- ``--style artifacts`` (MLflow 2): ``mlflow.transformers.save_model`` into a folder, then
  ``mlflow.log_artifacts(folder, "model")``: an ``MLmodel`` under the run's artifacts and no LoggedModel;
- ``--style after-run``: a plain ``trainer.train()`` (the callback opens and ends its own run) then
  ``mlflow.transformers.log_model(...)`` with no run open, as a new user writes it: a LoggedModel in the
  experiment linked to no run, logged seconds after the run ended;
- ``--style after-all``: the same, but every run trains first and the models are logged at the end (so
  several runs ended shortly before each model).

The tracking store and experiment come from ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME``, as
the callback reads them. One run per ``--learning-rates`` value.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile

import mlflow
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def read_rows(path: str, limit: int) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:limit]


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict], tokenizer, label2id: dict[str, int]):
        self.encodings = tokenizer([r["premise"] for r in rows], [r["hypothesis"] for r in rows],
                                   truncation=True, max_length=64)
        self.labels = [label2id[r["label"]] for r in rows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


def compute_metrics(prediction) -> dict[str, float]:
    """Accuracy and F1 of the positive class (id 0, "entailment"); the Trainer prefixes them with eval_."""
    predicted = np.argmax(prediction.predictions, axis=-1)
    labels = prediction.label_ids
    tp = float(np.sum((predicted == 0) & (labels == 0)))
    precision = tp / max(float(np.sum(predicted == 0)), 1.0)
    recall = tp / max(float(np.sum(labels == 0)), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(np.mean(predicted == labels)), "f1": f1, "precision": precision, "recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-4])
    parser.add_argument("--style", choices=("logged-model", "artifacts", "after-run", "after-all"),
                        default="logged-model")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--save-checkpoints", action="store_true",
                        help="save each epoch: with HF_MLFLOW_LOG_ARTIFACTS=1 the callback logs each checkpoint too")
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train_rows = read_rows(args.train, args.rows)
    eval_rows = read_rows(args.validation, args.rows // 2)
    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    later = []  # --style after-all: the models to log once every run has trained
    for lr in args.learning_rates:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(args.model)
        training_args = TrainingArguments(
            output_dir=os.path.join(args.output_dir, f"lr-{lr:g}"), report_to="mlflow", run_name=f"hf-lr-{lr:g}",
            learning_rate=lr, num_train_epochs=args.epochs, per_device_train_batch_size=16,
            per_device_eval_batch_size=32, eval_strategy="epoch", logging_steps=2,
            save_strategy="epoch" if args.save_checkpoints else "no",
            use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=training_args, data_collator=DataCollatorWithPadding(tokenizer),
                          train_dataset=PairDataset(train_rows, tokenizer, model.config.label2id),
                          eval_dataset=PairDataset(eval_rows, tokenizer, model.config.label2id),
                          compute_metrics=compute_metrics)
        components = {"model": trainer.model, "tokenizer": tokenizer}
        requirements = [f"transformers=={__import__('transformers').__version__}", "torch"]
        if args.style in ("after-run", "after-all"):
            trainer.train()  # no run open: the callback starts one and ends it when training ends
            if args.style == "after-run":
                mlflow.transformers.log_model(transformers_model=components, name="model",
                                              task="text-classification", pip_requirements=requirements)
            else:
                later.append(components)
            continue
        # One run for training, evaluation and the model: the callback logs into the active run and, since it
        # did not start it, leaves it open for evaluate() and log_model.
        with mlflow.start_run(run_name=training_args.run_name):
            trainer.train()
            trainer.evaluate()
            if args.style == "logged-model":
                mlflow.transformers.log_model(transformers_model=components, name="model",
                                              task="text-classification", pip_requirements=requirements)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    folder = os.path.join(tmp, "model")
                    mlflow.transformers.save_model(transformers_model=components, path=folder,
                                                   task="text-classification", pip_requirements=requirements)
                    mlflow.log_artifacts(folder, "model")
    for components in later:
        mlflow.transformers.log_model(transformers_model=components, name="model", task="text-classification",
                                      pip_requirements=[f"transformers=={__import__('transformers').__version__}",
                                                        "torch"])


if __name__ == "__main__":
    main()
