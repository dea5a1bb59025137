"""Models logged after their run ended (issue 20): a plain ``trainer.train()`` then ``mlflow.transformers.log_model``
script, with no ``with mlflow.start_run()``, leaves logged models linked to no run. One logged within 60 s after
exactly one run ended, with no other run ending or running in between, is taken as that run's, and says so; where two
runs ended within the window, nothing is guessed: promotion lists the unlinked models and how to promote one.

The store is written by ``tests/foreign_trainer_script.py`` run as a subprocess (nothing of this repository inside
it), on the local demo model, offline.
"""

from __future__ import annotations

import re

import pytest
from conftest import use_store
from test_foreign_runs import _script  # the same way the team's script is run
from test_pages import app, texts

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("plain_script_store")]  # one worker builds its fixture

PLAIN = "plain-script"  # three runs, each model logged right after its run ended
TOGETHER = "plain-script-together"  # two runs trained first, both models logged at the end


@pytest.fixture(scope="module")
def plain(tmp_path_factory, bert_model):
    """The settings of a store written by the plain script in both styles; the library pointed at it."""
    tmp = tmp_path_factory.mktemp("plain")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp / "home")
        settings.home.mkdir(parents=True)
        _script(tmp, settings.tracking_uri, PLAIN, "--model", bert_model, "--learning-rates", "5e-3", "1e-3",
                "3e-4", "--style", "after-run")
        _script(tmp, settings.tracking_uri, TOGETHER, "--model", bert_model, "--learning-rates", "5e-3", "1e-3",
                "--style", "after-all")
        yield settings


def _runs(experiment: str) -> dict:
    from core import runs as runs_mod

    client = runs_mod.client()
    return {r.info.run_name: r for r in runs_mod.search_all(
        client, [client.get_experiment_by_name(experiment).experiment_id])}


def test_the_plain_script_leaves_models_linked_to_no_run(plain):
    from mlflow import MlflowClient

    client = MlflowClient(plain.tracking_uri)
    for experiment, count in ((PLAIN, 3), (TOGETHER, 2)):
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        models = client.search_logged_models([experiment_id])
        assert len(models) == count and not any(m.source_run_id for m in models)
        assert all(r.info.status == "FINISHED" for r in _runs(experiment).values())


def test_a_model_logged_just_after_its_run_is_that_runs_and_is_promoted(plain):
    from core import runs as runs_mod
    from core.registry.model_selector import ModelSelector
    from core.registry.model_transition import ModelTransition

    runs = _runs(PLAIN)
    links: dict = {}
    found = runs_mod.find_models(runs_mod.client(), list(runs.values()), links=links)
    assert set(found) == {r.info.run_id for r in runs.values()}
    for run in runs.values():
        link = links[run.info.run_id]
        assert found[run.info.run_id] == f"models:/{link.model_id}"
        assert re.fullmatch(rf"linked by time: logged \d+ s after {re.escape(run.info.run_name)} ended", link.words)
        assert 0 <= link.seconds <= 60

    selector = ModelSelector(PLAIN, "accuracy")
    best = selector.get_best_model()  # the seed's answer: the best run by the metric
    best_value = max(r.data.metrics["eval_accuracy"] for r in runs.values())
    assert best.data.metrics["eval_accuracy"] == best_value
    version = ModelTransition("Plain_Model").transition_model("Production", PLAIN, "accuracy")
    assert version.current_stage == "Production" and version.source.startswith("models:/m-")
    # lineage in MLflow's own field (issue 28), not only in tags: the UI's "Source run" and run_id searches find it
    assert version.run_id == best.info.run_id == version.tags["source_run_id"]
    client = runs_mod.client()
    assert [v.version for v in client.search_model_versions(f"run_id = '{best.info.run_id}'")] == [version.version]
    assert version.tags["linked_by_time"].startswith("linked by time: logged ")
    assert version.tags["linked_by_time"].endswith(f" after {version.tags['source_run_name']} ended")
    assert "linked by time" in ModelTransition("Plain_Model").audit_trail()[-1].reason


def test_the_registry_page_says_the_link_and_promotes(plain):
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("+ a new name").run()
    at.text_input(key="r_new_name").set_value("Plain_Page_Model").run()
    at.selectbox(key="r_experiment").set_value(PLAIN).run()
    at.button(key="r_promote_best").click().run()
    body = texts(at)
    assert re.search(r"linked by time: logged \d+ s after hf\\?-lr\\?-0\.\d+ ended", body), body
    assert "Nothing is in production yet. It has no pretrained baseline to compare with either." in body
    assert "nothing in production to compare with" not in body
    at.button(key="r_confirm_btn").click().run()
    assert any("Version 1 of Plain\\_Page\\_Model is now in production." in s.value or
               "Version 1 of Plain_Page_Model is now in production." in s.value for s in at.success), texts(at)


def test_two_runs_ended_within_the_window_are_refused_with_the_unlinked_models(plain):
    from mlflow import MlflowClient

    from core.errors import NotFoundError
    from core.registry.model_selector import ModelSelector
    from core.registry.model_transition import ModelTransition

    assert ModelSelector(TOGETHER, "accuracy").get_best_model().info.run_name in _runs(TOGETHER)
    client = MlflowClient(plain.tracking_uri)
    models = client.search_logged_models([client.get_experiment_by_name(TOGETHER).experiment_id])
    transition = ModelTransition("Together_Model")
    with pytest.raises(NotFoundError) as refused:
        transition.transition_model("Production", TOGETHER, "accuracy")
    said = str(refused.value)
    assert "no finished run in 'plain-script-together' holds a model to promote" in said
    assert "Logged in this experiment but linked to no run" in said
    for model in models:
        assert model.model_id in said
    assert re.search(r"logged \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", said)
    assert f"python -m core.cli promote MODEL --model-id {models[0].model_id}" in said or "--model-id m-" in said
    assert transition.versions() == []

    chosen = models[0].model_id
    version = transition.promote_logged_model(chosen, reason="picked by hand")
    assert version.current_stage == "Production" and version.tags["logged_model_id"] == chosen
