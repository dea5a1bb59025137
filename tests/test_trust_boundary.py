"""The trust boundary (core.paths): the API and the CLI read the user's files wherever they are; a browser
session, a grid submitted from a page and a team's worker read only inside the allowed roots.

The "user's files" live as the seed keeps them (``/dbfs/mnt/...`` for models, ``/Workspace/Users/...`` for
data), rebuilt under a temporary folder outside the repository and outside every default root. Everything is
real: SQLite MLflow stores, the demo BERT, worker processes, the CLI as a subprocess, the page under AppTest,
and a PostgreSQL-backed MLflow server for team mode.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import DATA, ROOT, child_env, use_store
from streamlit.testing.v1 import AppTest
from test_jobs import run_worker_until_idle

from core import paths
from core.errors import DataError
from core.paths import DATA_ROOTS, MODEL_ROOTS

SEED_USER = "santhosh.kumar3@voya.com"
TINY = [{"n_epochs": 1, "learning_rate": 1e-3, "weight_decay": 0.01, "train_batch_size": 16, "eval_batch_size": 32},
        {"n_epochs": 1, "learning_rate": 5e-4, "weight_decay": 0.02, "train_batch_size": 8, "eval_batch_size": 32}]


def write_sample(source: Path, target: Path, every: int) -> Path:
    """Every ``every``-th row of a demo file: a few dozen rows, both labels, so a run takes seconds."""
    with source.open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows[::every]])
    return target


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, demo_models):
    """The seed's layout under a temporary folder: data files and a model folder the user keeps there."""
    top = tmp_path_factory.mktemp("user-disk")
    data = top / "Workspace" / "Users" / SEED_USER / "MLFlow_and_NLI_finetune" / "data"
    write_sample(DATA / "full_dataset.csv", data / "full_dataset.csv", 25)
    write_sample(DATA / "train_sample.csv", data / "train_sample.csv", 5)
    write_sample(DATA / "test.csv", data / "test.csv", 8)
    model = top / "dbfs" / "mnt" / "access_work" / "UC25" / "Libraries" / "HuggingFace" / "demo-bert-tiny"
    shutil.copytree(demo_models["demo-bert-tiny"], model)
    return SimpleNamespace(top=top, data=data, model=model)


@pytest.fixture
def no_roots(monkeypatch, tmp_path):
    """A fresh store; no roots set, so only their defaults exist (home, the repo's data folder, the HF cache)."""
    monkeypatch.delenv(DATA_ROOTS, raising=False)
    monkeypatch.delenv(MODEL_ROOTS, raising=False)
    monkeypatch.delenv("TUNEBOARD_DATA_DIR", raising=False)
    return use_store(monkeypatch, tmp_path / "home")


def dashboard_files(tmp_path: Path, home: Path, user_files, monkeypatch) -> SimpleNamespace:
    """Files a page may read: the dashboard's data folder (TUNEBOARD_DATA_DIR) with ``train.csv`` and ``test.csv``,
    and the user's model copied under home."""
    data = tmp_path / "dashboard-data"
    write_sample(DATA / "train_sample.csv", data / "train.csv", 5)
    validation = write_sample(DATA / "test.csv", data / "test.csv", 8)
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(data))
    model = home / "models" / "demo-bert-tiny"
    shutil.copytree(user_files.model, model)
    return SimpleNamespace(data=data, validation=validation, model=model)


def seed_arguments(files, out: Path) -> dict:
    """The seed's ExperimentManager example: its argument names, spellings and shapes, with the user's paths."""
    return {"base_name": "Mass_ConsumerTopic_FineTune_DeBERTa_v3", "data_src": "CallTranscript",
            "dataset_versions": ["full_dataset.csv", "train_sample.csv"], "hyperparameters": TINY,
            "base_model_versions": [str(files.model)], "output_dir": str(out / "trained_models") + "/",
            "train_file": str(files.data / "{data_version}"), "validation_file": str(files.data / "test.csv"),
            "evalute_pretrained_model": True, "user_id": SEED_USER}


def assert_outside_every_default(files) -> None:
    """The user's files are where no default root reaches: the test proves what it claims."""
    assert not paths.turned_on()
    for where in (files.data / "test.csv", files.model):
        real = Path(where).resolve()
        assert not real.is_relative_to(ROOT)
        assert not any(real.is_relative_to(r) for r in paths.data_roots() + paths.model_roots()), real


# --- the API and the CLI read the user's files wherever they are ---------------------------------------------------


def test_the_seeds_example_runs_with_its_files_outside_every_root(no_roots, user_files, tmp_path):
    from core.experiment_manager import ExperimentManager

    assert_outside_every_default(user_files)
    experiment_manager = ExperimentManager(**seed_arguments(user_files, tmp_path))
    summary = experiment_manager.run_experiments()
    assert [r.status for r in summary.results] == ["FINISHED"] * 5, str(summary)
    assert [r.run_name for r in summary.results][:2] == ["demo-bert-tiny_pretrained_baseline",
                                                         "demo-bert-tiny_full_dataset_param_set1"]
    saved = tmp_path / "trained_models" / experiment_manager.experiment_name.rsplit("/", 1)[-1]
    assert (saved / "demo-bert-tiny_train_sample_param_set2" / "config.json").is_file()

    # the same grid, confined as a page's is, is refused before anything runs
    with paths.confined(), pytest.raises(DataError) as refused:
        ExperimentManager(**seed_arguments(user_files, tmp_path)).validate()
    message = str(refused.value)
    assert message.startswith(f"{user_files.data / 'test.csv'}: is outside the folders data files may be read from")
    assert "TUNEBOARD_DATA_ROOTS" in message and f"Allowed: {no_roots.data_dir}, {no_roots.home}." in message


@pytest.mark.slow
def test_the_seeds_example_runs_from_the_cli_with_its_files_outside_every_root(no_roots, user_files, tmp_path):
    import yaml

    assert_outside_every_default(user_files)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(seed_arguments(user_files, tmp_path), sort_keys=False), encoding="utf-8")
    env = child_env(TUNEBOARD_HOME=str(no_roots.home), TUNEBOARD_USER="cli-user")
    assert DATA_ROOTS not in env and MODEL_ROOTS not in env
    done = subprocess.run([sys.executable, "-m", "core.cli", "run", str(grid)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "5 run(s) finished, 0 failed" in done.stdout

    # with the roots turned on for this deployment, the CLI is confined too, and says how to allow the folder
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    refused = subprocess.run([sys.executable, "-m", "core.cli", "run", str(grid)], cwd=ROOT,
                             env={**env, DATA_ROOTS: str(allowed)}, capture_output=True, text=True, timeout=600,
                             check=False)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"{user_files.data / 'test.csv'}: is outside the folders data files may be read from" in refused.stderr
    assert f"Allowed: {allowed}." in refused.stderr and "add its folder to TUNEBOARD_DATA_ROOTS" in refused.stderr


# --- a page reads only inside the roots, their defaults included ----------------------------------------------------


def nothing_stored(settings) -> bool:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    experiments = client.search_experiments()
    return [e.name for e in experiments] == ["Default"] and not client.search_runs([e.experiment_id
                                                                                    for e in experiments])


@pytest.mark.parametrize("named", ["model", "data"])
def test_a_page_refuses_the_same_files_with_no_roots_set(no_roots, user_files, tmp_path, monkeypatch, named):
    """Compose, with the roots at their defaults: the user's model folder, or a dataset version climbing out of
    the data folder to the user's file, is refused at Launch, naming the path, the folders and the variable."""
    page_files = dashboard_files(tmp_path, no_roots.home, user_files, monkeypatch)
    data, inside = page_files.data, page_files.model  # a model folder the page may use: under home
    assert_outside_every_default(user_files)
    climb = Path(os.path.relpath(user_files.data / "train_sample.csv", data))  # ../../user-disk0/Workspace/...
    state = {"c_demo": [], "c_paths": str(user_files.model if named == "model" else inside),
             "c_datasets": ["train.csv" if named == "model" else climb.as_posix()], "c_validation": "test.csv",
             "c_baseline": False, "c_output": str(tmp_path / "out")}
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    at.button(key="c_launch").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if e.value.startswith("Nothing was launched: ")]
    assert errors, [e.value for e in at.error]
    if named == "model":
        assert f"{user_files.model}: is outside the folders base models may be read from" in errors[0]
        assert "TUNEBOARD_MODEL_ROOTS" in errors[0] and str(no_roots.home) in errors[0]
    else:
        assert f"{data / climb}: is outside the folders data files may be read from (it leads to" in errors[0]
        assert f"Allowed: {data}, {no_roots.home}." in errors[0] and "TUNEBOARD_DATA_ROOTS" in errors[0]
    assert nothing_stored(no_roots) and not (tmp_path / "out").exists()
    assert not paths.is_confined()  # the page's confinement stayed in its own script run


def test_a_page_may_not_save_models_outside_the_output_roots(no_roots, user_files, tmp_path, monkeypatch):
    """Compose names where trained models go: a browser session must not have the server write into any
    folder it likes. Outside home and the data folder, Launch is refused naming the folder and the variable;
    TUNEBOARD_OUTPUT_ROOTS allows another; the user's own process (API, CLI) writes where it likes."""
    from core.errors import GridError
    from core.experiment_manager import ExperimentManager

    page_files = dashboard_files(tmp_path, no_roots.home, user_files, monkeypatch)
    data, model = page_files.data, page_files.model
    elsewhere = user_files.top / "someone-else" / "models"
    arguments = {**seed_arguments(user_files, elsewhere), "dataset_versions": ["train.csv"],
                 "train_file": str(data / "{data_version}"), "validation_file": str(data / "test.csv"),
                 "base_model_versions": [str(model)]}
    ExperimentManager(**arguments).validate()  # the user's own process: anywhere
    with paths.confined(), pytest.raises(GridError) as refused:
        ExperimentManager(**arguments).validate()
    message = str(refused.value)
    assert message.startswith(f"output_dir: {elsewhere / 'trained_models'}/ is outside the folders trained models "
                              f"may be written to. Allowed: {no_roots.home}, {data}.")
    assert "TUNEBOARD_OUTPUT_ROOTS" in message
    monkeypatch.setenv(paths.OUTPUT_ROOTS, str(user_files.top / "someone-else"))
    with paths.confined():
        ExperimentManager(**arguments).validate()
    assert not elsewhere.exists()  # checking writes nothing


# --- workers: confined where the roots are on, and for grids from a page -----------------------------------------


@pytest.mark.slow
def test_the_worker_refuses_a_job_outside_the_roots_when_the_deployment_turns_them_on(no_roots, user_files,
                                                                                       tmp_path):
    """Queued by the user's own process (no roots there), run by a worker whose deployment sets the roots."""
    from core.grid import GridSpec
    from core.jobs import JobQueue, JobStatus

    arguments = {**seed_arguments(user_files, tmp_path), "dataset_versions": ["train_sample.csv"],
                 "hyperparameters": TINY[:1], "evalute_pretrained_model": False}
    queue = JobQueue(no_roots)
    (job,) = queue.submit(GridSpec.from_dict(arguments), start=False)
    assert json.loads(queue.client.get_run(job.run_id).data.tags["job_spec"])["confined"] is False

    allowed = tmp_path / "team-data"
    allowed.mkdir()
    done = run_worker_until_idle({DATA_ROOTS: str(allowed), MODEL_ROOTS: str(allowed)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every job reads only inside the allowed folders" in done.stdout
    failed = queue.get(job.run_id)
    assert failed.status == JobStatus.FAILED
    assert failed.reason.startswith(f"{user_files.data / 'test.csv'}: is outside the folders data files may be "
                                    f"read from. Allowed: {allowed}. ")
    assert "add its folder to TUNEBOARD_DATA_ROOTS" in failed.reason


@pytest.mark.slow
def test_a_grid_from_a_page_stays_confined_in_the_worker_with_default_roots(no_roots, user_files, tmp_path,
                                                                            monkeypatch):
    """Submitted confined (as the Compose page submits), a grid's files are checked again by the training
    process: a validation file swapped for a link to the user's file after submit is refused there, with no
    roots set anywhere, while the same swap in a grid the user's own process submitted runs."""
    from core.grid import GridSpec
    from core.jobs import JobQueue, JobStatus

    page_files = dashboard_files(tmp_path, no_roots.home, user_files, monkeypatch)
    data, validation, model = page_files.data, page_files.validation, page_files.model

    def grid(name: str) -> GridSpec:
        return GridSpec(base_name=name, data_src="Page", dataset_versions=("train.csv",), hyperparameters=(
            {"n_epochs": 1, "max_steps": 2},), base_model_versions=(str(model),), output_dir=str(no_roots.home / "out"),
                        train_file=str(data / "{data_version}"), validation_file=str(validation),
                        evaluate_pretrained_model=False, user_id="tester")

    queue = JobQueue(no_roots)
    with paths.confined():
        (from_page,) = queue.submit(grid("FromPage"), start=False)
    (from_user,) = queue.submit(grid("FromUser"), start=False)
    specs = {j.run_id: json.loads(queue.client.get_run(j.run_id).data.tags["job_spec"]) for j in (from_page,
                                                                                                 from_user)}
    assert specs[from_page.run_id]["confined"] is True and specs[from_user.run_id]["confined"] is False

    validation.unlink()
    validation.symlink_to(user_files.data / "test.csv")
    done = run_worker_until_idle()
    assert done.returncode == 0, done.stdout + done.stderr
    refused = queue.get(from_page.run_id)
    assert refused.status == JobStatus.FAILED
    assert refused.reason.startswith(f"{validation}: is outside the folders data files may be read from (it leads "
                                     f"to {(user_files.data / 'test.csv').resolve()}). Allowed: {data}, "
                                     f"{no_roots.home}.")
    assert queue.get(from_user.run_id).status == JobStatus.FINISHED


def test_a_job_from_the_cli_retried_from_a_page_is_checked_and_confined(no_roots, user_files, tmp_path, monkeypatch):
    """A job submitted unconfined (the CLI, the API) and retried from the Jobs page (confined) is checked against
    the allowed folders as a submit from the page would be: outside them, refused naming the file and nothing is
    queued; inside them, its retry is confined. Retried from the CLI, it stays as it was."""
    from core.grid import GridSpec
    from core.jobs import JobQueue

    queue = JobQueue(no_roots)
    outside = {**seed_arguments(user_files, tmp_path), "dataset_versions": ["train_sample.csv"],
               "hyperparameters": TINY[:1], "evalute_pretrained_model": False}
    (job,) = queue.submit(GridSpec.from_dict(outside), start=False)
    queue.cancel(job.run_id)
    before = len(queue.jobs())
    with paths.confined(), pytest.raises(DataError, match="is outside the folders data files may be read from"):
        queue.retry(job.run_id, start=False)
    assert len(queue.jobs()) == before  # nothing queued
    again = queue.retry(job.run_id, start=False)  # the user's own process: as it was
    assert json.loads(queue.client.get_run(again.run_id).data.tags["job_spec"])["confined"] is False

    page_files = dashboard_files(tmp_path, no_roots.home, user_files, monkeypatch)
    inside = {**outside, "dataset_versions": ["train.csv"], "base_model_versions": [str(page_files.model)],
              "train_file": str(page_files.data / "{data_version}"), "validation_file": str(page_files.validation),
              "output_dir": str(no_roots.home / "out")}
    (mine,) = queue.submit(GridSpec.from_dict(inside), start=False)
    queue.cancel(mine.run_id)
    with paths.confined():
        retried = queue.retry(mine.run_id, start=False)
    assert json.loads(queue.client.get_run(retried.run_id).data.tags["job_spec"])["confined"] is True


# --- team mode: every job on a tracking server is confined ----------------------------------------------------------


def test_which_stores_confine_their_jobs(monkeypatch):
    monkeypatch.delenv(DATA_ROOTS, raising=False)
    monkeypatch.delenv(MODEL_ROOTS, raising=False)
    for local in ("sqlite:////tmp/x/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", "mlruns"):
        assert not paths.confines_jobs(local), local
    for shared in ("http://10.0.0.5:5000", "https://mlflow.example.com", "databricks", "databricks-uc",
                   "databricks://profile", "postgresql://u@db/mlflow"):
        assert paths.confines_jobs(shared), shared
    monkeypatch.setenv(MODEL_ROOTS, "/models")
    assert paths.confines_jobs("sqlite:////tmp/x/mlflow.db") and paths.is_confined()


@pytest.mark.slow
def test_a_teams_worker_confines_a_job_whatever_its_spec_says(server, no_roots, user_files, tmp_path, monkeypatch):
    """On the team's server, the user's process still reads its own files (the API); a submit naming them is
    refused up front; and a job whose spec was rewritten through MLflow to say it is not confined (as anyone
    who may edit runs on the server could), its validation file then swapped for a link to the user's file, is
    refused by the worker, with no roots set anywhere."""
    from core.experiment_manager import ExperimentManager
    from core.grid import GridSpec
    from core.jobs import SPEC, JobQueue, JobStatus
    from core.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    settings = Settings.from_env()
    arguments = {**seed_arguments(user_files, no_roots.home), "dataset_versions": ["train_sample.csv"],
                 "hyperparameters": TINY[:1], "evalute_pretrained_model": False}
    assert len(ExperimentManager(**arguments).validate()) == 1  # the API, in the user's process: not confined
    queue = JobQueue(settings)
    with pytest.raises(DataError) as refused:  # a submit is checked as the team's workers will check it
        queue.submit(GridSpec.from_dict(arguments), start=False)
    assert str(refused.value).startswith(f"{user_files.data / 'test.csv'}: is outside the folders data files")

    model = no_roots.home / "models" / "demo-bert-tiny"
    shutil.copytree(user_files.model, model)
    data = write_sample(DATA / "test.csv", no_roots.home / "data" / "test.csv", 8).parent
    write_sample(DATA / "train_sample.csv", data / "train_sample.csv", 5)
    inside = {**arguments, "base_model_versions": [str(model)], "train_file": str(data / "{data_version}"),
              "validation_file": str(data / "test.csv"), "base_name": "TeamConfined"}
    (job,) = queue.submit(GridSpec.from_dict(inside), start=False)
    spec = json.loads(queue.client.get_run(job.run_id).data.tags[SPEC])
    assert spec["confined"] is True
    queue.client.set_tag(job.run_id, SPEC, json.dumps({**spec, "confined": False}))
    (data / "test.csv").unlink()
    (data / "test.csv").symlink_to(user_files.data / "test.csv")

    done = run_worker_until_idle({"MLFLOW_TRACKING_URI": server.url, "MLFLOW_REGISTRY_URI": server.url,
                                  "TUNEBOARD_HOME": str(no_roots.home)})
    assert done.returncode == 0, done.stdout + done.stderr
    failed = queue.get(job.run_id)
    assert failed.status == JobStatus.FAILED
    assert failed.reason.startswith(f"{data / 'test.csv'}: is outside the folders data files may be read from (it "
                                    f"leads to {user_files.data / 'test.csv'}). Allowed: {DATA.resolve()}, "
                                    f"{no_roots.home}.")
