"""The transcripts behind the numbers (issue 12): predictions tables logged by real runs, what they tell, the
Examples view in Compare and the promotion's fixes and breaks, driven with AppTest on a real store."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from conftest import point_at
from test_pages import app, texts

from core import examples as ex
from core.examples import table as table_mod

if TYPE_CHECKING:
    from shared_store import SharedStore

    from core.settings import Settings

pytestmark = [pytest.mark.xdist_group("shared_store")]  # one worker for every module on the shared store
TEST_ROWS = 400  # data/test.csv


def _described(store: SharedStore, settings: Settings) -> dict:
    """What these tests need from the session's store (tests/shared_store.py) or the module's copy of it: a
    baseline and two fine-tunes of the demo BERT (different seeds, steps and learning rates, so they disagree
    somewhere) on data/test.csv, a fine-tune evaluated on another validation file, and a run logged by plain
    MLflow."""
    return {"experiment": store.examples, "settings": settings, "tmp": store.home.parent, "data": store.data_dir,
            "model": store.bert, "baseline": store.baseline, "tunes": list(store.tunes), "other": store.other,
            "foreign": store.foreign, "other_experiment": store.other_experiment}


@pytest.fixture
def trained(shared_store, monkeypatch) -> dict:
    """The shared store, for tests that only read it."""
    return _described(shared_store, point_at(monkeypatch, shared_store))


@pytest.fixture
def trained_copy(private_store, monkeypatch) -> dict:
    """The module's own copy of the store, for tests that add runs, register or promote."""
    return _described(private_store, point_at(monkeypatch, private_store))


def _client():
    from core.runs import client

    return client()


# -- the table each run logs -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_evaluated_run_logs_its_predictions_baselines_included(trained):
    validation = pd.read_csv(trained["data"] / "test.csv")
    client = _client()
    tables = {}
    for run_id in [trained["baseline"], *trained["tunes"]]:
        run = client.get_run(run_id)
        table = ex.read_predictions(client, run_id)
        assert table is not None, run.info.run_name
        assert len(table) == TEST_ROWS
        # one row per example, in file order, with its text, hypothesis and true label
        assert list(table["text"]) == list(validation["premise"])
        assert list(table["hypothesis"]) == list(validation["hypothesis"])
        assert list(table["true_label"]) == list(validation["label"].astype(str))
        assert list(table["row"][:2]) == ["line 2", "line 3"]
        # a score per class, named as the run's labels; the prediction is the top score
        labels = run.data.params["label_names"].split(",")
        assert ex.labels_of(table) == labels
        scores = table[[f"score: {label}" for label in labels]].to_numpy()
        assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
        assert list(table["predicted_label"]) == [labels[i] for i in scores.argmax(axis=1)]
        assert np.allclose(table["confidence"], scores.max(axis=1))
        # the numbers the run logged are the numbers of its table
        assert (table["true_label"] == table["predicted_label"]).mean() == pytest.approx(
            run.data.metrics["accuracy"], abs=1e-9)
        # MLflow's own UI lists it as a table
        assert '"type": "table"' in run.data.tags.get("mlflow.loggedArtifacts", "")
        assert "predictions_sample" not in run.data.tags  # 400 rows: under the cap, nothing sampled
        tables[run_id] = table
    first, second = (tables[r] for r in trained["tunes"])
    assert (first["predicted_label"] != second["predicted_label"]).any(), "the two fine-tunes should disagree"


@pytest.mark.slow
def test_a_large_validation_set_keeps_a_stated_seeded_sample(trained_copy, monkeypatch):
    from core.grid import DEFAULTS, RunSpec
    from core.training.run import execute

    spec = RunSpec(kind="baseline", experiment_name=trained_copy["experiment"], run_name="capped_baseline",
                   base_model=trained_copy["model"], validation_path=str(trained_copy["data"] / "test.csv"),
                   output_dir=str(trained_copy["tmp"] / "out" / "capped"), hyperparameters=dict(DEFAULTS))
    monkeypatch.setenv(table_mod.MAX_ROWS_VARIABLE, "50")
    result = execute(spec)
    assert result.status == "FINISHED", result.error
    client = _client()
    capped = ex.read_predictions(client, result.run_id)
    assert len(capped) == 50
    assert client.get_run(result.run_id).data.tags[ex.SAMPLE_TAG] == \
        f"kept 50 of {TEST_ROWS}, random sample, seed 0 ({table_mod.MAX_ROWS_VARIABLE}=50)"
    # the same seeded rows as the full table of the baseline of the same model: the same examples, same calls
    full = ex.read_predictions(client, trained_copy["baseline"])
    kept = table_mod.sample_indices(TEST_ROWS, 50)
    assert list(capped["row"]) == list(full["row"].iloc[kept])
    assert list(capped["predicted_label"]) == list(full["predicted_label"].iloc[kept])

    monkeypatch.setenv(table_mod.MAX_ROWS_VARIABLE, "lots")
    refused = execute(spec)
    assert refused.status == "FAILED"
    assert "TUNEBOARD_PREDICTIONS_MAX_ROWS='lots' is not a number of rows" in refused.error


@pytest.mark.slow
def test_runs_without_a_table_read_as_none(trained):
    assert ex.read_predictions(_client(), trained["foreign"]) is None


# -- what the tables tell, against hand-computed numbers ---------------------------------------------------------
def _hand_table(predicted: list[str], confidence: list[float]) -> pd.DataFrame:
    """Six examples of three classes: true labels a a b b c c."""
    names = ["a", "b", "c"]
    probs = []
    for label, top in zip(predicted, confidence, strict=True):
        rest = (1 - top) / 2
        probs.append([top if n == label else rest for n in names])
    texts = ["Refund please", "refund again", "my LOGIN fails", "login =cmd()", "tax form", "tax form"]
    return table_mod.build_table([f"line {i}" for i in range(2, 8)], texts, None, [0, 0, 1, 1, 2, 2],
                                 np.array(probs), dict(enumerate(names)))


def test_filters_and_per_label_numbers_match_a_hand_count():
    table = _hand_table(["a", "b", "b", "a", "c", "c"], [0.9, 0.6, 0.8, 0.5, 0.95, 0.7])
    assert list(table["correct"]) == [True, False, True, False, True, True]
    assert list(ex.filter_examples(table, wrong_only=True)["row"]) == ["line 3", "line 5"]
    assert list(ex.filter_examples(table, true_labels=["b"])["row"]) == ["line 4", "line 5"]
    assert list(ex.filter_examples(table, predicted_labels=["a"], wrong_only=True)["row"]) == ["line 5"]
    assert list(ex.filter_examples(table, confidence=(0.6, 0.8))["row"]) == ["line 3", "line 4", "line 7"]
    assert list(ex.filter_examples(table, search="login")["row"]) == ["line 4", "line 5"]  # any case
    assert list(ex.filter_examples(table, search="=cmd(")["row"]) == ["line 5"]  # text, not a pattern
    assert ex.filter_examples(table, true_labels=["c"], wrong_only=True).empty

    numbers = ex.per_label(table).set_index("label")
    # a: predicted for lines 2, 5 (one right) -> precision 1/2; true a: lines 2, 3 (one found) -> recall 1/2
    # b: predicted for lines 3, 4 (one right) -> 1/2; true b: lines 4, 5 (one found) -> 1/2; c: all right
    assert numbers.loc["a"].tolist() == pytest.approx([0.5, 0.5, 0.5, 2])
    assert numbers.loc["b"].tolist() == pytest.approx([0.5, 0.5, 0.5, 2])
    assert numbers.loc["c"].tolist() == pytest.approx([1.0, 1.0, 1.0, 2])


def test_a_topic_runs_call_table_counts_each_topic_a_call_holds():
    """One row per call (true and tagged topics joined by "; "): filters find a topic inside a joined cell, and
    per-label numbers are each topic's over the calls, as core.scoring.topic_eval counts them."""
    from sklearn.metrics import precision_recall_fscore_support

    topics = ["fees", "rollover", "login"]
    scores = np.array([[0.9, 0.8, 0.1],   # true fees; rollover -> tagged fees; rollover (right)
                       [0.9, 0.1, 0.1],   # true fees; login    -> tagged fees (misses login)
                       [0.1, 0.1, 0.2],   # true rollover       -> no topic
                       [0.1, 0.7, 0.9]])  # true login          -> tagged rollover; login
    table = table_mod.build_call_table(["c1", "c2", "c3", "c4"], ["a", "b", "c", "d"],
                                       [["rollover", "fees"], ["fees", "login"], ["rollover"], ["login"]],
                                       scores, topics, 0.5)
    assert list(table["true_label"]) == ["fees; rollover", "fees; login", "rollover", "login"]
    assert list(table["predicted_label"]) == ["fees; rollover", "fees", table_mod.NO_TOPIC, "rollover; login"]
    assert list(ex.filter_examples(table, true_labels=["login"])["row"]) == ["c2", "c4"]
    assert list(ex.filter_examples(table, predicted_labels=["rollover"])["row"]) == ["c1", "c4"]
    assert list(ex.filter_examples(table, search="C3")["row"]) == ["c3"]  # a call found by its own id
    numbers = ex.per_label(table).set_index("label")
    # fees: true c1 c2, tagged c1 c2 -> 1, 1; rollover: true c1 c3, tagged c1 c4 -> 1/2, 1/2; login: true c2 c4,
    # tagged c4 -> precision 1, recall 1/2
    assert numbers.loc["fees"].tolist() == pytest.approx([1.0, 1.0, 1.0, 2])
    assert numbers.loc["rollover"].tolist() == pytest.approx([0.5, 0.5, 0.5, 2])
    assert numbers.loc["login"].tolist() == pytest.approx([1.0, 0.5, 2 / 3, 2])
    # on a plain table, the same numbers as scikit-learn's one-vs-rest
    plain = _hand_table(["a", "b", "c", "a", "c", "b"], [0.9] * 6)
    p, r, f, n = precision_recall_fscore_support(plain["true_label"], plain["predicted_label"],
                                                 labels=["a", "b", "c"], average=None, zero_division=0)
    assert ex.per_label(plain)[["precision", "recall", "f1", "support"]].to_numpy() == \
        pytest.approx(np.column_stack([p, r, f, n]))


def test_disagreements_and_what_a_candidate_fixes_and_breaks_by_hand():
    current = _hand_table(["a", "b", "b", "a", "c", "c"], [0.9] * 6)  # wrong on lines 3 and 5
    candidate = _hand_table(["a", "a", "b", "b", "b", "c"], [0.9] * 6)  # wrong on line 6 only
    shared, differ = ex.disagreements(candidate, current, "new", "old")
    assert shared == 6
    assert list(differ["row"]) == ["line 3", "line 5", "line 6"]
    assert list(differ["new"]) == ["a", "b", "b"] and list(differ["old"]) == ["b", "a", "c"]
    assert list(differ["right"]) == ["new", "new", "old"]

    found = ex.changes(candidate, current)
    assert found.shared == 6 and list(found.fixes["row"]) == ["line 3", "line 5"]
    assert list(found.breaks["row"]) == ["line 6"] and list(found.breaks["candidate says"]) == ["b"]
    assert found.sentence("version 1") == ("On the same 6 validation examples, the candidate fixes 2 examples "
                                           "version 1 gets wrong and breaks 1 it got right (net +1).")
    by_label = found.by_label.set_index("label")
    assert by_label[["fixes", "breaks", "right before", "right after"]].loc["a"].tolist() == [1, 0, 1, 2]
    assert by_label[["fixes", "breaks"]].loc["b"].tolist() == [1, 0]
    assert by_label[["fixes", "breaks"]].loc["c"].tolist() == [0, 1]
    assert by_label.loc["c", "F1 before"] == pytest.approx(1.0)
    assert by_label.loc["c", "F1 after"] == pytest.approx(2 / 3)  # 1 of 2 found, 1 of 1 predicted right

    # a file that shares only some examples (the same text twice counts twice, matched in order)
    fewer = current.iloc[[0, 4, 5]]
    assert ex.changes(candidate, fewer).shared == 3
    assert ex.disagreements(candidate, current.iloc[:0], "new", "old")[0] == 0
    assert "share no validation examples" in ex.changes(candidate, current.iloc[:0]).sentence()


def test_the_per_label_chart_groups_runs():
    from core.charts import per_label

    long = ex.per_label_by_run(
        {"r1": _hand_table(["a", "b", "b", "a", "c", "c"], [0.9] * 6),
         "r2": _hand_table(["a", "a", "b", "b", "b", "c"], [0.9] * 6)},
        {"r1": ("first", "lr 0.001"), "r2": ("second", "lr 0.001")})
    fig = per_label(long, "f1", by="group")
    assert [t.name for t in fig.data] == ["lr 0.001"]
    assert list(fig.data[0].x) == ["a", "b", "c"]
    # a: F1 0.5 in r1, 1.0 in r2 (both its "a" calls right, both "a" examples found) -> mean 0.75
    assert fig.data[0].y[0] == pytest.approx(0.75)
    assert [t.name for t in per_label(long, "f1", by="run").data] == ["first", "second"]
    assert per_label(long.iloc[:0], "f1").layout.title.text.startswith("Nothing to show")


# -- the pages -------------------------------------------------------------------------------------------------
def _compare(trained):
    exp_id = _client().get_experiment_by_name(trained["experiment"]).experiment_id
    at = app("pages/compare.py")
    at.multiselect(key="cmp_exps").set_value([exp_id]).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_examples_view_filters_compares_two_runs_and_charts_per_label(trained):
    client = _client()
    first, second = trained["tunes"]
    table = ex.read_predictions(client, first)
    other = ex.read_predictions(client, second)
    at = _compare(trained)
    at.selectbox(key="cmp_ex_run").set_value(first).run()
    assert f"{TEST_ROWS} of {TEST_ROWS} examples shown" in texts(at)

    at.checkbox(key="cmp_ex_wrong").check().run()
    wrong = int((~table["correct"]).sum())
    assert f"{wrong} of {TEST_ROWS} examples shown; the run gets {wrong} of {TEST_ROWS} wrong." in texts(at)
    shown = next(d.value for d in at.dataframe if "predicted_label" in d.value.columns)
    assert len(shown) == wrong and (shown["true_label"] != shown["predicted_label"]).all()
    # the full text of a chosen example, as plain text (st.code)
    assert at.code[0].value == table.loc[~table["correct"], "text"].iloc[0]

    label = ex.labels_of(table)[0]
    at.multiselect(key="cmp_ex_true").set_value([label]).run()
    expected = len(ex.filter_examples(table, true_labels=[label], wrong_only=True))
    assert f"{expected} of {TEST_ROWS} examples shown" in texts(at)
    at.text_input(key="cmp_ex_search").set_value("zzz-no-such-text").run()
    assert f"0 of {TEST_ROWS} examples shown" in texts(at)

    # two runs: the examples they disagree on
    at.selectbox(key="cmp_ex_other").set_value(second).run()
    differ = int((table["predicted_label"] != other["predicted_label"]).sum())
    assert f"They disagree on {differ} of the {TEST_ROWS} examples both were evaluated on." in texts(at)

    # per-label numbers and chart, grouped by a param
    at.multiselect(key="cmp_ex_runs").set_value([first, second, trained["baseline"]]).run()
    at.selectbox(key="cmp_ex_group").set_value("tag: run_type").run()
    assert not at.exception, at.exception
    chart = next(c for c in at.get("plotly_chart") if "per label, by group" in c.proto.spec)
    assert "fine_tune" in chart.proto.spec and "baseline" in chart.proto.spec

    # a run logged by another tool: said plainly, metrics instead
    at.selectbox(key="cmp_ex_run").set_value(trained["foreign"]).run()
    assert "has no predictions table" in texts(at)


@pytest.fixture
def production(trained_copy):
    """The weaker fine-tune registered and put into production in the module's copy, so the best run is a real
    candidate (one test uses it: function scope, as the copy it writes to is pointed at per test)."""
    from core.registry.model_selector import ModelSelector
    from core.registry.model_transition import ModelTransition

    best = ModelSelector(trained_copy["experiment"], "accuracy").get_best_model().info.run_id
    weaker = next(r for r in trained_copy["tunes"] if r != best)
    transition = ModelTransition("Examples_Model")
    version = transition.register_run(_client().get_run(weaker))
    transition.promote(version.version, "Production", reason="test", user="tester")
    return best, weaker


def _promote_best(experiment: str, model: str):
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value(model).run()
    at.selectbox(key="r_experiment").set_value(experiment).run()
    at.button(key="r_promote_best").click().run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_promotion_shows_what_the_candidate_fixes_and_breaks_like_for_like(trained_copy, production):
    best, weaker = production
    client = _client()
    found = ex.changes(ex.read_predictions(client, best), ex.read_predictions(client, weaker))
    assert found.shared == TEST_ROWS
    at = _promote_best(trained_copy["experiment"], "Examples_Model")
    body = texts(at)
    assert found.sentence("version 1") in body
    assert f"fixes {len(found.fixes)} example" in body and f"breaks {len(found.breaks)} it got right" in body
    assert "not like for like" not in body
    listed = [len(d.value) for d in at.dataframe if "candidate says" in d.value.columns]
    assert listed == [len(found.fixes), len(found.breaks)]  # the examples themselves, in two expanders
    per_label = next(d.value for d in at.dataframe if "F1 before" in d.value.columns)
    assert per_label["fixes"].sum() == len(found.fixes) and per_label["breaks"].sum() == len(found.breaks)
    at.button(key="r_cancel").click().run()


@pytest.mark.slow
def test_promotion_across_validation_files_scores_production_on_the_candidates_file(trained_copy):
    """Production was evaluated on another file: not like for like; a button queues a job that scores it on
    the candidate's file (run by the real local worker); then the like-for-like comparison shows."""
    from core.jobs import JobQueue
    from core.registry.model_transition import ModelTransition

    transition = ModelTransition("Other_File_Model")
    version = transition.register_run(_client().get_run(trained_copy["other"]))
    transition.promote(version.version, "Production", reason="test", user="tester")

    at = _promote_best(trained_copy["experiment"], "Other_File_Model")
    assert "were evaluated on different validation files, so their numbers and examples are not like for like" \
        in texts(at)
    at.button(key="r_eval_prod").click().run()
    assert not at.exception, at.exception

    from core.examples.evaluation import find_evaluation

    client = _client()
    candidate = client.get_run(at.session_state["r_confirm"].run_id)
    digest = candidate.data.params["validation_digest"]
    queue = JobQueue(trained_copy["settings"])
    deadline = time.monotonic() + 600
    run = find_evaluation(client, "Other_File_Model", version.version, digest)
    assert run is not None, "the button queued no evaluation job"
    while not queue.get(run.info.run_id).status.is_terminal():
        assert time.monotonic() < deadline, "the evaluation job did not end within 10 minutes"
        time.sleep(1)
    job = queue.get(run.info.run_id)
    assert job.status.value == "FINISHED", f"{job.reason}\n{queue.log_tail(run.info.run_id)}"
    scored = ex.read_predictions(client, run.info.run_id)
    assert len(scored) == TEST_ROWS
    assert client.get_run(run.info.run_id).data.params["validation_digest"] == digest

    at.run()
    assert not at.exception, at.exception
    body = texts(at)
    found = ex.changes(ex.read_predictions(client, candidate.info.run_id), scored)
    assert found.shared == TEST_ROWS
    assert found.sentence(f"version {version.version}") in body
    assert "scored on the candidate's validation file by the job" in body

    # a retry of the job (from the Jobs page) is found by the same tags; the finished one still counts
    retried = queue.retry(run.info.run_id, start=False)
    assert {k: v for k, v in client.get_run(retried.run_id).data.tags.items() if k.startswith("evaluat")} == \
        {"evaluates_model": "Other_File_Model", "evaluates_version": str(version.version),
         "evaluated_on_digest": digest, "evaluated_reading": "windows of 128 tokens, overlap default"}
    queue.cancel(retried.run_id)
    assert find_evaluation(client, "Other_File_Model", version.version, digest).info.run_id == run.info.run_id
    at.button(key="r_cancel").click().run()
