"""Where a run's time goes (issue 21): each stage recorded as a metric, and the final evaluation done once.

Real training of the demo BERT on a real MLflow store; the reused evaluation is checked against a fresh
``Trainer.predict`` of the saved model, which is what the run did before.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA

from core.grid import RunSpec

pytestmark = pytest.mark.slow


def spec(tmp_path, bert_model: str, **hyper) -> RunSpec:
    return RunSpec(kind="fine_tune", experiment_name="/Users/t/Stages", run_name="stages", base_model=bert_model,
                   validation_path=str(DATA / "test.csv"), output_dir=str(tmp_path / "out"),
                   hyperparameters={"num_train_epochs": 1, "max_steps": 6, "learning_rate": 1e-3,
                                    "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                                    "max_length": 64, **hyper},
                   dataset_version="train_sample.csv", train_path=str(DATA / "train_sample.csv"), param_set=1)


def test_a_run_records_where_its_time_went_and_evaluates_its_final_weights_once(store, tmp_path, bert_model):
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from core import speed
    from core.data import load_examples
    from core.examples import read_predictions
    from core.examples.table import SCORE_PREFIX
    from core.metrics import classification_metrics, softmax
    from core.models.windows import Reading
    from core.training import bags
    from core.training.check import read_inputs
    from core.training.run import execute

    run_spec = spec(tmp_path, bert_model)
    result = execute(run_spec)
    assert result.status == "FINISHED", result.error
    client = MlflowClient()
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    for stage in ("reading_data", "loading_model", "tokenizing", "training", "evaluating", "saving_model",
                  "logging_model"):
        assert metrics[f"stage_{stage}_seconds"] >= 0, stage
    assert metrics["stage_training_seconds"] >= metrics["train_runtime"]
    # one evaluation of the final weights: the last epoch's, at the step training ended
    assert run.data.tags["final_evaluation"] == "the last epoch's evaluation (the same weights)"
    assert [m.step for m in client.get_metric_history(result.run_id, "eval_runtime")] == [6]

    # what the run did before: a prediction of the saved (final) model on the validation file
    mapping = read_inputs(run_spec).mapping
    model = AutoModelForSequenceClassification.from_pretrained(run_spec.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_spec.output_dir)
    validation = load_examples(DATA / "test.csv")
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "scratch"), report_to="none",
                                                          per_device_eval_batch_size=64, disable_tqdm=True),
                      data_collator=speed.BucketCollator(tokenizer, [], None))
    read = bags.encode(validation, tokenizer, mapping, bags.room(tokenizer, 64, validation), Reading(64))
    output = trainer.predict(bags.Rows(read))  # the validation file as the run reads it: each text whole
    probs = read.probabilities(softmax(output.predictions))
    table = read_predictions(client, result.run_id)
    columns = [SCORE_PREFIX + mapping.id2label[i] for i in range(probs.shape[1])]
    assert np.abs(table[columns].to_numpy() - probs).max() < 1e-5
    assert list(table["predicted_label"]) == [mapping.id2label[i] for i in probs.argmax(axis=1)]
    expected, _ = classification_metrics(read.labels, probs, mapping.id2label)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name


def test_a_baseline_records_its_evaluation_time(store, tmp_path, bert_model):
    from mlflow.tracking import MlflowClient

    from core.training.run import execute

    baseline = RunSpec(kind="baseline", experiment_name="/Users/t/Stages", run_name="base", base_model=bert_model,
                       validation_path=str(DATA / "test.csv"), output_dir=str(tmp_path / "out"),
                       hyperparameters={"per_device_eval_batch_size": 64, "max_length": 64})
    result = execute(baseline)
    assert result.status == "FINISHED", result.error
    run = MlflowClient().get_run(result.run_id)
    assert run.data.metrics["eval_runtime"] > 0 and run.data.tags["final_evaluation"] == "evaluated after training"
    assert "stage_training_seconds" not in run.data.metrics and run.data.metrics["stage_evaluating_seconds"] > 0
