"""Is the difference real? (issue 19) on real runs: ``ModelSelector``, the CLI, Compare and the promotion
confirmation, on the session's shared store of finished runs (tests/shared_store.py); what writes (promotions,
added runs) uses the module's copy of it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import mlflow
import pytest
from conftest import ROOT, child_env, point_at
from test_pages import app, texts

from core import runs
from core.examples import noise, read_predictions
from core.examples import significance as sig
from core.examples.table import ARTIFACT
from core.registry.model_selector import ModelSelector
from core.registry.model_transition import AUDIT_PREFIX, AuditEvent, ModelTransition

if TYPE_CHECKING:
    from shared_store import SharedStore

# the shared store trains models when a session first asks for it: slow, like every test on it
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store
TEST_ROWS = 400  # data/test.csv


@pytest.fixture
def stored(shared_store, monkeypatch) -> SharedStore:
    """The session's store, read only."""
    point_at(monkeypatch, shared_store)
    return shared_store


@pytest.fixture
def copied(private_store, monkeypatch) -> SharedStore:
    """The module's copy of the store, for tests that promote or add runs."""
    point_at(monkeypatch, private_store)
    return private_store


def table(run_id: str):
    return read_predictions(runs.client(), run_id)


def best_and_weaker(store: SharedStore) -> tuple[str, str]:
    best = ModelSelector(store.examples, "accuracy").get_best_model().info.run_id
    return best, next(r for r in store.tunes if r != best)


# -- ModelSelector ---------------------------------------------------------------------------------------------------
def test_model_selector_says_which_runs_are_within_noise_of_the_best(stored):
    # the two learning fine-tunes: the best one against the other, as the selector must find it
    selector = ModelSelector(stored.examples, "accuracy")
    best, weaker = best_and_weaker(stored)
    expected = sig.compare_tables(table(best), table(weaker), "accuracy")
    within = selector.within_noise_of_best()
    assert [r.info.run_id for r in within] == ([] if expected.real else [weaker])
    (rival,) = selector.noise.rivals  # the run logged by plain MLflow holds no model: not a candidate here
    assert rival.difference.p_value == expected.p_value and rival.difference.b == expected.b
    assert selector.get_best_model().info.run_id == best  # the seed's methods answer as before

    # three short fine-tunes that all answer the same: none is clearly behind the best
    small = ModelSelector(stored.small, "accuracy")
    chosen = small.get_best_model().info.run_id
    within = small.within_noise_of_best()
    assert sorted(r.info.run_id for r in within) == sorted(r for r in stored.small_tunes if r != chosen)
    assert small.noise.sentence().startswith(f"2 runs are within what chance gives on {TEST_ROWS} examples: ")
    assert small.get_best_model().info.run_id == chosen
    assert set(small.get_best_models_by_tag("param_set")) == {"param_set1", "param_set2", "param_set3"}


def test_runs_on_another_file_or_without_a_table_get_no_answer(stored):
    client = runs.client()
    best, _ = best_and_weaker(stored)
    found, a, b = noise.compare_runs(client, best, stored.other)
    assert found.why == "the two runs were evaluated on different validation files, so their examples cannot be paired"
    assert a.digest != b.digest and found.p_value is None
    found, _, _ = noise.compare_runs(client, best, stored.foreign)
    assert "run B has no predictions table" in found.why and found.difference is None
    frame = runs.load_frame(client, [client.get_experiment_by_name(stored.examples).experiment_id,
                                     client.get_experiment_by_name(stored.other_experiment).experiment_id])
    cells = noise.in_frame(frame, "accuracy", table).column()
    assert cells[best] == "best"
    assert cells[stored.other] == "cannot tell: it was evaluated on another validation file"
    assert cells[stored.foreign].startswith("cannot tell: it has no predictions table")


# -- the command line ------------------------------------------------------------------------------------------------
def cli(store: SharedStore, *args: str) -> subprocess.CompletedProcess:
    env = child_env(TUNEBOARD_HOME=str(store.home), TUNEBOARD_DATA_DIR=str(store.data_dir), TUNEBOARD_USER="tester")
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_compare_and_best_on_the_command_line(stored):
    best, weaker = best_and_weaker(stored)
    expected = sig.compare_tables(table(best), table(weaker), "f1")
    done = cli(stored, "compare", best, weaker, "--metric", "f1", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert {k: answer[k] for k in ("metric", "a", "b", "difference", "p_value", "real")} == \
        {"metric": "f1", "a": expected.a, "b": expected.b, "difference": expected.difference,
         "p_value": expected.p_value, "real": expected.real}
    assert answer["ci95"] == list(expected.ci95) and answer["run_b"]["id"] == weaker

    text = cli(stored, "compare", best, weaker).stdout  # accuracy: McNemar's exact test
    found = sig.compare_tables(table(best), table(weaker))
    assert f"Difference (B minus A): {found.difference:+.4f}; 95% interval {found.ci95[0]:+.4f}" in text
    assert f"({sig.MCNEMAR}, on the {found.a_only + found.b_only} examples one gets right and the other wrong" in text
    assert f"B against A: {found.verdict(better='difference')}." in text

    refused = cli(stored, "compare", best, stored.other, "--json")
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["why"].startswith("the two runs were evaluated on different validation files")
    assert json.loads(refused.stdout)["difference"] is None

    listed = cli(stored, "best", stored.small).stdout
    assert f"2 runs are within what chance gives on {TEST_ROWS} examples: " in listed


# -- Compare ---------------------------------------------------------------------------------------------------------
def test_compare_says_which_runs_are_within_noise_and_charts_intervals(stored):
    client = runs.client()
    experiment = client.get_experiment_by_name(stored.examples).experiment_id
    expected = noise.in_frame(runs.load_frame(client, [experiment]), "accuracy", table)
    at = app("pages/compare.py")
    at.multiselect(key="cmp_exps").set_value([experiment]).run()
    assert not at.exception, at.exception
    sentence = next(i.value for i in at.info if "within what chance gives" in i.value)
    assert sentence.startswith("No other run is within what chance gives on 400 examples" if not expected.within
                               else f"{len(expected.within)} run")
    assert "logged-elsewhere, as it has no predictions table" in sentence
    assert "With 400 examples, differences in accuracy under about" in sentence
    shown = next(d.value for d in at.dataframe if "within noise of best" in d.value.columns)
    cells = dict(zip(shown["run_name"], shown["within noise of best"], strict=True))
    best, weaker = (client.get_run(r).info.run_name for r in best_and_weaker(stored))
    assert cells[best] == "best" and cells["demo-bert-tiny_pretrained_baseline"] == ""
    assert cells[weaker] == expected.column()[best_and_weaker(stored)[1]]
    # the by-group chart: each group's best carries its 95% interval (Wilson's, for accuracy)
    at.selectbox(key="cmp_group").set_value("tag: param_set").run()
    chart = next(c for c in at.get("plotly_chart") if "95% interval of each group" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    stars = next(t for t in spec["data"] if t.get("name") == "best of group")
    interval = sig.estimate(table(best_and_weaker(stored)[0]), "accuracy").ci95
    assert f"95% interval {interval[0]:.3f} to {interval[1]:.3f}" in "".join(stars["customdata"])
    # the runs of no param_set (the one logged by plain MLflow, with no table) have no interval
    assert [x is None for x in stars["error_y"]["array"]] == [g == "(not set)" for g in stars["x"]]


# -- the promotion confirmation ----------------------------------------------------------------------------------------
def _promote_best(experiment: str, model: str):
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value(model).run()
    at.selectbox(key="r_experiment").set_value(experiment).run()
    at.button(key="r_promote_best").click().run()
    assert not at.exception, at.exception
    return at


def _in_order(node) -> list:
    """The page's elements top to bottom (AppTest's tree, depth first)."""
    children = getattr(node, "children", None)
    if not children:
        return [node]
    return [leaf for key in sorted(children) for leaf in _in_order(children[key])]


def test_a_clear_improvement_is_said_with_its_figures_and_recorded_as_evidence(copied):
    best, weaker = best_and_weaker(copied)
    transition = ModelTransition("Noise_Model")
    transition.promote(transition.register_run(runs.client().get_run(weaker)).version, "Production", reason="test",
                       user="tester")
    expected = sig.compare_tables(table(weaker), table(best))  # the candidate (B) against production (A)
    at = _promote_best(copied.examples, "Noise_Model")
    said = f"Against version 1 in production: {expected.verdict()}."
    assert expected.real and "a clear improvement (p < 0.001; 95% interval" in said
    assert any(said.replace("<", "&lt;") in s.value for s in at.success)  # HTML-escaped, as page text is
    assert "With 400 examples, differences in accuracy under about" in texts(at)

    at.button(key="r_confirm_btn").click().run()
    assert not at.exception, at.exception
    version = transition.current("Production")
    assert str(version.version) == "2"
    assert version.tags["evidence.verdict"] == expected.verdict()
    assert version.tags["evidence.p_value"] == f"{expected.p_value:.4g}"
    assert version.tags["evidence.ci95"] == f"{expected.ci95[0]:+.4f} to {expected.ci95[1]:+.4f}"
    assert version.tags["evidence.compared_with"] == "version 1"
    assert float(version.tags["evidence.candidate"]) == pytest.approx(expected.b, abs=1e-4)
    event = transition.audit_trail()[-1]
    assert event.evidence == {k.removeprefix("evidence."): v for k, v in version.tags.items()
                              if k.startswith("evidence.")}
    audit = next(d.value for d in at.dataframe if "evidence" in d.value.columns)
    assert audit["evidence"].iloc[0] == expected.verdict()


def _close_runs(store: SharedStore) -> tuple[str, str]:
    """An experiment of two runs that differ on two examples only: the best fine-tune's predictions as they are,
    and with two of its right answers made wrong (logged with the real MLflow client, holding its model)."""
    client = runs.client()
    best, _ = best_and_weaker(store)
    source = client.get_run(best)
    predictions = table(best)
    experiment = client.create_experiment("Close_Calls")
    made = []
    for name, flips in (("close-behind", 2), ("close-ahead", 0)):
        rows = predictions.copy()
        flipped = rows.index[rows["correct"]][:flips]
        rows.loc[flipped, "predicted_label"] = [next(lab for lab in set(rows["true_label"]) if lab != t)
                                                for t in rows.loc[flipped, "true_label"]]
        rows["correct"] = rows["true_label"] == rows["predicted_label"]
        with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
            mlflow.log_params({"validation_digest": source.data.params["validation_digest"]})
            mlflow.log_metrics({"accuracy": float(rows["correct"].mean())})
            mlflow.set_tags({"run_type": "fine_tune", "base_model_name": "demo-bert-tiny",
                             "model_uri": source.data.tags["model_uri"]})
            mlflow.log_table(rows, ARTIFACT)
        made.append(run.info.run_id)
    return made[0], made[1]


def test_a_difference_chance_explains_is_said_before_the_confirm_button_which_stays(copied):
    behind, ahead = _close_runs(copied)
    transition = ModelTransition("Close_Model")
    transition.promote(transition.register_run(runs.client().get_run(behind)).version, "Production", reason="test",
                       user="tester")
    at = _promote_best("Close_Calls", "Close_Model")
    said = ("Against version 1 in production: better by 0.005 accuracy, but on these 400 examples a difference this "
            "size comes by chance in 50% of cases: not a clear improvement.")  # 2 split examples: p = 2 x 1/4
    warning = next(w for w in at.warning if said in w.value)
    page = _in_order(at.main)
    confirm = at.button(key="r_confirm_btn")
    assert page.index(warning) < page.index(confirm)  # the sentence first, then the button, still there
    confirm.click().run()
    assert not at.exception, at.exception
    version = transition.current("Production")
    assert version.tags["evidence.verdict"].endswith("not a clear improvement")
    assert version.tags["source_run_id"] == ahead and version.tags["evidence.p_value"] == "0.5"


# -- the audit trail's layout ----------------------------------------------------------------------------------------
def test_audit_events_written_before_evidence_existed_still_load(copied):
    client = runs.client()
    transition = ModelTransition("Old_Trail_Model")
    version = transition.register_run(client.get_run(copied.small_tunes[0]))
    old = {"at": "2026-11-01T10:00:00+00:00", "action": "promote", "alias": "staging", "version": "1",
           "replaced": None, "user": "someone", "reason": "before issue 19"}
    client.set_registered_model_tag("Old_Trail_Model", f"{AUDIT_PREFIX}1", json.dumps(old))
    transition.promote(version.version, "Production", reason="no evidence given", user="tester")
    first, second = transition.audit_trail()
    assert first == AuditEvent(**old) and first.evidence == {}
    assert second.evidence == {} and not any(k.startswith("evidence.") for k in transition.current().tags)
    written = [json.loads(v) for k, v in client.get_registered_model("Old_Trail_Model").tags.items()
               if k.startswith(AUDIT_PREFIX)]
    assert all("evidence" not in event for event in written)  # readers of the older layout read them too
    # through transition_model, the seed's call, evidence lands on the version and in the trail
    transition.transition_model("Staging", version=version.version, evidence={"verdict": "by hand", "p_value": "1"})
    assert transition.current("Staging").tags["evidence.verdict"] == "by hand"
    assert transition.audit_trail()[-1].evidence == {"verdict": "by hand", "p_value": "1"}
