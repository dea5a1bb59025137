"""Runs logged by other tools: a store filled by a team's own HF Trainer script, selected, compared and promoted.

The store is built once for the module by ``tests/foreign_trainer_script.py`` run as a subprocess, exactly
as a team runs its own script (nothing from this repository inside it):

- ``team-hf-trainer``: three runs (learning rates 3e-3, 1e-3, 3e-4) with ``report_to="mlflow"``, eval each
  epoch, ``trainer.evaluate()`` and ``mlflow.transformers.log_model(name="model")`` (MLflow 3: a LoggedModel
  linked to the run). ``HF_MLFLOW_LOG_ARTIFACTS=1`` makes the callback log every saved checkpoint as a
  ``checkpoint-N`` logged model too, as teams with that setting get. Plus one plain MLflow run with the best
  ``eval_accuracy`` of all and no model (a notebook's evaluation);
- ``team-mlflow2``: one run whose model was saved with ``mlflow.transformers.save_model`` and logged with
  ``mlflow.log_artifacts(folder, "model")`` (MLflow 2 style: an MLmodel under the run's artifacts, no link).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DATA, ROOT, child_env, use_store
from test_pages import app, texts  # the same AppTest helpers the other page tests use

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("foreign_store")]  # one worker builds its fixture

SCRIPT = ROOT / "tests" / "foreign_trainer_script.py"
HF = "team-hf-trainer"
LEGACY = "team-mlflow2"
NOTEBOOK = "notebook-eval"


def _script(tmp, uri: str, experiment: str, *args: str, **env: str) -> None:
    # cwd=tmp: with a SQLite store and no artifact root, MLflow puts artifacts in ./mlruns, as it would for the team
    done = subprocess.run([sys.executable, str(SCRIPT), "--train", str(DATA / "train_sample.csv"),
                           "--validation", str(DATA / "test.csv"), "--output-dir", str(tmp / "out"), *args],
                          cwd=tmp, env=child_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment,
                                                 OMP_NUM_THREADS="1", **env),
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, bert_model):
    """(settings, tmp): the store described above, and the library pointed at it."""
    from mlflow import MlflowClient

    from core.worker import stop_worker

    tmp = tmp_path_factory.mktemp("foreign")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp / "home")
        settings.home.mkdir(parents=True)
        uri = settings.tracking_uri
        _script(tmp, uri, HF, "--model", bert_model, "--learning-rates", "3e-3", "1e-3", "3e-4",
                "--save-checkpoints", HF_MLFLOW_LOG_ARTIFACTS="1")
        _script(tmp, uri, LEGACY, "--model", bert_model, "--learning-rates", "2e-3", "--style", "artifacts")
        client = MlflowClient(uri)
        run = client.create_run(client.get_experiment_by_name(HF).experiment_id, run_name=NOTEBOOK)
        for key, value in {"eval_accuracy": 0.99, "eval_f1": 0.99, "eval_loss": 0.01}.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        yield settings, tmp
        stop_worker(settings)


def _runs(experiment: str) -> dict:
    from core import runs as runs_mod

    client = runs_mod.client()
    exp = runs_mod.get_experiment(client, experiment)
    return {r.info.run_name: r for r in runs_mod.search_all(client, [exp.experiment_id])}


def _best_of(runs, metric: str):
    """The expected winner, straight from MLflow: highest value, ties to the earliest start."""
    return min(runs, key=lambda r: (-r.data.metrics[metric], r.info.start_time))


# -- what the team's script leaves in MLflow (the HF callback in transformers 5.x) -----------------------------

def test_the_hf_callback_logs_eval_metrics_and_every_training_argument(foreign):
    runs = _runs(HF)
    assert set(runs) == {"hf-lr-0.003", "hf-lr-0.001", "hf-lr-0.0003", NOTEBOOK}
    for name in ("hf-lr-0.003", "hf-lr-0.001", "hf-lr-0.0003"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert len(run.data.params) > 120  # TrainingArguments.to_dict() merged with the model's config
        assert {"learning_rate", "_name_or_path", "num_train_epochs", "output_dir"} <= set(run.data.params)
        assert {"eval_accuracy", "eval_f1", "eval_loss", "epoch", "loss", "train_runtime"} <= set(run.data.metrics)
        assert "accuracy" not in run.data.metrics and "run_type" not in run.data.tags
        # the final model and one checkpoint-N model per epoch, all linked as the run's outputs
        assert len(run.outputs.model_outputs) == 3
    legacy = _runs(LEGACY)["hf-lr-0.002"]
    assert not legacy.outputs.model_outputs


def test_find_models_follows_mlflow_links_and_skips_checkpoints(foreign):
    from mlflow import MlflowClient

    from core import runs as runs_mod

    settings, _ = foreign
    client = runs_mod.client()
    runs = {**_runs(HF), **_runs(LEGACY)}
    found = runs_mod.find_models(client, list(runs.values()))
    assert NOTEBOOK not in found
    legacy_id = runs["hf-lr-0.002"].info.run_id
    assert found[legacy_id] == f"runs:/{legacy_id}/model"
    for name in ("hf-lr-0.003", "hf-lr-0.001", "hf-lr-0.0003"):
        model = MlflowClient(settings.tracking_uri).get_logged_model(found[runs[name].info.run_id].split("/")[-1])
        assert model.name == "model" and model.source_run_id == runs[name].info.run_id


# -- the API ---------------------------------------------------------------------------------------------------

def test_model_selector_reads_eval_accuracy_and_passes_over_a_run_without_a_model(foreign):
    from core.registry.model_selector import ModelSelector

    runs = _runs(HF)
    with_models = [r for name, r in runs.items() if name != NOTEBOOK]
    selector = ModelSelector(experiment_name=HF, metric="accuracy")
    # the seed's get_best_model is the best run by the metric, model or not (issue 20); promotion passes over it
    assert selector.get_best_model().info.run_name == NOTEBOOK
    best = selector.get_best_promotable()
    assert best.info.run_id == _best_of(with_models, "eval_accuracy").info.run_id
    assert selector.metric_label == "accuracy (read as eval_accuracy, as the HF Trainer logs it)"
    assert selector.model_uri(best).startswith("models:/m-")
    assert [r.info.run_name for r in selector.better_without_model(best)] == [NOTEBOOK]
    assert len(selector.candidates()) == 3
    by_lr = selector.get_best_models_by_param("learning_rate")
    assert set(by_lr) == {"0.003", "0.001", "0.0003"}
    f1 = ModelSelector(HF, "f1").get_best_promotable()
    assert f1.info.run_id == _best_of(with_models, "eval_f1").info.run_id


def test_transition_model_promotes_the_best_foreign_run(foreign):
    import mlflow

    from core.registry.model_transition import ModelTransition

    runs = _runs(HF)
    best = _best_of([r for name, r in runs.items() if name != NOTEBOOK], "eval_accuracy")
    transition = ModelTransition("Team_HF_Model")
    version = transition.transition_model(stage="Production", experiment_name=HF, metric="accuracy")
    assert version.run_id == best.info.run_id and version.current_stage == "Production"
    assert version.tags["metric.accuracy"] == f"{best.data.metrics['eval_accuracy']:.6g}"
    assert version.tags["metrics_read_as"].startswith("accuracy <- eval_accuracy, f1 <- eval_f1")
    assert "read as eval_accuracy" in transition.audit_trail()[-1].reason
    model = mlflow.pyfunc.load_model("models:/Team_HF_Model@production")
    assert model.predict(["hi, I can't log in to my account."])["label"][0] in ("entailment", "not_entailment")


def test_an_mlflow2_style_run_is_registered_and_its_version_loads(foreign):
    import mlflow

    from core.registry.model_transition import ModelTransition

    legacy = _runs(LEGACY)["hf-lr-0.002"]
    version = ModelTransition("Team_Legacy_Model").transition_model("Production", LEGACY, "accuracy")
    assert version.run_id == legacy.info.run_id
    assert version.source.endswith(f"{legacy.info.run_id}/artifacts/model")
    model = mlflow.pyfunc.load_model(f"models:/Team_Legacy_Model/{version.version}")
    prediction = model.predict(["hi, I want to change my beneficiary."])
    assert list(prediction.columns) == ["label", "score"]
    assert prediction["label"][0] in ("entailment", "not_entailment")


def test_a_run_without_a_model_is_refused_with_the_reason(foreign):
    from mlflow import MlflowClient

    from core.errors import NotFoundError
    from core.registry.model_transition import ModelTransition

    settings, _ = foreign
    notebook = _runs(HF)[NOTEBOOK]
    with pytest.raises(NotFoundError, match="holds no model: MLflow links no logged model to it and its "
                                            "artifacts hold no MLmodel file.*mlflow.transformers.log_model"):
        ModelTransition("Never_Registered").register_run(MlflowClient(settings.tracking_uri).get_run(
            notebook.info.run_id))


# -- the pages -------------------------------------------------------------------------------------------------

def test_home_counts_finished_runs_holding_a_model(foreign):
    at = app()
    body = texts(at)
    assert "No finished fine-tune yet" not in body
    assert "4 finished runs hold a model that can be promoted" in body
    table = at.dataframe[0].value
    rows = {row["experiment"]: row for row in table.to_dict("records")}
    assert rows[HF]["finished runs holding a model"] == 3 and rows[LEGACY]["finished runs holding a model"] == 1
    assert rows[HF]["by"] == "eval_accuracy" and rows[HF]["best run"] != NOTEBOOK


def test_compare_opens_on_accuracy_grouped_by_what_varies(foreign):
    from core import runs as runs_mod

    at = app("pages/compare.py")
    at.multiselect(key="cmp_exps").set_value([runs_mod.client().get_experiment_by_name(HF).experiment_id]).run()
    assert not at.exception
    assert at.selectbox(key="cmp_metric").value == "eval_accuracy"
    assert at.selectbox(key="cmp_metric").options[:4] == ["eval_accuracy", "eval_f1", "eval_precision",
                                                         "eval_recall"]
    assert at.selectbox(key="cmp_group").value == "param: learning_rate"
    assert any(f"Best run overall by eval_accuracy: **{NOTEBOOK}**" in s.value for s in at.success)
    assert any(f"{NOTEBOOK}** cannot be promoted: MLflow links no logged model" in i.value for i in at.info)
    table = at.dataframe[-1].value
    assert dict(zip(table["run_name"], table["holds a model"], strict=True)) == {
        NOTEBOOK: False, "hf-lr-0.003": True, "hf-lr-0.001": True, "hf-lr-0.0003": True}


def test_registry_promotes_the_best_foreign_run(foreign):
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("+ a new name").run()
    at.text_input(key="r_new_name").set_value("Team_Page_Model").run()
    at.selectbox(key="r_experiment").set_value(HF).run()
    metric = at.selectbox(key="r_metric")
    assert metric.value == "eval_accuracy"
    assert metric.options[:2] == ["eval_accuracy", "eval_f1"] and "epoch" not in metric.options
    at.button(key="r_promote_best").click().run()
    body = texts(at)
    assert "Nothing is in production yet." in body
    assert f"**{NOTEBOOK}** (0.990)" in body and "They cannot be promoted: MLflow links no logged model" in body
    assert any(m.value.startswith("- Accuracy 0.") for m in at.markdown)  # eval_accuracy read as accuracy
    at.button(key="r_confirm_btn").click().run()
    assert any("Version 1 of Team_Page_Model is now in production." in s.value for s in at.success), texts(at)

    # the MLflow 2-style experiment through the same flow, with the legacy "accuracy" asked for by name
    at.selectbox(key="r_experiment").set_value(LEGACY).run()
    assert at.selectbox(key="r_metric").value == "eval_accuracy"
    at.button(key="r_promote_best").click().run()
    assert "Promoting replaces **version 1 now in production**" in texts(at)
    at.button(key="r_confirm_btn").click().run()
    assert any("is now in production" in s.value and "Version 2" in s.value for s in at.success), texts(at)
    versions = at.dataframe[0].value
    assert list(versions["aliases"]) == ["", "production"]
    assert versions["source run"].tolist() == [_best_of([r for n, r in _runs(HF).items() if n != NOTEBOOK],
                                                        "eval_accuracy").info.run_name, "hf-lr-0.002"]
