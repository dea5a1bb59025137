"""The seed document's example, run unchanged but for paths, on a real SQLite MLflow store.

One module-scoped run of the full example (2 demo models x 2 dataset versions
x the seed's 2 hyperparameter sets, baselines first) feeds every test here.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest
from conftest import DATA, copy_data, use_store

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("seed_run")]  # one worker builds its fixture

SEED_USER = "santhosh.kumar3@voya.com"
MODEL_NAME = "Topic_Modeling_Consumer_Topic"


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory, demo_models):
    from core.experiment_manager import ExperimentManager

    tmp = tmp_path_factory.mktemp("seed")
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, tmp / "home")
        before = _dt.date.today()  # the name takes the day it was made: a run across midnight sees two days
        # --- the seed's example, paths swapped for the demo's ---
        experiment_manager = ExperimentManager(
            base_name="Mass_ConsumerTopic_FineTune_DeBERTa_v3",
            data_src="CallTranscript",
            dataset_versions=["full_dataset.csv", "train_sample.csv"],
            hyperparameters=[
                {"n_epochs": 5, "learning_rate": 2e-5, "weight_decay": 0.01, "train_batch_size": 16,
                 "eval_batch_size": 16},
                {"n_epochs": 8, "learning_rate": 3e-5, "weight_decay": 0.02, "train_batch_size": 24,
                 "eval_batch_size": 24},
            ],
            base_model_versions=[str(demo_models["demo-bert-tiny"]), str(demo_models["demo-deberta-v2-tiny"])],
            output_dir=str(tmp / "trained_models"),
            train_file=str(DATA / "{data_version}"),
            validation_file=str(DATA / "test.csv"),
            evalute_pretrained_model=True,
            user_id=SEED_USER,
        )
        summary = experiment_manager.run_experiments()
        # ---
        experiment_manager.made_on = {before, _dt.date.today()}
        yield experiment_manager, summary, tmp, mp


def _runs(name: str):
    from core import runs

    client = runs.client()
    experiment = runs.get_experiment(client, name)
    return client, {r.info.run_name: r for r in runs.search_all(client, [experiment.experiment_id])}


def test_names_follow_the_seed(seed_run):
    manager, summary, _, _ = seed_run
    assert manager.experiment_name in {
        f"/Users/{SEED_USER}/Mass_ConsumerTopic_FineTune_DeBERTa_v3_CallTranscript_{day.strftime('%Y%m%d')}"
        for day in manager.made_on}
    _, runs = _runs(manager.experiment_name)
    expected = {f"{m}_{d}_param_set{i}" for m in ("demo-bert-tiny", "demo-deberta-v2-tiny")
                for d in ("full_dataset", "train_sample") for i in (1, 2)}
    assert expected | {"demo-bert-tiny_pretrained_baseline", "demo-deberta-v2-tiny_pretrained_baseline"} == set(runs)
    assert [r.status for r in summary.results] == ["FINISHED"] * 10
    # baselines are evaluated first
    assert [r.run_name for r in summary.results[:2]] == ["demo-bert-tiny_pretrained_baseline",
                                                         "demo-deberta-v2-tiny_pretrained_baseline"]


def test_a_fine_tune_logs_everything(seed_run):
    manager, _, tmp, _ = seed_run
    client, runs = _runs(manager.experiment_name)
    run = runs["demo-deberta-v2-tiny_full_dataset_param_set2"]
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["num_train_epochs"] == "8" and params["learning_rate"] == "3e-05"
    assert params["weight_decay"] == "0.02" and params["per_device_train_batch_size"] == "24"
    assert params["per_device_eval_batch_size"] == "24"
    assert params["base_model"].endswith("demo-deberta-v2-tiny")
    assert params["train_file"].endswith("full_dataset.csv") and len(params["dataset_digest"]) == 16
    assert tags["base_model_name"] == "demo-deberta-v2-tiny" and tags["dataset_name"] == "full_dataset"
    assert tags["param_set"] == "param_set2" and tags["run_type"] == "fine_tune"
    assert tags["metric_average"] == "binary" and tags["positive_label"] == "entailment"
    for name in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        assert 0.0 <= metrics[name] <= 1.0
    # loss and learning rate per logging step, eval metrics once per epoch
    assert len(client.get_metric_history(run.info.run_id, "loss")) > 5
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) > 5
    assert len(client.get_metric_history(run.info.run_id, "eval_accuracy")) == 8
    # the dataset versions are logged as inputs with their digests
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert inputs["training"].name == "full_dataset" and inputs["validation"].name == "test"
    assert inputs["training"].digest == params["dataset_digest"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.json", "roc_curve.json", "run_spec.json"} <= artifacts
    matrix = json.loads(Path(client.download_artifacts(run.info.run_id, "confusion_matrix.json", str(tmp))).read_text())
    assert matrix["labels"] == ["entailment", "not_entailment"] and sum(map(sum, matrix["matrix"])) == 400
    # the model is logged to MLflow and saved under output_dir
    assert tags["model_uri"].startswith("models:/")
    assert (Path(tags["output_dir"]) / "config.json").is_file()
    assert Path(tags["output_dir"]).is_relative_to(tmp / "trained_models")


def test_baselines_are_tagged_and_hold_no_model(seed_run):
    manager, _, _, _ = seed_run
    _, runs = _runs(manager.experiment_name)
    baseline = runs["demo-bert-tiny_pretrained_baseline"]
    assert baseline.data.tags["run_type"] == "baseline"
    assert "model_uri" not in baseline.data.tags and "accuracy" in baseline.data.metrics
    assert baseline.data.params["keeps_pretrained_head"] == "True"  # the NLI head and labels line up


def test_model_selector_as_in_the_seed(seed_run):
    from core.registry.model_selector import ModelSelector

    manager, _, _, _ = seed_run
    selector = ModelSelector(experiment_name=manager.experiment_name, metric="accuracy")
    best_run = selector.get_best_model()
    assert best_run.data.tags["run_type"] == "fine_tune"
    _, runs = _runs(manager.experiment_name)
    fine_tunes = [r for r in runs.values() if r.data.tags["run_type"] == "fine_tune"]
    assert best_run.data.metrics["accuracy"] == max(r.data.metrics["accuracy"] for r in fine_tunes)
    by_model = selector.get_best_models_by_tag("base_model_name")
    assert set(by_model) == {"demo-bert-tiny", "demo-deberta-v2-tiny"}
    assert by_model["demo-bert-tiny"].data.tags["base_model_name"] == "demo-bert-tiny"
    by_lr = selector.get_best_models_by_param("learning_rate")
    assert set(by_lr) == {"2e-05", "3e-05"}
    # a loss is minimised
    lowest = ModelSelector(manager.experiment_name, metric="eval_loss").get_best_model()
    assert lowest.data.metrics["eval_loss"] == min(r.data.metrics["eval_loss"] for r in fine_tunes)


def test_transition_registers_promotes_and_rolls_back(seed_run):
    import mlflow

    from core.registry.model_selector import ModelSelector
    from core.registry.model_transition import ModelTransition

    manager, _, _, _ = seed_run
    transitioner = ModelTransition(model_name=MODEL_NAME)
    first = transitioner.transition_model(stage="Production", experiment_name=manager.experiment_name,
                                          metric="accuracy")
    assert str(first.version) == "1" and first.current_stage == "Production" and "production" in first.aliases
    assert first.tags["replaced_version"] == "none" and first.tags["promoted_by"] == "tester"
    best = ModelSelector(manager.experiment_name, "accuracy").get_best_model()
    assert first.tags["source_run_id"] == best.info.run_id
    assert "metric.accuracy" in first.tags

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@production")
    prediction = model.predict([{"text": "hi, I can't log in to my account.", "text_pair": "This call is about fees."}])
    assert list(prediction.columns) == ["label", "score"] and prediction["label"][0] in ("entailment", "not_entailment")

    # promote another run's model over it: the first is archived, the audit trail tells the story
    _, runs = _runs(manager.experiment_name)
    other = transitioner.register_run(runs["demo-bert-tiny_train_sample_param_set1"])
    second = transitioner.transition_model(stage="Production", version=other.version, reason="A/B winner",
                                           user="alice")
    assert str(second.version) == "2" and second.tags["replaced_version"] == "1"
    assert transitioner.client.get_model_version(MODEL_NAME, "1").current_stage == "Archived"
    back = transitioner.rollback("Production", user="bob")
    assert str(back.version) == "1" and str(transitioner.current("Production").version) == "1"
    trail = transitioner.audit_trail()
    assert [(e.action, e.version, e.replaced, e.user) for e in trail] == [
        ("promote", "1", None, "tester"), ("promote", "2", "1", "alice"), ("rollback", "1", "2", "bob")]
    assert "A/B winner" in trail[1].as_text


def test_a_failing_run_ends_failed_and_the_rest_go_on(store, bert_model, tmp_path):
    """A dataset that breaks after the up-front checks fails its run only."""

    from core import runs as runs_mod
    from core.experiment_manager import ExperimentManager

    copy_data(tmp_path)
    manager = ExperimentManager(
        base_name="Failing", data_src="Demo", dataset_versions=["train_sample.csv", "full_dataset.csv"],
        hyperparameters=[{"n_epochs": 1, "max_steps": 3}], base_model_versions=[bert_model],
        output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
        validation_file=str(tmp_path / "test.csv"), evalute_pretrained_model=False, user_id="tester")

    def break_second_file(message: str) -> None:
        if message.startswith("[1/2]") and message.endswith("training"):
            (tmp_path / "full_dataset.csv").write_text("premise,hypothesis\na,b\n", encoding="utf-8")

    summary = manager.run_experiments(on_progress=break_second_file)
    assert [r.status for r in summary.results] == ["FINISHED", "FAILED"]
    assert "full_dataset.csv" in summary.failed[0].error and "label" in summary.failed[0].error
    assert "1 run(s) finished, 1 failed" in str(summary)
    client = runs_mod.client()
    failed = client.get_run(summary.failed[0].run_id)
    assert failed.info.status == "FAILED" and "full_dataset.csv" in failed.data.tags["error"]
