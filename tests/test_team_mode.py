"""Team mode: a real `mlflow server` on the machine's PostgreSQL, serving artifacts, used by everything.

The ``server`` fixture (tests/conftest.py) creates its own database on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import pytest
from conftest import copy_data, log_one_dataset_at_once

from core.grid import GridSpec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_server")]  # one worker builds its fixture


@pytest.fixture
def team(server, tmp_path, monkeypatch, demo_models, allowed_roots):  # a team's workers read only inside the roots
    url, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))  # local worker state and logs only
    monkeypatch.setenv("TUNEBOARD_USER", "team-user")
    data = copy_data(tmp_path / "data")
    yield url, data, str(demo_models["demo-bert-tiny"])
    from core.worker import stop_worker

    stop_worker()


def grid(data, model, name: str, sets: list[dict], baseline: bool) -> GridSpec:
    return GridSpec(base_name=name, data_src="Team", dataset_versions=("train_sample.csv",),
                    hyperparameters=tuple(sets), base_model_versions=(model,), output_dir=str(data.parent / "out"),
                    train_file=str(data / "{data_version}"), validation_file=str(data / "test.csv"),
                    evaluate_pretrained_model=baseline, user_id="team-user")


def told(queue, jobs) -> str:
    """What each job that did not finish said: its reason and the end of its log."""
    from core.jobs.local import log_path

    lines = []
    for j in jobs:
        if j.status.value != "FINISHED":
            path = log_path(queue.settings, j.run_id)
            tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else ["(no log)"]
            lines += [f"{j.run_name}: {j.status.value}, {j.reason}", *tail, f"worker: {queue.settings.home}"]
    return "\n".join(lines)


def test_pipeline_and_registry_through_the_server(team):
    import mlflow

    from core.experiment_manager import ExperimentManager
    from core.registry.model_transition import ModelTransition
    from core.settings import Settings

    url, data, model = team
    assert Settings.from_env().tracking_uri == url and not Settings.from_env().is_embedded
    manager = ExperimentManager.from_spec(grid(data, model, "Team", [{"n_epochs": 1, "max_steps": 5}], True))
    summary = manager.run_experiments()
    assert [r.status for r in summary.results] == ["FINISHED", "FINISHED"]
    client = mlflow.tracking.MlflowClient(url)
    run = client.get_run(summary.results[1].run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # artifacts go through the server
    assert "confusion_matrix.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    version = ModelTransition("Team_Model").transition_model("Production", manager.experiment_name, "accuracy")
    assert "production" in version.aliases
    prediction = mlflow.pyfunc.load_model("models:/Team_Model@production").predict(
        [{"text": "I need a loan", "text_pair": "This call is about loan request."}])
    assert prediction["label"][0] in ("entailment", "not_entailment")


def test_runs_logging_one_dataset_at_once_through_the_server_all_link_to_it(team):
    url, _, _ = team  # on PostgreSQL the second insert of the dataset failed its whole job (CI: two of four)
    assert log_one_dataset_at_once(url) == []


def test_four_jobs_log_at_once_through_the_server(team, monkeypatch):
    import pandas as pd

    from core.jobs import JobQueue, JobStatus

    _, data, model = team
    monkeypatch.setenv("TUNEBOARD_CPU_JOBS", "4")
    sets = [{"n_epochs": 1, "max_steps": 40, "logging_steps": 2, "seed": i} for i in range(4)]
    queue = JobQueue()
    jobs = queue.submit(grid(data, model, "TeamJobs", sets, False))
    deadline = pd.Timestamp.now() + pd.Timedelta(minutes=8)
    while not all(queue.get(j.run_id).status.is_terminal() for j in jobs):
        assert pd.Timestamp.now() < deadline, "the four jobs did not finish in 8 minutes"
        import time

        time.sleep(1)
    done = [queue.get(j.run_id) for j in jobs]
    assert [j.status for j in done] == [JobStatus.FINISHED] * 4, told(queue, done)
    runs = [queue.client.get_run(j.run_id) for j in done]
    starts = [float(r.data.tags["job_started_at"]) for r in runs]
    ends = [r.info.end_time / 1000 for r in runs]
    assert max(starts) < min(ends)  # all four were running at the same time
    assert len({r.data.tags["job_slot"] for r in runs}) == 4
    for r in runs:
        assert len(queue.client.get_metric_history(r.info.run_id, "loss")) >= 10
        assert "job.log" in {a.path for a in queue.client.list_artifacts(r.info.run_id)}
