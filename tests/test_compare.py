"""core.compare and core.charts on hand-built DataFrames shaped like ``core.runs.runs_frame``'s output."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core import charts
from core.compare import (
    best_per_group,
    best_run,
    candidates,
    compare_versions,
    default_group,
    default_metric,
    experiment_summary,
    gain_over_baseline,
    group_columns,
    holds_model,
    is_worse,
    metric_label,
    metric_names,
    metric_values,
    noise_column,
    param_names,
    safe_csv,
    tag_names,
    value_of,
)

T0 = pd.Timestamp("2026-01-01 09:00")


def run(name: str, *, status: str = "FINISHED", experiment: str = "1", minute: int = 0, run_type: str | None = None,
        model: str | None = None, metrics: dict | None = None, params: dict | None = None, tags: dict | None = None):
    """One row as runs_frame builds it; a run_type or base model of None means the tag was never set."""
    row = {"run_id": f"id-{name}", "experiment_id": experiment, "run_name": name, "status": status,
           "start_time": T0 + pd.Timedelta(minutes=minute), "end_time": T0 + pd.Timedelta(minutes=minute + 5)}
    row.update({f"metrics.{k}": v for k, v in (metrics or {}).items()})
    row.update({f"params.{k}": v for k, v in (params or {}).items()})
    all_tags = {"mlflow.runName": name, "mlflow.user": "tester", "job_id": "j1", **(tags or {})}
    if run_type:
        all_tags["run_type"] = run_type
    if model:
        all_tags.update(base_model_name=model, dataset_name="rte")
    row.update({f"tags.{k}": v for k, v in all_tags.items()})
    return row


@pytest.fixture
def frame() -> pd.DataFrame:
    ft = {"run_type": "fine_tune"}
    return pd.DataFrame([
        run("base-bert", minute=1, model="bert", run_type="baseline", metrics={"accuracy": 0.60, "eval_loss": 0.70}),
        run("base-deberta", minute=2, model="deberta", run_type="baseline",
            metrics={"accuracy": 0.55, "eval_loss": 0.80}),
        run("bert-lr2", minute=3, model="bert", **ft, metrics={"accuracy": 0.80, "f1": 0.78, "eval_loss": 0.40},
            params={"learning_rate": "2e-05", "num_train_epochs": "3"}, tags={"model_uri": "runs:/x/model"}),
        run("bert-lr5", minute=4, model="bert", **ft, metrics={"accuracy": 0.85, "f1": 0.84, "eval_loss": 0.45},
            params={"learning_rate": "5e-05", "num_train_epochs": "5"}),
        run("deberta-lr2", minute=5, model="deberta", **ft, metrics={"accuracy": 0.82, "eval_loss": 0.30},
            params={"learning_rate": "2e-05", "num_train_epochs": "3"}),
        run("crashed", status="FAILED", minute=6, model="bert", **ft, metrics={"accuracy": 0.99, "eval_loss": 0.01},
            params={"learning_rate": "1e-04"}, tags={"error": "CUDA out of memory"}),
        run("still-going", status="RUNNING", minute=7, model="deberta", **ft, metrics={"accuracy": 0.99}),
        run("foreign", minute=8, metrics={"accuracy": 0.70, "eval_loss": 0.50}),  # another tool: no run_type
        run("base-bert-2", experiment="2", minute=9, model="bert", run_type="baseline",
            metrics={"accuracy": 0.97, "eval_loss": 0.05}),
        run("bert-exp2", experiment="2", minute=10, model="bert", **ft, metrics={"accuracy": 0.83, "eval_loss": 0.60},
            params={"learning_rate": "2e-05", "num_train_epochs": "3"}),
    ])


@pytest.fixture
def untagged() -> pd.DataFrame:
    """Runs from a tool that logs no tags and no params at all."""
    return pd.DataFrame({"run_id": ["a", "b", "c"], "run_name": ["x", "y", "z"],
                         "status": ["FINISHED", "FINISHED", "KILLED"],
                         "start_time": [T0, T0 + pd.Timedelta(minutes=1), T0 + pd.Timedelta(minutes=2)],
                         "metrics.accuracy": [0.7, 0.9, 0.95]})


def names_of(rows: pd.DataFrame) -> list[str]:
    return list(rows["run_name"])


# --- names ---------------------------------------------------------------------------------------------------

def test_names_strip_prefixes_order_metrics_and_hide_noise_tags(frame):
    assert metric_names(frame) == ["accuracy", "f1", "eval_loss"]
    assert param_names(frame) == ["learning_rate", "num_train_epochs"]
    assert tag_names(frame) == ["base_model_name", "dataset_name", "run_type"]
    groups = group_columns(frame)
    assert groups["tag: base_model_name"] == "tags.base_model_name"
    assert groups["param: learning_rate"] == "params.learning_rate"
    assert not any("mlflow" in c or "job_" in c or "model_uri" in c or "error" in c for c in groups.values())


def test_names_of_a_frame_without_tags_or_params(untagged):
    assert tag_names(untagged) == [] and param_names(untagged) == [] and group_columns(untagged) == {}
    assert metric_names(untagged) == ["accuracy"]
    assert metric_names(pd.DataFrame()) == []


# --- best run ------------------------------------------------------------------------------------------------

def test_candidates_are_finished_non_baselines_with_the_metric_foreign_runs_included(frame):
    assert names_of(candidates(frame, "accuracy")) == ["bert-lr2", "bert-lr5", "deberta-lr2", "foreign",
                                                       "bert-exp2"]
    assert names_of(candidates(frame, "f1")) == ["bert-lr2", "bert-lr5"]
    assert candidates(frame, "no_such_metric").empty


def test_best_run_maximises_accuracy_and_minimises_eval_loss(frame):
    assert best_run(frame, "accuracy")["run_name"] == "bert-lr5"
    assert best_run(frame, "eval_loss")["run_name"] == "deberta-lr2"


def test_baselines_failed_and_running_runs_never_win(frame):
    # they hold the highest accuracy (0.97, 0.99, 0.99) and lowest eval_loss (0.05, 0.01)
    for metric in ("accuracy", "eval_loss"):
        assert best_run(frame, metric)["run_name"] not in {"base-bert-2", "crashed", "still-going"}
    only_those = frame[frame["run_name"].isin(["base-bert", "crashed", "still-going"])]
    assert best_run(only_those, "accuracy") is None


def test_ties_go_to_the_earliest_start():
    rows = pd.DataFrame([run("late", minute=9, metrics={"accuracy": 0.9, "eval_loss": 0.2}),
                         run("early", minute=1, metrics={"accuracy": 0.9, "eval_loss": 0.2}),
                         run("worse", minute=0, metrics={"accuracy": 0.8, "eval_loss": 0.3})])
    assert best_run(rows, "accuracy")["run_name"] == "early"
    assert best_run(rows, "eval_loss")["run_name"] == "early"


def test_best_run_copes_with_missing_columns_nan_and_empty(untagged):
    assert best_run(untagged, "accuracy")["run_name"] == "y"  # the KILLED run's 0.95 does not count
    with_nan = untagged.assign(**{"metrics.accuracy": [np.nan, math.inf, 0.5]})
    assert best_run(with_nan, "accuracy") is None
    assert best_run(pd.DataFrame(), "accuracy") is None
    assert best_run(untagged.drop(columns=["status"]), "accuracy") is None


# --- best per group ------------------------------------------------------------------------------------------

def test_best_per_group_by_tag(frame):
    best = best_per_group(frame, "accuracy", "tags.base_model_name")
    assert list(best["group"]) == ["bert", "deberta"]  # the foreign run has no base model: no group
    assert names_of(best) == ["bert-lr5", "deberta-lr2"]
    assert list(best["runs_in_group"]) == [3, 1]
    assert best["metrics.accuracy"].dtype == float


def test_best_per_group_by_param_minimising_loss(frame):
    best = best_per_group(frame, "eval_loss", "params.learning_rate")
    assert list(best["group"]) == ["2e-05", "5e-05"]
    assert names_of(best) == ["deberta-lr2", "bert-lr5"]
    assert list(best["runs_in_group"]) == [3, 1]
    by_accuracy = best_per_group(frame, "accuracy", "params.learning_rate")
    assert names_of(by_accuracy) == ["bert-exp2", "bert-lr5"]


def test_best_per_group_without_the_column_is_empty(frame, untagged):
    assert best_per_group(untagged, "accuracy", "tags.base_model_name").empty
    assert best_per_group(frame, "accuracy", "params.nope").empty
    assert best_per_group(pd.DataFrame(), "accuracy", "tags.x").empty


# --- gain over baseline --------------------------------------------------------------------------------------

def test_gain_matches_baseline_per_base_model_and_experiment(frame):
    gains = gain_over_baseline(frame, "accuracy")
    assert gains.index.equals(frame.index)
    by_name = dict(zip(frame["run_name"], gains, strict=True))
    assert by_name["bert-lr2"] == pytest.approx(0.20)
    assert by_name["bert-lr5"] == pytest.approx(0.25)
    assert by_name["deberta-lr2"] == pytest.approx(0.27)
    assert by_name["bert-exp2"] == pytest.approx(-0.14)  # experiment 2's own baseline, not experiment 1's
    for name in ("foreign", "base-bert", "crashed", "still-going"):
        assert math.isnan(by_name[name])


def test_gain_is_positive_when_a_loss_goes_down(frame):
    by_name = dict(zip(frame["run_name"], gain_over_baseline(frame, "eval_loss"), strict=True))
    assert by_name["bert-lr2"] == pytest.approx(0.30)
    assert by_name["bert-exp2"] == pytest.approx(-0.55)


def test_gain_is_nan_without_a_baseline(frame, untagged):
    no_baselines = frame[frame["tags.run_type"] != "baseline"].set_index("run_id")
    gains = gain_over_baseline(no_baselines, "accuracy")
    assert gains.index.equals(no_baselines.index) and gains.isna().all()
    assert gain_over_baseline(untagged, "accuracy").isna().all()
    assert gain_over_baseline(pd.DataFrame(), "accuracy").empty


# --- runs logged by a plain HF Trainer script: eval_ metrics, ~150 params, no tags of ours -------------------

HF_PARAMS = {"_name_or_path": "/models/bert", "output_dir": "out", "num_train_epochs": "2", "seed": "42"}


def hf(name: str, lr: str, accuracy: float, *, minute: int, model: str | None = "models:/m-1", **metrics) -> dict:
    row = run(name, minute=minute, metrics={"eval_accuracy": accuracy, "eval_f1": accuracy - 0.1, "epoch": 2.0,
                                            "eval_loss": 1 - accuracy, "train_runtime": 5.0, **metrics},
              params={**HF_PARAMS, "learning_rate": lr, "run_name": name, "output_dir": f"out/{name}"})
    return {**row, "model_uri": model}


@pytest.fixture
def team() -> pd.DataFrame:
    return pd.DataFrame([hf("hf-a", "0.003", 0.70, minute=1), hf("hf-b", "0.001", 0.80, minute=2),
                         hf("hf-c", "0.0003", 0.75, minute=3), hf("notebook", "0.001", 0.99, minute=4, model=None)])


def test_a_metric_the_run_lacks_is_read_as_its_eval_form(frame, team):
    assert best_run(team, "accuracy")["run_name"] == "notebook"
    assert best_run(team, "accuracy", with_model=True)["run_name"] == "hf-b"
    assert value_of(best_run(team, "accuracy", with_model=True), "accuracy") == pytest.approx(0.80)
    assert metric_label(team, "accuracy") == "accuracy (read as eval_accuracy, as the HF Trainer logs it)"
    assert metric_label(team, "eval_accuracy") == "eval_accuracy"
    assert list(best_per_group(team, "accuracy", "params.learning_rate")["value"]) == [0.75, 0.99, 0.70]
    # our runs keep their own accuracy; the HF runs beside them are read at eval_accuracy
    mixed = pd.concat([frame, team], ignore_index=True)
    values = dict(zip(mixed["run_name"], metric_values(mixed, "accuracy"), strict=True))
    assert values["bert-lr5"] == 0.85 and values["hf-b"] == 0.80
    assert metric_label(mixed, "accuracy") == ("accuracy (read as eval_accuracy for the runs that log only that, "
                                               "as the HF Trainer does)")
    assert names_of(candidates(mixed, "f1")) == ["bert-lr2", "bert-lr5", "hf-a", "hf-b", "hf-c", "notebook"]


def test_pages_open_on_an_accuracy_like_metric_never_on_bookkeeping(frame, team, untagged):
    assert metric_names(team) == ["eval_accuracy", "eval_f1", "eval_loss", "epoch", "train_runtime"]
    assert default_metric(team) == "eval_accuracy"
    assert default_metric(frame) == "accuracy" and default_metric(untagged) == "accuracy"
    only_f1 = team.drop(columns=["metrics.eval_accuracy"])
    assert default_metric(only_f1) == "eval_f1"
    losses = team[["run_id", "status", "metrics.epoch", "metrics.train_runtime", "metrics.eval_loss"]]
    assert default_metric(losses) == "eval_loss"
    assert default_metric(team[["run_id", "metrics.epoch"]]) == "epoch"  # all there is
    assert default_metric(pd.DataFrame()) is None


def test_group_by_opens_on_what_varies_never_a_constant(frame, team):
    groups = group_columns(team)
    assert "param: _name_or_path" in groups  # offered, but the same for every run
    assert default_group(team, "eval_accuracy", groups) == "param: learning_rate"
    assert default_group(frame, "accuracy", group_columns(frame)) == "tag: base_model_name"
    same_lr = team.assign(**{"params.learning_rate": "0.001"})
    assert default_group(same_lr, "eval_accuracy", group_columns(same_lr)) == "param: output_dir"  # a run each
    constant = team.drop(columns=["params.output_dir", "params.run_name"]).assign(
        **{"params.learning_rate": "0.001"})
    assert default_group(constant, "eval_accuracy", group_columns(constant)) is None


def test_holding_a_model_and_the_overview_of_an_experiment(frame, team):
    assert list(holds_model(team)) == [True, True, True, False]
    assert list(holds_model(frame)) == [n == "bert-lr2" for n in frame["run_name"]]  # our tag, without the column
    summary = experiment_summary(team)
    assert summary["metric"] == "eval_accuracy" and summary["run"]["run_name"] == "hf-b"
    assert summary["value"] == pytest.approx(0.80) and math.isnan(summary["gain"])
    assert (summary["finished"], summary["with_model"]) == (4, 3)
    none_held = experiment_summary(team.assign(model_uri=None))
    assert none_held["run"] is None and (none_held["finished"], none_held["with_model"]) == (4, 0)
    assert experiment_summary(pd.DataFrame()) is None


# --- CSV -----------------------------------------------------------------------------------------------------

def test_safe_csv_neutralises_formulas_in_strings_but_keeps_numbers():
    rows = pd.DataFrame({"run_name": ['=HYPERLINK("http://evil.example","click")', "+1", "-cmd", "@SUM(A1:A2)",
                                      "plain"],
                         "metrics.delta": [-0.5, 0.25, np.nan, 1.0, 2.0],
                         "tags.note": ["\tx", "\rx", None, "a-b", "ok"]})
    cells = list(csv.reader(io.StringIO(safe_csv(rows))))
    assert cells[0] == ["run_name", "metrics.delta", "tags.note"]
    assert [c[0] for c in cells[1:]] == ['\'=HYPERLINK("http://evil.example","click")', "'+1", "'-cmd",
                                         "'@SUM(A1:A2)", "plain"]
    assert [c[1] for c in cells[1:]] == ["-0.5", "0.25", "", "1.0", "2.0"]
    assert [c[2] for c in cells[1:]] == ["'\tx", "'\rx", "", "a-b", "ok"]
    assert rows.loc[1, "run_name"] == "+1"  # the caller's frame is left alone


# --- promotion wording ---------------------------------------------------------------------------------------

def test_compare_versions_wording():
    candidate = {"eval_loss": 0.30, "roc_auc": 0.90, "f1": 0.91, "accuracy": 0.80}
    current = {"accuracy": 0.85, "f1": 0.87, "eval_loss": 0.35}
    assert compare_versions(candidate, current, candidate_label="", current_label="") == [
        "Accuracy 0.80 vs 0.85 now in production (worse by 0.05)",
        "F1 0.91 vs 0.87 now in production (better by 0.04)",
        "ROC-AUC 0.90 (the version in production has no ROC-AUC to compare with)",
        "eval_loss 0.30 vs 0.35 now in production (better by 0.05)",
    ]
    assert compare_versions({"roc_auc": 0.9, "f1": float("nan")}, None, candidate_label="",
                            current_label="") == ["ROC-AUC 0.90 (nothing in production to compare with)"]


def test_compare_versions_names_the_versions_and_takes_a_direction():
    labelled = compare_versions({"f1": 0.91}, {"f1": 0.87}, candidate_label="version 3", current_label="version 2")
    assert labelled == ["F1 0.91 for version 3 vs 0.87 for version 2, now in production (better by 0.04)"]
    flipped = compare_versions({"f1": 0.91}, {"f1": 0.87}, candidate_label="", current_label="",
                               lower_is_better=lambda metric: True)
    assert flipped == ["F1 0.91 vs 0.87 now in production (worse by 0.04)"]


def test_is_worse():
    assert is_worse({"accuracy": 0.80}, {"accuracy": 0.85}, "accuracy")
    assert not is_worse({"accuracy": 0.90}, {"accuracy": 0.85}, "accuracy")
    assert is_worse({"eval_loss": 0.5}, {"eval_loss": 0.4}, "eval_loss")
    assert not is_worse({"eval_loss": 0.3}, {"eval_loss": 0.4}, "eval_loss")
    assert not is_worse({"accuracy": 0.80}, None, "accuracy")
    assert not is_worse({"accuracy": 0.80}, {"f1": 0.9}, "accuracy")
    assert not is_worse({"accuracy": 0.85}, {"accuracy": 0.85}, "accuracy")


# --- charts --------------------------------------------------------------------------------------------------

def title(fig: go.Figure) -> str:
    return fig.layout.title.text or ""


def test_metric_by_group_boxes_stars_and_names_the_best(frame):
    fig = charts.metric_by_group(frame, "accuracy", "tags.base_model_name")
    assert isinstance(fig, go.Figure) and fig.layout.template.layout is not None
    boxes = [t for t in fig.data if t.type == "box"]
    stars = [t for t in fig.data if t.type == "scatter"]
    assert [b.name for b in boxes] == ["bert", "deberta", "(not set)"]  # the foreign run gets its own box
    assert len(stars) == 1 and stars[0].marker.symbol == "star" and len(stars[0].x) == 3
    assert [a.text for a in fig.layout.annotations] == ["best overall: bert-lr5"]
    assert fig.layout.yaxis.title.text == "accuracy" and "accuracy" in title(fig)


def test_parallel_coordinates_numeric_and_coded_params(frame):
    fig = charts.parallel_coordinates(frame, "eval_loss", ["learning_rate", "num_train_epochs", "not_logged"])
    assert len(fig.data) == 1 and fig.data[0].type == "parcoords"
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["learning_rate", "num_train_epochs", "eval_loss"]
    assert list(dims[0].ticktext) == ["2e-05", "5e-05", "(not set)"]  # the foreign run logged no params
    numeric = charts.parallel_coordinates(frame[frame["params.learning_rate"].notna()], "accuracy",
                                          ["learning_rate"])
    assert numeric.data[0].dimensions[0].tickvals is None
    assert list(numeric.data[0].dimensions[0].values) == pytest.approx([2e-05, 5e-05, 2e-05, 2e-05])


def test_param_scatter_linear_log_and_coloured(frame):
    fig = charts.param_scatter(frame, "learning_rate", "accuracy")
    assert len(fig.data) == 1 and fig.data[0].type == "scatter" and len(fig.data[0].x) == 4
    assert fig.layout.xaxis.type != "log" and fig.layout.xaxis.title.text == "learning_rate"
    assert "bert-lr5" in list(fig.data[0].hovertext)
    wide = frame.assign(**{"params.learning_rate": ["1e-06", None, "1e-06", "1e-03", "5e-05", None, None, None,
                                                    None, "2e-04"]})
    assert charts.param_scatter(wide, "learning_rate", "accuracy").layout.xaxis.type == "log"
    coloured = charts.param_scatter(frame, "learning_rate", "accuracy", color="tags.base_model_name")
    assert [t.name for t in coloured.data] == ["bert", "deberta"]
    assert len(charts.param_scatter(frame, "learning_rate", "accuracy", color="eval_loss").data) == 1
    assert len(charts.param_scatter(frame, "learning_rate", "accuracy", color="nope").data) == 1


def test_training_curves_one_line_per_run():
    history = pd.DataFrame({"step": [30, 10, 20], "value": [0.3, 0.9, 0.5]})
    fig = charts.training_curves({"bert-lr2": history, "bert-lr5": history * 1.0, "empty": history.iloc[0:0]},
                                 "eval_loss")
    assert [t.name for t in fig.data] == ["bert-lr2", "bert-lr5"]
    assert list(fig.data[0].x) == [10, 20, 30]
    assert fig.layout.yaxis.title.text == "eval_loss" and fig.layout.xaxis.title.text == "step"


def test_confusion_matrices_side_by_side_at_most_four():
    one = {"labels": ["entailment", "not_entailment"], "matrix": [[150, 50], [40, 160]]}
    fig = charts.confusion_matrices({f"run{i}": one for i in range(5)} | {"broken": {"matrix": [[1, 2]]}})
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 4
    assert [list(r) for r in heatmaps[0].text] == [["150", "50"], ["40", "160"]]
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "true"
    assert len(charts.confusion_matrices({"only": one}).data) == 1


def test_gain_chart_bars_green_and_red(frame):
    fig = charts.gain_chart(frame, "accuracy")
    assert len(fig.data) == 1 and fig.data[0].type == "bar" and fig.data[0].orientation == "h"
    bars = dict(zip(fig.data[0].y, fig.data[0].marker.color, strict=True))
    assert set(bars) == {"bert-lr2", "bert-lr5", "deberta-lr2", "bert-exp2"}
    assert bars["bert-exp2"] == charts.RED and bars["deberta-lr2"] == charts.GREEN
    no_baseline = charts.gain_chart(frame[frame["tags.run_type"] != "baseline"], "accuracy")
    assert len(no_baseline.data) == 0 and "baseline" in title(no_baseline)


@pytest.mark.parametrize("make", [
    lambda df: charts.metric_by_group(df, "accuracy", "tags.base_model_name"),
    lambda df: charts.parallel_coordinates(df, "accuracy", ["learning_rate"]),
    lambda df: charts.param_scatter(df, "learning_rate", "accuracy", color="tags.base_model_name"),
    lambda df: charts.gain_chart(df, "accuracy"),
], ids=["metric_by_group", "parallel_coordinates", "param_scatter", "gain_chart"])
def test_charts_say_there_is_nothing_to_show(make, frame, untagged):
    for df in (pd.DataFrame(), frame.iloc[0:0], untagged, frame.drop(columns=["metrics.accuracy"])):
        fig = make(df)
        assert isinstance(fig, go.Figure) and len(fig.data) == 0
        assert title(fig).startswith("Nothing to show")


def test_history_and_matrix_charts_say_there_is_nothing_to_show():
    for fig in (charts.training_curves({}, "eval_loss"), charts.training_curves({"x": pd.DataFrame()}, "f1"),
                charts.confusion_matrices({}), charts.confusion_matrices({"x": None, "y": {"labels": ["a"]}})):
        assert len(fig.data) == 0 and title(fig).startswith("Nothing to show")


# -- pandas 4 will refuse what pandas 3 only warns about (our deprecations fail the tests: tests/conftest.py) -------
def test_the_within_noise_column_is_text_with_or_without_a_judgement():
    frame = pd.DataFrame({"run_id": ["a", "b", "c"]})
    assert noise_column(frame, ()) == ["", "", ""]  # no metric judged yet: no float column filled with ""
    assert noise_column(frame, {"b": "yes"}) == ["", "yes", ""]
    assert noise_column(pd.DataFrame({"run_name": ["x"]}), {"b": "yes"}) == [""]


def test_a_deprecation_raised_from_our_code_is_told_apart_from_a_librarys():
    from conftest import ROOT, own_deprecation

    def caught(category, filename):
        return warnings.WarningMessage("will raise", category, str(filename), 1)

    assert own_deprecation(caught(pd.errors.Pandas4Warning, ROOT / "pages" / "compare.py"))
    assert own_deprecation(caught(FutureWarning, ROOT / "core" / "compare.py"))
    assert not own_deprecation(caught(UserWarning, ROOT / "core" / "compare.py"))
    assert not own_deprecation(caught(FutureWarning, Path(pd.__file__)))
    assert not own_deprecation(caught(FutureWarning, ROOT / "tests" / "test_compare.py"))

