"""Bad input, through the Python API and the pages alike: refused with a message that says what is wrong and
what to change (naming the file, row or key), and nothing written half (no experiment, run, registered model,
upload or output folder).

Everything is real: SQLite MLflow stores (a copy of one empty store made once, since creating one takes a
second), files on disk, the demo BERT built by the session fixture, the pages under AppTest. No refusal trains.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import ROOT, use_store
from streamlit.testing.v1 import AppTest

from core.errors import DataError, GridError, ModelPathError, NotFoundError, RegistryError, TuneboardError
from core.paths import DATA_ROOTS, MODEL_ROOTS

HEADER = "premise,hypothesis,label\n"
TRAIN = HEADER + ("I moved house,This call is about address change.,entailment\n"
                  "where is my tax form,This call is about fees.,not_entailment\n"
                  "I was billed twice,This call is about fees.,entailment\n"
                  "reset my password,This call is about loans.,not_entailment\n")
VALIDATION = HEADER + ("my new address,This call is about address change.,entailment\n"
                       "fees again,This call is about loans.,not_entailment\n")
TIMEOUT = 60


# --- fixtures and helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty SQLite store, made once; each test works on its own copy."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def env(tmp_path, monkeypatch, empty_store, bert_model):
    """A fresh store, a data folder with a small train and validation file, and the roots fenced to them.

    Data may be read from the data folder only; models from the home and the demo models' folder.
    """
    import mlflow

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(empty_store, home / "mlflow.db")
    (data / "train.csv").write_text(TRAIN, encoding="utf-8")
    (data / "test.csv").write_text(VALIDATION, encoding="utf-8")
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(data))
    monkeypatch.setenv(DATA_ROOTS, str(data))
    monkeypatch.setenv(MODEL_ROOTS, os.pathsep.join([str(home), str(Path(bert_model).parent)]))
    settings = use_store(monkeypatch, home)
    yield SimpleNamespace(settings=settings, home=home, data=data, tmp=tmp_path, model=bert_model)
    while mlflow.active_run():
        mlflow.end_run()


def client(env):
    from mlflow.tracking import MlflowClient

    return MlflowClient(env.settings.tracking_uri, env.settings.registry_uri)


def stored(env) -> dict:
    """Everything a refusal must leave as it was: experiments, runs, registered models, uploads, outputs."""
    c = client(env)
    experiments = c.search_experiments()
    runs = c.search_runs([e.experiment_id for e in experiments])
    return {"experiments": sorted(e.name for e in experiments),
            "runs": sorted((r.info.run_id, r.info.status, tuple(sorted(r.data.tags.items()))) for r in runs),
            "models": sorted((m.name, tuple(sorted(c.get_registered_model(m.name).aliases.items())),
                              tuple(sorted(m.tags.items())),
                              tuple((v.version, v.current_stage, tuple(sorted(v.tags.items())))
                                    for v in c.search_model_versions(f"name = '{m.name}'")))
                             for m in c.search_registered_models()),
            "uploads": sorted(p.name for p in (env.data / "uploads").glob("*")),
            "outputs": (env.tmp / "out").exists()}


def assert_nothing_written(env) -> None:
    """The store is as empty as it started: no experiment but Default, no run, no model, no upload, no output."""
    assert stored(env) == {"experiments": ["Default"], "runs": [], "models": [], "uploads": [], "outputs": False}


def grid_args(env, **overrides) -> dict:
    args = {"base_name": "Bad", "data_src": "Input", "user_id": "tester", "dataset_versions": ["train.csv"],
            "hyperparameters": [{"n_epochs": 1, "max_steps": 1}], "base_model_versions": [env.model],
            "output_dir": str(env.tmp / "out"), "train_file": str(env.data / "{data_version}"),
            "validation_file": str(env.data / "test.csv"), "evaluate_pretrained_model": False}
    args.update(overrides)
    return args


def submit_refused(env, error: type[Exception], **overrides) -> str:
    """Submit a grid to the real job queue; it must raise ``error`` and create nothing."""
    from core.grid import GridSpec
    from core.jobs import JobQueue

    with pytest.raises(error) as info:
        JobQueue(env.settings).submit(GridSpec(**grid_args(env, **overrides)), start=False)
    assert_nothing_written(env)
    return str(info.value)


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"pages/{name}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def compose(env, **state) -> AppTest:
    """The Compose page with the demo BERT as base model, train.csv as data, and ``state`` on top."""
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=TIMEOUT)
    defaults = {"c_paths": env.model, "c_datasets": ["train.csv"], "c_validation": "test.csv", "c_baseline": False,
                "c_output": str(env.tmp / "out")}
    for key, value in {**defaults, **state}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def launch_refused(at: AppTest, env) -> str:
    """Press Launch: an error says nothing was launched, and nothing was."""
    at.button(key="c_launch").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if e.value.startswith("Nothing was launched: ")]
    assert errors, [e.value for e in at.error]
    assert_nothing_written(env)
    return errors[0]


def not_ready(at: AppTest) -> str:
    """The form refuses the grid before any Launch button exists."""
    assert not any(b.key == "c_launch" for b in at.button), "a refused grid must offer no Launch button"
    errors = [e.value for e in at.error if e.value.startswith("Not ready to launch: ")]
    assert errors, [e.value for e in at.error]
    return errors[0]


def texts(at: AppTest) -> str:
    """Everything the page rendered as Markdown (where HTML or links could sneak in)."""
    return "\n".join(str(e.value) for kind in ("markdown", "success", "info", "warning", "error", "caption")
                     for e in at.get(kind))


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- 1. paths outside the allowed roots --------------------------------------------------------------------------


def escapes(env, kind: str, how: str) -> str:
    """A path that leads out of the allowed ``kind`` ("data" or "model") folders in the way ``how`` says."""
    outside = env.tmp / "elsewhere"
    target = write(outside / "secret.csv", TRAIN.encode()) if kind == "data" else Path(env.model)
    root = env.data if kind == "data" else env.home
    if how == "outside-root":
        return str(target)
    if how == "dotdot-escape":  # climbs from the root to the pytest folder both share, then down to the target
        return str(root / ".." / ".." / target.relative_to(env.tmp.parent))
    link = root / ("link.csv" if kind == "data" else "linked-model")
    link.symlink_to(target, target_is_directory=kind == "model")
    return str(link)


@pytest.mark.parametrize("how", ["outside-root", "dotdot-escape", "symlink-escape"])
def test_data_file_outside_the_data_roots_is_refused(env, how):
    from core.data import load_examples

    path = escapes(env, "data", how)
    with pytest.raises(DataError) as info:
        load_examples(path)
    message = str(info.value)
    assert message.startswith(f"{path}: is outside the folders data files may be read from")
    assert f"Allowed: {env.data}." in message and "TUNEBOARD_DATA_ROOTS" in message
    if how != "outside-root":
        assert f"(it leads to {(env.tmp / 'elsewhere' / 'secret.csv').resolve()})" in message


@pytest.mark.parametrize("how", ["outside-root", "dotdot-escape", "symlink-escape"])
def test_model_folder_outside_the_model_roots_is_refused(env, monkeypatch, how):
    from core.models.loading import load_config

    monkeypatch.setenv(MODEL_ROOTS, str(env.home))  # the demo models' folder is no longer allowed
    path = escapes(env, "model", how)
    with pytest.raises(ModelPathError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: is outside the folders base models may be read from")
    assert str(env.home) in message and "TUNEBOARD_MODEL_ROOTS" in message


@pytest.mark.parametrize("where", ["validation-dotdot", "train-symlink", "model-outside"])
def test_grid_reaching_outside_the_roots_creates_nothing(env, monkeypatch, where):
    if where == "validation-dotdot":
        escapes(env, "data", "outside-root")
        message = submit_refused(env, DataError, validation_file=str(env.data / ".." / "elsewhere" / "secret.csv"))
        assert "is outside the folders data files may be read from" in message
    elif where == "train-symlink":
        escapes(env, "data", "symlink-escape")
        message = submit_refused(env, DataError, dataset_versions=["link.csv"])
        assert message.startswith(f"{env.data / 'link.csv'}: is outside") and "it leads to" in message
    else:
        monkeypatch.setenv(MODEL_ROOTS, str(env.home))
        message = submit_refused(env, ModelPathError)
        assert message.startswith(f"{env.model}: is outside the folders base models")
        assert "TUNEBOARD_MODEL_ROOTS" in message


def test_compose_refuses_a_model_folder_outside_the_roots(env, monkeypatch):
    monkeypatch.setenv(MODEL_ROOTS, str(env.home))
    message = launch_refused(compose(env), env)
    assert "is outside the folders base models may be read from" in message and "TUNEBOARD_MODEL_ROOTS" in message


def test_compose_refuses_a_saved_grid_whose_file_climbs_out_of_the_data_folder(env):
    escapes(env, "data", "outside-root")
    at = compose(env)
    grid = grid_args(env, dataset_versions=["../elsewhere/secret.csv"])
    at.file_uploader(key="c_yaml").set_value(("climb.yaml", json.dumps(grid).encode(), "application/x-yaml")).run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("climb.yaml: ") and "is outside the data folder" in e.value and
               "Copy it there, or upload it here" in e.value for e in at.error), [e.value for e in at.error]
    assert at.multiselect(key="c_datasets").value == ["train.csv"]  # the form was left as it was
    assert_nothing_written(env)


# --- 2-4. uploads and bad data files -----------------------------------------------------------------------------

BAD_FILES = {  # id: (content, words the message must hold)
    "not-utf8": (HEADER.encode() + "Caf\xe9 au lait,This call is about fees.,entailment\n".encode("latin-1"),
                 ["is not valid UTF-8", "line 2", "Save the file as UTF-8"]),
    "ragged": (HEADER.encode() + b"a,b,entailment\nc,d,entailment,extra\n",
               ["has 4 fields but the header has 3", "line 3", "unquoted comma"]),
    "empty": (b"", ["the file is empty", "Add a header row"]),
    "header-only": (HEADER.encode(), ["has a header but no rows", "Add at least one example"]),
    "blank-text": (HEADER.encode() + b"  ,b,entailment\nc,d,not_entailment\n",
                   ["the text in column 'premise' is empty", "line 2", "Fill it in or remove the row"]),
    "blank-labels": (HEADER.encode() + b"a,b,\nc,d,\n",
                     ["the label in column 'label' is empty", "line 2", "Fill it in or remove the row"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_training_file_creates_no_run(env, case):
    content, words = BAD_FILES[case]
    path = write(env.data / f"{case}.csv", content)
    message = submit_refused(env, DataError, dataset_versions=[path.name])
    assert message.startswith(str(path))
    assert all(w in message for w in words), message


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_compose_upload_of_a_bad_file_is_refused_and_not_kept(env, case):
    content, words = BAD_FILES[case]
    at = compose(env)
    at.file_uploader(key="c_upload").set_value((f"{case}.csv", content, "text/csv")).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if e.value.startswith(f"{case}.csv")]
    assert errors and all(w in errors[0] for w in words), [e.value for e in at.error]
    assert "/tmp" not in errors[0]  # names the upload, not where it was checked
    assert at.multiselect(key="c_datasets").value == ["train.csv"]
    assert_nothing_written(env)


def test_compose_upload_over_the_size_limit_is_refused_and_not_kept(env, monkeypatch):
    monkeypatch.setenv("TUNEBOARD_MAX_UPLOAD_MB", "0.001")  # 1 KB
    at = compose(env)
    big = (TRAIN * 8).encode()
    at.file_uploader(key="c_upload").set_value(("big.csv", big, "text/csv")).run()
    message = next(e.value for e in at.error if e.value.startswith("big.csv"))
    assert f"is {len(big) / 1024:.1f} KB, over the upload limit of 1.0 KB" in message
    assert "Upload a smaller sample" in message and "TUNEBOARD_MAX_UPLOAD_MB" in message
    assert_nothing_written(env)


def test_upload_over_the_size_limit_is_refused_by_the_api(env, monkeypatch):
    from core.data import save_upload

    monkeypatch.setenv("TUNEBOARD_MAX_UPLOAD_MB", "0.001")
    with pytest.raises(DataError, match=r"^big\.csv: is 1\.4 KB, over the upload limit of 1\.0 KB"):
        save_upload("big.csv", b"x" * 1434, env.data / "uploads")
    monkeypatch.setenv("TUNEBOARD_MAX_UPLOAD_MB", "lots")
    with pytest.raises(TuneboardError, match="TUNEBOARD_MAX_UPLOAD_MB='lots' is not a size"):
        save_upload("small.csv", TRAIN.encode(), env.data / "uploads")
    assert_nothing_written(env)


# --- 5-6. labels -------------------------------------------------------------------------------------------------


def test_single_class_training_set_creates_no_run(env):
    write(env.data / "one-class.csv", (HEADER + "a,b,entailment\nc,d,entailment\n").encode())
    message = submit_refused(env, DataError, dataset_versions=["one-class.csv"])
    assert message.startswith(str(env.data / "one-class.csv"))
    assert "every row has the label 'entailment'; a classifier needs at least two" in message
    assert "Add examples of the other classes" in message


def test_validation_label_unseen_in_training_creates_no_run(env):
    write(env.data / "maybe.csv", (VALIDATION + "unsure,This call is about fees.,maybe\n").encode())
    message = submit_refused(env, DataError, validation_file=str(env.data / "maybe.csv"))
    assert message.startswith(f"{env.data / 'maybe.csv'}, line 4: the label 'maybe' never appears")
    assert str(env.data / "train.csv") in message and "Use the same label names in both files" in message


@pytest.mark.parametrize("case", ["single-class", "unseen-label"])
def test_compose_launch_refuses_labels_that_cannot_train(env, case):
    if case == "single-class":
        write(env.data / "one-class.csv", (HEADER + "a,b,entailment\nc,d,entailment\n").encode())
        at, words = compose(env, c_datasets=["one-class.csv"]), "a classifier needs at least two"
    else:
        write(env.data / "maybe.csv", (VALIDATION + "unsure,This call is about fees.,maybe\n").encode())
        at, words = compose(env, c_validation="maybe.csv"), "the label 'maybe' never appears in the training file"
    assert words in launch_refused(at, env)


# --- 7-10. hyperparameters and the grid's size -------------------------------------------------------------------


@pytest.mark.parametrize("value, words", [
    (math.nan, "must be a finite number"),
    (math.inf, "must be a finite number"),
    (-2e-5, "value -2e-05 is impossible: it must be > 0"),
    (0, "value 0 is impossible: it must be > 0"),
    ("2e-5x", "wrong type: expected float, got str"),
], ids=["lr-nan", "lr-inf", "lr-negative", "lr-zero", "lr-string"])
def test_bad_learning_rate_is_refused_by_the_seed_api(env, value, words):
    from core.experiment_manager import ExperimentManager

    args = grid_args(env, hyperparameters=[{"n_epochs": 1}, {"n_epochs": 2, "learning_rate": value}])
    args["evalute_pretrained_model"] = args.pop("evaluate_pretrained_model")
    with pytest.raises(GridError) as info:
        ExperimentManager(**args)
    assert str(info.value).startswith("hyperparameters[1].learning_rate: ") and words in str(info.value)
    assert_nothing_written(env)


@pytest.mark.parametrize("typed, words", [
    ("-1e-5", "hyperparameters[0].learning_rate: value -1e-05 is impossible"),
    ("0", "hyperparameters[0].learning_rate: value 0.0 is impossible"),
    ("nan", "Could not read a value list: 'nan' is not a finite number."),
    ("1e-3, fast", "Could not read a value list: could not convert string to float: ' fast'."),
], ids=["page-lr-negative", "page-lr-zero", "page-lr-nan", "page-lr-text"])
def test_compose_refuses_bad_learning_rates(env, typed, words):
    at = compose(env)
    at.text_input(key="c_gen_learning_rate").set_value(typed)
    at.button(key="c_gen_fill").click().run()
    assert not at.exception, at.exception
    if "list" in words:
        assert any(words in e.value and "Write numbers separated by commas" in e.value for e in at.error), \
            [e.value for e in at.error]
    else:
        assert words.replace("[", "\\[").replace("]", "\\]") in not_ready(at)
    assert_nothing_written(env)


def test_unknown_hyperparameter_key_is_refused_by_the_api(env):
    message = submit_refused(env, GridError, hyperparameters=[{"n_epochs": 1, "learnin_rate": 1e-3}])
    assert message.startswith("hyperparameters[0].learnin_rate: unknown hyperparameter")
    assert "learning_rate" in message and "TrainingArguments" in message


def test_compose_refuses_a_saved_grid_with_an_unknown_key(env):
    at = compose(env)
    grid = grid_args(env, hyperparameters=[{"n_epochs": 1, "learnin_rate": 1e-3}])
    at.file_uploader(key="c_yaml").set_value(("typo.yaml", json.dumps(grid).encode(), "application/x-yaml")).run()
    for _ in range(2):  # refused when uploaded, and again when "Load this file again" is clicked
        assert any(e.value.startswith("typo.yaml: hyperparameters\\[0\\].learnin_rate: unknown hyperparameter")
                   for e in at.error), [e.value for e in at.error]
        at.button(key="c_load_yaml").click().run()
    assert_nothing_written(env)


def test_grid_over_the_size_cap_is_refused_quickly(env, monkeypatch):
    import time

    from core.grid import GridSpec

    monkeypatch.setenv("TUNEBOARD_MAX_GRID_RUNS", "3")
    with pytest.raises(GridError) as info:
        GridSpec(**grid_args(env, hyperparameters=[{"seed": i} for i in range(4)]))
    assert str(info.value) == ("hyperparameters: the grid has 4 runs, over the limit of 3; use fewer models, datasets "
                               "or hyperparameter sets (or raise TUNEBOARD_MAX_GRID_RUNS).")
    monkeypatch.delenv("TUNEBOARD_MAX_GRID_RUNS")
    start = time.monotonic()  # refused before each of 10,000 sets is checked
    with pytest.raises(GridError, match="the grid has 10000 runs, over the limit of 500"):
        GridSpec(**grid_args(env, hyperparameters=[{"seed": i} for i in range(10_000)]))
    assert time.monotonic() - start < 2
    monkeypatch.setenv("TUNEBOARD_MAX_GRID_RUNS", "many")
    with pytest.raises(GridError, match="TUNEBOARD_MAX_GRID_RUNS='many' is not a number of runs"):
        GridSpec(**grid_args(env))
    assert_nothing_written(env)


def test_compose_refuses_a_grid_over_the_size_cap(env, monkeypatch):
    monkeypatch.setenv("TUNEBOARD_MAX_GRID_RUNS", "2")
    at = compose(env)  # 1 model x 1 dataset x 2 default sets, plus the baseline
    at.toggle(key="c_baseline").set_value(True).run()
    message = not_ready(at)
    assert "the grid has 3 runs, over the limit of 2" in message and "TUNEBOARD_MAX_GRID_RUNS" in message
    assert_nothing_written(env)


def test_duplicate_parameter_sets_are_refused_by_the_api(env):
    message = submit_refused(env, GridError, hyperparameters=[{"n_epochs": 2, "learning_rate": 1e-3},
                                                              {"num_train_epochs": 2, "learning_rate": 0.001}])
    assert message == "hyperparameters[1]: is the same set as hyperparameters[0]; remove the duplicate."


def test_compose_refuses_duplicate_parameter_sets(env):
    at = compose(env)
    at.text_input(key="c_gen_n_epochs").set_value("2, 2")
    at.button(key="c_gen_fill").click().run()
    assert "hyperparameters\\[1\\]: is the same set as hyperparameters\\[0\\]; remove the duplicate." in not_ready(at)
    assert_nothing_written(env)


# --- 11-13. base models ------------------------------------------------------------------------------------------


def unusable_model(env, case: str) -> str:
    """A base model that cannot be used, as the user would give it."""
    if case == "hub-id-offline":
        return "someorg/some-model-that-is-not-here"
    folder = env.home / case
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    config = {"no-config-json": None,
              "remote-code-auto-map": {"model_type": "bert", "auto_map": {"AutoModel": "modeling.MyModel"}},
              "unknown-model-type": {"model_type": "my-custom-arch"}}[case]
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(folder)


MODEL_WORDS = {
    "no-config-json": ["this folder has no config.json", "Point at the folder that save_pretrained wrote"],
    "hub-id-offline": ["the model hub is switched off here (HF_HUB_OFFLINE=1)", "Download it to a folder"],
    "remote-code-auto-map": ["trust_remote_code", "never allows", "Choose a model built into transformers"],
    "unknown-model-type": ["model_type 'my-custom-arch'", "trust_remote_code", "never allows"],
}


@pytest.mark.parametrize("case", list(MODEL_WORDS))
def test_unusable_base_model_creates_no_run(env, monkeypatch, case):
    monkeypatch.chdir(env.tmp)  # no folder called "someorg" here
    model = unusable_model(env, case)
    message = submit_refused(env, ModelPathError, base_model_versions=[model])
    assert message.startswith(f"{model}: ")
    assert all(w in message for w in MODEL_WORDS[case]), message
    assert "outside the folders" not in message  # a hub id is not a path


@pytest.mark.parametrize("case", ["no-config-json", "hub-id-offline", "remote-code-auto-map"])
def test_compose_launch_refuses_an_unusable_base_model(env, monkeypatch, case):
    monkeypatch.chdir(env.tmp)
    message = launch_refused(compose(env, c_paths=unusable_model(env, case)), env)
    assert all(w in message for w in MODEL_WORDS[case]), message


@pytest.mark.parametrize("folder", ["o'brien-bert", "o'brien \"tiny\" bert"], ids=["quote-single", "quote-both"])
def test_compose_survives_quotes_in_a_model_path(env, folder):
    """The time estimate looks the model up in an MLflow filter string, where a quote once broke the page."""
    path = str(env.home / folder)
    at = compose(env, c_paths=path)
    assert any("**2 runs**" in m.value for m in at.markdown)  # the preview still shows
    message = launch_refused(at, env)
    assert "no such folder. Check the path" in message


# --- 14-15. metrics, stages and aliases --------------------------------------------------------------------------

EVIL_RUN = '<script>alert("run")</script>'
EVIL_TAG = "<img src=x onerror=alert(1)>"
EVIL_LINK = "[click me](http://evil.example)"
FORMULAS = {"csv-equals": '=HYPERLINK("http://evil.example","x")', "csv-plus": "+1+2",
            "csv-minus": "-2+3", "csv-at": "@SUM(A1:A2)"}


def seed(env) -> str:
    """One finished fine-tune holding a model, one failed job (both with hostile names and tags), and version 1
    of ``Topic`` in production; returns the experiment's name."""
    from core.worker import queue_id

    c = client(env)
    name = "Seeded <i>runs</i>"
    exp = c.create_experiment(name, artifact_location=(env.home / "artifacts").as_uri())
    job = {"job_queue": queue_id(env.settings), "job_backend": "local", "job_queued_at": "1", "run_type": "fine_tune"}
    good = c.create_run(exp, run_name=EVIL_RUN, tags={**job, "base_model_name": EVIL_TAG, "dataset_name": EVIL_LINK,
                                                      "model_uri": "models:/m-1", "note": FORMULAS["csv-equals"]})
    for key, value in {"accuracy": 0.9, "f1": 0.8}.items():
        c.log_metric(good.info.run_id, key, value)
    for key, value in zip(("a", "b", "c"), list(FORMULAS.values())[1:], strict=True):
        c.log_param(good.info.run_id, key, value)
    c.set_terminated(good.info.run_id, "FINISHED")
    bad = c.create_run(exp, run_name=f"{EVIL_RUN} 2", tags={**job, "error": f"<b>boom</b> {EVIL_LINK}"})
    c.set_terminated(bad.info.run_id, "FAILED")
    c.create_registered_model("Topic")
    version = c.create_model_version("Topic", f"runs:/{good.info.run_id}/model", good.info.run_id,
                                     tags={"source_run_name": EVIL_RUN, "promoted_by": EVIL_TAG})
    c.set_registered_model_alias("Topic", "production", version.version)
    return name


def test_metric_no_run_has_is_refused_naming_the_metrics_there_are(env):
    from core.registry.model_selector import ModelSelector
    from core.registry.model_transition import ModelTransition

    experiment = seed(env)
    before = stored(env)
    with pytest.raises(NotFoundError) as info:
        ModelSelector(experiment, "bleu").get_best_model()
    assert str(info.value) == f"no run in {experiment!r} has the metric 'bleu'. Metrics logged: accuracy, f1."
    with pytest.raises(NotFoundError, match="has the metric 'bleu'"):
        ModelTransition("Other").transition_model("Production", experiment, "bleu")
    assert stored(env) == before  # nothing registered, no alias moved


def test_registry_page_offers_only_metrics_the_runs_have(env):
    seed(env)
    before = stored(env)
    at = page("registry")
    at.selectbox(key="r_model").set_value("+ a new name").run()
    at.text_input(key="r_new_name").set_value("Other").run()
    assert at.selectbox(key="r_metric").options == ["accuracy", "f1"]  # no roc_auc to pick and be refused on
    at.selectbox(key="r_metric").set_value("f1").run()
    at.button(key="r_promote_best").click().run()
    assert any(b.key == "r_confirm_btn" for b in at.button)
    assert stored(env) == before  # nothing registered before the confirmation


@pytest.mark.parametrize("name", ["prod uction!", "stage/1", "latest", "v2", "", "x" * 256, "<b>Prod</b>"],
                         ids=["alias-space-bang", "alias-slash", "alias-latest", "alias-v2", "alias-empty",
                              "alias-too-long", "alias-html"])
def test_stage_or_alias_mlflow_rejects_is_refused_before_anything_changes(env, name):
    from core.registry.model_transition import ModelTransition, alias_for

    seed(env)
    before = stored(env)
    with pytest.raises(RegistryError) as info:
        alias_for(name)
    assert f"{name!r} cannot be a stage or alias: use letters, digits, '_' or '-'" in str(info.value)
    transition = ModelTransition("Topic")
    with pytest.raises(RegistryError, match="cannot be a stage or alias"):
        transition.promote("1", name)
    with pytest.raises(RegistryError, match="cannot be a stage or alias"):
        ModelTransition("Fresh").transition_model(name, "no such experiment")
    assert stored(env) == before  # no alias, stage, audit tag or registered model


def test_registry_page_refuses_a_bad_alias_and_shows_it_as_text(env):
    seed(env)
    before = stored(env)
    at = page("registry")
    at.selectbox(key="r_model").set_value("Topic").run()
    at.text_input(key="r_stage").set_value("<script>x</script>").run()
    at.button(key="r_move").click().run()
    assert any("&lt;script&gt;x&lt;/script&gt;' cannot be a stage or alias" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert "<script" not in texts(at)
    assert stored(env) == before


# --- 16. hostile names shown as text -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home", "jobs", "compare", "registry", "compose"],
                         ids=["html-home", "html-jobs", "html-compare", "html-registry", "html-compose"])
def test_html_in_run_names_and_tags_is_shown_as_text(env, name):
    if name == "compose":
        at = compose(env, c_paths=f"/models/{EVIL_RUN}")
        launch_refused(at, env)
    else:
        seed(env)
        at = page(name)
        if name == "registry":
            at.selectbox(key="r_model").set_value("Topic").run()
            at.button(key="r_promote_best").click().run()
    body = texts(at)
    assert not at.exception, at.exception
    assert "&lt;script&gt;alert(\"run\")&lt;/script&gt;" in body
    for raw in ("<script", "<img", "<b>", "<i>", "[click me]("):
        assert raw not in body, f"{raw!r} reached the page as markup"
    if name in ("home", "registry"):
        assert "&lt;img src=x onerror=alert(1)&gt;" in body or "\\[click me\\](http://evil.example)" in body


# --- 17. CSV export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(FORMULAS))
def test_csv_export_neutralises_formula_cells(case):
    import csv
    import io

    from core.compare import safe_csv

    cell = FORMULAS[case]
    rows = list(csv.reader(io.StringIO(safe_csv(pd.DataFrame({"run_name": [cell], "metrics.delta": [-0.5]})))))
    assert rows[1] == [f"'{cell}", "-0.5"]  # a spreadsheet shows the text; negative numbers stay numbers


def test_compare_page_export_neutralises_formula_cells(env, monkeypatch):
    import csv
    import io

    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    made: list[MemoryMediaFileStorage] = []
    managers: list[MediaFileManager] = []

    class Kept(MemoryMediaFileStorage):  # AppTest's own storage, kept so the exported file can be read back
        def __init__(self, endpoint: str):
            super().__init__(endpoint)
            made.append(self)

    class Manager(MediaFileManager):  # and its file manager, which makes the file when the button is clicked
        def __init__(self, storage):
            super().__init__(storage)
            managers.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Kept)
    monkeypatch.setattr(app_test, "MediaFileManager", Manager)
    seed(env)
    at = page("compare")
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Export this table as CSV"]
    assert button.proto.deferred_file_id  # made on click, not on every rerun of the page
    assert button.proto.ignore_rerun  # a click reruns nothing: a run starting drops the file's answer (Streamlit)
    url = managers[-1].execute_deferred(button.proto.deferred_file_id)  # what a click asks the server for
    exported = made[-1].get_file(url.rsplit("/", 1)[-1]).content.decode("utf-8")
    (row,) = [r for r in csv.DictReader(io.StringIO(exported)) if r["status"] == "FINISHED"]
    assert row["tags.note"] == f"'{FORMULAS['csv-equals']}"
    assert [row[f"params.{k}"] for k in "abc"] == [f"'{FORMULAS[c]}" for c in ("csv-plus", "csv-minus", "csv-at")]
    assert row["run_name"] == EVIL_RUN and row["metrics.accuracy"] == "0.9"
