"""The logic the pages used to hold, now in core/ (issue 18): hyperparameter tables and generated sets, the
grid's duration estimate, the promotion candidate and "worse", like for like, a scored file's preview."""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import DATA

from core import hyperparameter_sets as hsets
from core import paths
from core.errors import DataError, GridError
from core.examples import build_table, evaluation
from core.examples.evaluation import like_for_like
from core.grid import GridSpec
from core.registry.promotion import Candidate
from core.scoring import files
from core.training import estimate


# -- hyperparameter sets as a table, and from value lists ----------------------------------------------------------
def test_table_rows_become_sets_with_blanks_left_out_and_json_merged():
    rows = [{"n_epochs": 3.0, "learning_rate": 2e-5, "weight_decay": math.nan, "train_batch_size": None,
             "eval_batch_size": 16.0, hsets.OTHER: '{"seed": 3, "lr_scheduler_type": "cosine"}'},
            {"n_epochs": None, "learning_rate": math.nan, hsets.OTHER: ""},  # an empty row is no set
            {"learning_rate": 1e-4, hsets.OTHER: math.nan}]
    assert hsets.sets_from_rows(rows) == [
        {"n_epochs": 3, "learning_rate": 2e-5, "eval_batch_size": 16, "seed": 3, "lr_scheduler_type": "cosine"},
        {"learning_rate": 1e-4}]
    assert isinstance(hsets.sets_from_rows(rows)[0]["n_epochs"], int)  # 3.0 from the editor is the integer 3


@pytest.mark.parametrize(("cell", "problem"), [("{seed: 3}", "is not valid JSON"),
                                               ("[1, 2]", "must be a JSON object")])
def test_a_bad_json_cell_is_refused_naming_its_row(cell, problem):
    with pytest.raises(GridError, match=problem) as refused:
        hsets.sets_from_rows([{"n_epochs": 1}, {"n_epochs": 2, hsets.OTHER: cell}])
    assert refused.value.key == "hyperparameters[1].other settings (JSON)"


def test_a_grid_set_round_trips_through_a_table_row():
    params = {"num_train_epochs": 5, "learning_rate": 3e-5, "per_device_train_batch_size": 24, "seed": 7}
    row = hsets.table_row(params)
    assert row["n_epochs"] == 5 and row["train_batch_size"] == 24 and row["weight_decay"] is None
    back = GridSpec(base_name="T", data_src="D", dataset_versions=("a.csv",), hyperparameters=tuple(
        hsets.sets_from_rows([row])), base_model_versions=("m",), output_dir="out", train_file="{data_version}",
        validation_file="v.csv", user_id="u").hyperparameters[0]
    assert back == params


def test_value_lists_make_every_combination_or_the_same_seeded_sample():
    lists = hsets.value_lists({"n_epochs": "3, 5", "learning_rate": "2e-5,3e-5, 5e-5", "weight_decay": " "})
    assert lists == {"n_epochs": [3, 5], "learning_rate": [2e-5, 3e-5, 5e-5]}
    every = hsets.generate(lists)
    assert len(every) == 6 and {"n_epochs": 5, "learning_rate": 5e-5} in every
    sample = hsets.generate(lists, sample=4)
    assert len(sample) == 4 and sample == hsets.generate(lists, sample=4) and all(s in every for s in sample)
    assert hsets.generate(lists, sample=10) == every  # a sample as large as all of them is all of them


@pytest.mark.parametrize("text", ["nan", "inf", "fast"])
def test_a_value_list_with_something_that_is_not_a_finite_number_is_refused(text):
    with pytest.raises(ValueError):
        hsets.value_lists({"learning_rate": f"2e-5, {text}"})


# -- the grid's duration estimate ----------------------------------------------------------------------------------
def _grid(tmp_path: Path, models=("/m/demo-bert-tiny", "/m/deberta-v3-base"), baseline=True) -> GridSpec:
    (tmp_path / "train.csv").write_text("text,label\n" + "x,a\n" * 1000, encoding="utf-8")
    return GridSpec(base_name="T", data_src="D", dataset_versions=("train.csv",),
                    hyperparameters=({"n_epochs": 2}, {"n_epochs": 4}), base_model_versions=models,
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
                    validation_file=str(tmp_path / "v.csv"), evaluate_pretrained_model=baseline, user_id="u")


def test_the_estimate_uses_measured_speeds_else_says_it_guesses(tmp_path):
    spec = _grid(tmp_path)
    found = estimate.estimate(spec, {"demo-bert-tiny": 500.0}.get)
    per_run = estimate.PER_RUN_SECONDS
    assert estimate.row_count(tmp_path / "train.csv") == 1000
    expected = (1000 * 2 / 500 + 1000 * 4 / 500 + 2 * per_run + per_run) \
        + (1000 * 2 / estimate.GUESS_OTHER + 1000 * 4 / estimate.GUESS_OTHER + 2 * per_run + per_run)
    assert found.seconds == pytest.approx(expected)
    assert found.basis == ("deberta-v3-base: 150 samples/s (a guess until a run finishes); "
                           "demo-bert-tiny: 500 samples/s (measured)")


def test_the_estimate_never_reads_a_file_a_confined_page_may_not(tmp_path, monkeypatch):
    spec = _grid(tmp_path, models=("/m/demo-bert-tiny",), baseline=False)
    monkeypatch.setenv(paths.DATA_ROOTS, str(DATA))  # the training file lies outside every root
    read = []
    with paths.confined(True):
        found = estimate.estimate(spec, lambda name: 100.0, rows_of=lambda path: read.append(path) or 10)
    assert read == [] and found.seconds == pytest.approx(2 * estimate.PER_RUN_SECONDS)


# -- the promotion candidate ---------------------------------------------------------------------------------------
def _candidate(metrics: dict, metric: str = "accuracy") -> Candidate:
    return Candidate(run_id="r", run_name="n", experiment="e", metric=metric, label=metric, metrics=metrics,
                     model_uri="runs:/r/model")


def test_worse_is_judged_on_the_metric_chosen_read_as_versions_record_it():
    hf = _candidate({"eval_accuracy": 0.80, "eval_loss": 0.4}, metric="eval_accuracy")
    assert hf.scores == {"accuracy": 0.80}
    assert hf.is_worse_than({"accuracy": 0.85}) and not hf.is_worse_than({"accuracy": 0.75})
    assert not hf.is_worse_than(None)  # nothing in production: nothing to be worse than
    loss = _candidate({"eval_loss": 0.4}, metric="eval_loss")  # not one of the five: compared as logged
    assert loss.is_worse_than({"eval_loss": 0.3}) and not loss.is_worse_than({"eval_loss": 0.5})


# -- like for like -------------------------------------------------------------------------------------------------
def _table(rows: int, right: list[bool]) -> pd.DataFrame:
    probs = np.array([[0.9, 0.1] if ok else [0.1, 0.9] for ok in right])
    return build_table([f"line {i + 2}" for i in range(rows)], [f"text {i}" for i in range(rows)], None,
                       [0] * rows, probs, {0: "a", 1: "b"})


def test_like_for_like_compares_on_the_same_file_and_says_why_not_otherwise(store):
    from core import runs as runs_mod

    client = runs_mod.client()
    tables = {"cand": _table(4, [True, True, False, True]), "prod": _table(4, [False, True, True, True])}
    version = SimpleNamespace(version="2", run_id="prod", tags={"validation_digest": "d1", "source_run_id": "prod"})

    same = like_for_like(client, "M", version, "cand", "d1", "v.csv", tables.get)
    assert same.against == "version 2" and same.changes is not None and same.why is None
    assert (same.changes.shared, len(same.changes.fixes), len(same.changes.breaks)) == (4, 1, 1)

    other = like_for_like(client, "M", version, "cand", "d2", "other.csv", tables.get)
    assert other.changes is None and other.different_files and other.can_evaluate and other.evaluation is None
    assert "were evaluated on different validation files" in other.why

    no_table = like_for_like(client, "M", version, "cand", "d1", "v.csv", {"cand": tables["cand"]}.get)
    assert no_table.changes is None and not no_table.different_files and no_table.can_evaluate
    assert "Version 2's run has no predictions table" in no_table.why

    no_candidate = like_for_like(client, "M", version, "old", "d2", None, tables.get)
    assert not no_candidate.candidate_has_table and no_candidate.different_files
    assert "the comparison is by the metrics above only" in no_candidate.why


def test_like_for_like_needs_the_two_runs_read_alike_and_scores_production_the_candidates_way(store):
    """Same file, different reading (windows of 256 against the defaults' 128): not compared example by example;
    the evaluation of production that would make them comparable is read as the candidate read, and found again
    only at that reading."""
    from core import runs as runs_mod

    client = runs_mod.client()
    experiment = client.create_experiment("Readings")
    ids = {}
    for name, params in (("cand", {"max_length": "256", "window_overlap": "16"}), ("prod", {"max_length": "128"}),
                         ("old", {})):
        run = client.create_run(experiment, run_name=name)
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        ids[name] = run.info.run_id
    tables = {ids["cand"]: _table(4, [True, True, False, True]), ids["prod"]: _table(4, [False, True, True, True]),
              ids["old"]: _table(4, [True, True, True, True])}
    prod = SimpleNamespace(version="2", run_id=ids["prod"], tags={"validation_digest": "d1"})

    found = like_for_like(client, "M", prod, ids["cand"], "d1", "v.csv", tables.get)
    assert found.changes is None and not found.different_files and found.can_evaluate
    assert found.reading == {"max_length": 256, "window_overlap": 16}
    assert ("read its validation texts as windows of 256 tokens, overlap 16, version 2's run as windows of 128 "
            "tokens, overlap default") in found.why
    spec = evaluation.evaluation_spec("M", "2", "v.csv", store.home, found.reading)
    assert (spec.hyperparameters["max_length"], spec.hyperparameters["window_overlap"]) == (256, 16)

    # an evaluation of production on that file at the defaults' reading is not the one wanted; at 256 it is
    evaluations = client.create_experiment(evaluation.experiment_name("M"))
    for label in (evaluation.reading_label(evaluation.reading_of({})), evaluation.reading_label(found.reading)):
        run = client.create_run(evaluations, run_name=label, tags={
            evaluation.MODEL_TAG: "M", evaluation.VERSION_TAG: "2", evaluation.DIGEST_TAG: "d1",
            evaluation.READING_TAG: label})
        client.set_terminated(run.info.run_id)
        tables[run.info.run_id] = _table(4, [False, False, True, True])
    scored = like_for_like(client, "M", prod, ids["cand"], "d1", "v.csv", tables.get)
    assert scored.scored_by == "windows of 256 tokens, overlap 16" and scored.changes is not None

    # a run that logged no reading read at the defaults: alike with production, compared at once
    alike = like_for_like(client, "M", prod, ids["old"], "d1", "v.csv", tables.get)
    assert alike.changes is not None and alike.scored_by is None and alike.why is None


# -- small things a page showed or checked -------------------------------------------------------------------------
def test_a_scored_file_previews_in_its_own_format(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(8)], "label": ["a"] * 8, "score": [0.5] * 8})
    for name in ("out.csv", "out.tsv", "out.jsonl", "out.parquet"):
        written = files.write(frame, tmp_path / name)
        shown = files.preview(name, written.read_bytes(), rows=3)
        assert list(shown["text"]) == ["t0", "t1", "t2"], name
    assert len(files.preview("x.csv", io.BytesIO(b"text\n1\n2\n").getvalue())) == 2


def test_a_loaded_grid_names_files_inside_the_data_folder_only(tmp_path):
    inside = tmp_path / "data" / "uploads" / "a.csv"
    assert paths.relative_inside(inside, tmp_path / "data", "the data folder") == "uploads/a.csv"
    with pytest.raises(DataError, match="is outside the data folder .* Copy it there"):
        paths.relative_inside(tmp_path / "b.csv", tmp_path / "data", "the data folder", hint="Copy it there.")


def test_past_speeds_are_the_median_of_finished_runs_of_that_base_model(store):
    from core import runs as runs_mod

    client = runs_mod.client()
    experiment = client.create_experiment("Speeds")
    for name, speed, status in (("o'brien", 100.0, "FINISHED"), ("o'brien", 300.0, "FINISHED"),
                                ("o'brien", 200.0, "FINISHED"), ("o'brien", 999.0, "RUNNING"),
                                ("other", 5.0, "FINISHED")):
        run = client.create_run(experiment, tags={"base_model_name": name})
        client.log_metric(run.info.run_id, "train_samples_per_second", speed)
        if status == "FINISHED":
            client.set_terminated(run.info.run_id, status)
    assert runs_mod.training_speed(client, "o'brien") == 200.0  # a folder may hold a quote
    assert runs_mod.training_speed(client, "never-trained") is None
    assert runs_mod.training_speed(client, "both'\"quotes") is None  # no MLflow filter can name it
