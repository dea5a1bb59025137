"""Every page under streamlit.testing.v1.AppTest, against a real MLflow store filled by the real pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from conftest import ROOT, point_at, use_store
from streamlit.testing.v1 import AppTest

if TYPE_CHECKING:
    from shared_store import SharedStore

    from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store
TIMEOUT = 120


@pytest.fixture
def filled(shared_store, monkeypatch) -> tuple[str, Settings, SharedStore]:
    """The session's store (tests/shared_store.py), for tests that only read it: its experiment of a finished
    baseline, three short fine-tunes of the demo BERT (built by ExperimentManager) and a run logged by plain
    MLflow, as other tools do; a model registered and in production."""
    return shared_store.small, point_at(monkeypatch, shared_store), shared_store


@pytest.fixture
def filled_copy(private_store, monkeypatch) -> tuple[str, Settings, SharedStore]:
    """The module's own copy of that store, for tests that queue jobs, register or promote."""
    return private_store.small, point_at(monkeypatch, private_store), private_store


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "success", "info", "warning", "error", "caption")
                     for e in at.get(kind))


def test_home_says_what_is_best_and_what_to_do(filled, tmp_path, monkeypatch):
    experiment, _, store = filled
    at = app()
    assert at.title[0].value == "Tuneboard"
    body = texts(at)
    # what is in production: the store's model, its version, the run it came from, who put it there
    assert f"**{store.model}**: version 1 (demo-bert-tiny_train_sample_param_set" in body
    assert "promoted by tester on" in body
    frames = at.dataframe
    assert any(experiment in str(f.value) for f in frames)
    # and where nothing is registered (a fresh store), it says so
    use_store(monkeypatch, tmp_path / "empty")
    assert "No model is registered yet" in texts(app())


def test_compose_previews_the_grid_and_refuses_bad_input(filled):
    at = app("pages/compose.py")
    body = texts(at)
    assert "Experiment **/Users/tester/ConsumerTopic_FineTune_CallTranscript_" in body
    assert "**10 runs**" in body  # 2 demo models x 2 datasets x 2 sets + 2 baselines
    assert at.button(key="c_launch")

    at.text_input(key="c_base_name").set_value("bad/name").run()
    assert any("base_name: must not contain '/'" in e.value for e in at.error)
    assert not any(b.key == "c_launch" for b in at.button)  # nothing can be launched

    at.text_input(key="c_base_name").set_value("Fine").run()
    at.multiselect(key="c_datasets").set_value([]).run()
    assert any("dataset_versions: must not be empty" in e.value for e in at.error)


def test_compose_generator_fills_all_combinations(filled):
    at = app("pages/compose.py")
    at.text_input(key="c_gen_n_epochs").set_value("1, 2")
    at.text_input(key="c_gen_learning_rate").set_value("1e-3, 5e-4, 2e-4")
    at.button(key="c_gen_fill").click().run()
    assert not at.exception
    assert "**26 runs**" in texts(at)  # 2 models x 2 datasets x 6 sets + 2 baselines


def test_compose_starts_from_a_past_experiment(filled_copy):
    _, settings, _ = filled_copy
    from core import runs as runs_mod
    from core.grid import GridSpec
    from core.jobs import JobQueue

    # a grid launched through the queue can be reloaded into the form
    queue = JobQueue(settings)
    spec = GridSpec.from_dict({**_tiny_grid(filled_copy), "base_name": "Reload"})
    queue.submit(spec, start=False)
    at = app("pages/compose.py")
    exp_id = runs_mod.client().get_experiment_by_name(spec.experiment_name).experiment_id
    at.selectbox(key="c_past").set_value(exp_id)
    at.button(key="c_load_past").click().run()
    assert at.text_input(key="c_base_name").value == "Reload"
    assert "**1 runs**" in texts(at)


def _tiny_grid(filled_copy: tuple[str, Settings, SharedStore]) -> dict:
    _, settings, store = filled_copy
    return {"base_name": "Tiny", "data_src": "Demo", "user_id": "tester", "dataset_versions": ["train_sample.csv"],
            "hyperparameters": [{"n_epochs": 1, "max_steps": 3}],
            "base_model_versions": [str(settings.demo_models_dir / "demo-bert-tiny")],
            "train_file": str(store.data_dir / "{data_version}"), "validation_file": str(store.data_dir / "test.csv"),
            "output_dir": str(store.home / "out" / "tiny"), "evaluate_pretrained_model": False}


def test_jobs_page_lists_and_cancels(filled_copy):
    _, settings, _ = filled_copy
    from core.grid import GridSpec
    from core.jobs import JobQueue, JobStatus

    queue = JobQueue(settings)
    (job,) = queue.submit(GridSpec.from_dict({**_tiny_grid(filled_copy), "base_name": "JobsPage"}), start=False)
    from pages.common import jobs_changed

    jobs_changed()  # as the Compose page does after its own submit (listings are shared for up to 1 s)
    at = app("pages/jobs.py")
    assert "No worker is running" in texts(at)
    # the grid's ETA line (core.jobs.eta): nothing of its own has finished to learn from yet
    assert any(line.startswith("Grid of ") and "JobsPage" in line and "1 of 1 jobs left" in line
               and "its end is estimated once a job like each of its own has finished" in line
               for line in texts(at).splitlines())
    table = at.dataframe[0].value
    assert "demo-bert-tiny_train_sample_param_set1" in set(table["run"]) and "scheduled" in set(table["status"])
    at.selectbox(key="j_selected").set_value(job.run_id).run()
    at.button(key="j_cancel").click().run()
    assert queue.get(job.run_id).status == JobStatus.KILLED
    assert "cancelled by tester before it started" in texts(at)
    assert any(b.key == "j_retry" for b in at.button)


def test_compare_shows_the_best_run_charts_and_a_safe_export(filled):
    experiment, _, _ = filled
    from core import runs as runs_mod

    exp_id = runs_mod.client().get_experiment_by_name(experiment).experiment_id
    at = app("pages/compare.py")
    at.multiselect(key="cmp_exps").set_value([exp_id]).run()
    assert not at.exception
    assert any("Best run overall by accuracy: **demo-bert-tiny_train_sample_param_set" in s.value for s in at.success)
    charts = at.get("plotly_chart")
    assert len(charts) >= 5
    table = at.dataframe[-1].value
    assert "logged-elsewhere" in set(table["run_name"])  # runs logged by other tools compare too
    at.selectbox(key="cmp_group").set_value("param: learning_rate").run()
    assert not at.exception
    assert any(b.proto.label == "Export this table as CSV" for b in at.get("download_button"))


def test_registry_promotes_the_best_run_after_showing_what_it_replaces(filled_copy):
    experiment, _, _ = filled_copy
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("+ a new name").run()
    at.text_input(key="r_new_name").set_value("Pages_Model").run()
    at.selectbox(key="r_experiment").set_value(experiment).run()
    at.button(key="r_promote_best").click().run()
    assert "Nothing is in production yet." in texts(at)
    assert any("Accuracy 0." in m.value for m in at.markdown)
    at.button(key="r_confirm_btn").click().run()
    assert any("Version 1 of Pages_Model is now in production." in s.value for s in at.success)
    versions = at.dataframe[0].value
    assert list(versions["aliases"]) == ["production"] and list(versions["stage"]) == ["Production"]

    # promote again: the confirmation compares with version 1 in production
    at.selectbox(key="r_metric").set_value("f1").run()
    at.button(key="r_promote_best").click().run()
    body = texts(at)
    assert "now in production" in body and "Promoting replaces **version 1 now in production**" in body
    at.button(key="r_cancel").click().run()

    at.button(key="r_predict").click().run()
    assert any("Version 1 says **" in m.value for m in at.markdown)
    audit = at.dataframe[-1].value
    assert list(audit["who"]) == ["tester"] and list(audit["version"]) == ["1"]
    at.button(key="r_rollback").click().run()
    assert any("there is no earlier version to roll back to" in e.value for e in at.error)


def test_registry_refuses_a_bad_stage_name(filled_copy):
    experiment, _, _ = filled_copy
    from core.registry.model_transition import ModelTransition

    ModelTransition("Stage_Model").transition_model("Staging", experiment, "accuracy")
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("Stage_Model").run()
    at.text_input(key="r_stage").set_value("prod uction!").run()
    at.button(key="r_move").click().run()
    assert any("cannot be a stage or alias" in e.value for e in at.error)


def test_the_dashboard_resolves_lazy_transformers_classes_before_any_page_runs():
    """A page's rerun can start while the run it replaces still imports; transformers' lazy classes resolved by
    two threads at once gave "cannot import name 'TrainingArguments'" (pages/__init__.py): app.py resolves them
    first, in one thread (transformers keeps a resolved class in the module's own namespace)."""
    import subprocess
    import sys

    from pages import LAZY

    probe = ("import importlib, pages; pages.import_once(); "
             "print([f'{m}.{n}' for m, names in pages.LAZY.items() for n in names "
             "if n not in vars(importlib.import_module(m))])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "TrainingArguments" in LAZY["transformers"]  # the one a loaded CI run failed on
