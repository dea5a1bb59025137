"""Is the difference real? for a topic run's ``topic_*`` metrics (issue 27): the paired bootstrap and randomization
test over calls against a direct numpy loop written here, the values against ``core.scoring.topic_eval`` (what runs
log), the words, and the command line on a store of logged runs. Tables are built the way topic runs build them
(``core.examples.table.build_call_table``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, child_env

from core.examples import significance as sig
from core.examples.table import build_call_table, build_table
from core.metrics import TOPIC_METRICS
from core.scoring.topic_eval import topic_metrics, truth_matrix

TOPICS = [f"topic {i}" for i in range(10)]
THRESHOLD = 0.5


def calls(n: int, seed: int) -> list[list[str]]:
    """Each call's true topics: one to three of :data:`TOPICS` (the last topic never, so one topic has no support)."""
    rng = np.random.default_rng(seed)
    return [list(rng.choice(TOPICS[:-1], size=rng.integers(1, 4), replace=False)) for _ in range(n)]


def scores_of(truth: list[list[str]], skill: float, seed: int) -> np.ndarray:
    """Entailment scores that reach the threshold more often for a call's own topics the more ``skill``."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.random((len(truth), len(TOPICS))) * 0.65 + skill * truth_matrix(truth, TOPICS), 0, 1)


def table_of(truth: list[list[str]], scores: np.ndarray) -> pd.DataFrame:
    n = len(truth)
    return build_call_table([f"line {i + 2}, call_id V-{i}" for i in range(n)], [f"call {i}" for i in range(n)],
                            truth, scores, TOPICS, THRESHOLD)


def logged(truth: list[list[str]], scores: np.ndarray) -> dict[str, float]:
    """The topic metrics as ``core.training.run`` logs them from the same scores."""
    by = topic_metrics(truth, scores, TOPICS, THRESHOLD).set_index("topic")
    own = truth_matrix(truth, TOPICS)
    return {"topic_f1_macro": by.loc["macro avg", "f1"], "topic_f1_micro": by.loc["micro avg", "f1"],
            "topic_precision_macro": by.loc["macro avg", "precision"],
            "topic_recall_macro": by.loc["macro avg", "recall"],
            "topic_accuracy": float(own[np.arange(len(own)), scores.argmax(axis=1)].mean())}


# -- an independent paired bootstrap and randomization test over calls: a plain loop, booleans, no codes ----------
def f1_macro(truth: np.ndarray, tagged: np.ndarray) -> float:
    tp = (truth & tagged).sum(axis=0)
    wrong = (truth ^ tagged).sum(axis=0)
    f1 = np.array([2 * h / (2 * h + w) if 2 * h + w else 0.0 for h, w in zip(tp, wrong, strict=True)])
    return float(f1.mean())


def direct(truth: np.ndarray, tagged_a: np.ndarray, tagged_b: np.ndarray, resamples: int, seed: int):
    """(difference, 95% percentile interval, two-sided randomization p) of macro F1, B minus A."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    observed = f1_macro(truth, tagged_b) - f1_macro(truth, tagged_a)
    gaps = []
    for _ in range(resamples):
        pick = rng.integers(0, n, size=n)
        gaps.append(f1_macro(truth[pick], tagged_b[pick]) - f1_macro(truth[pick], tagged_a[pick]))
    low, high = np.percentile(gaps, [2.5, 97.5])
    extreme = 0
    for _ in range(resamples):
        swap = rng.random(n) < 0.5
        a = np.where(swap[:, None], tagged_b, tagged_a)
        b = np.where(swap[:, None], tagged_a, tagged_b)
        extreme += abs(f1_macro(truth, b) - f1_macro(truth, a)) >= abs(observed) - 1e-12
    return observed, (float(low), float(high)), (extreme + 1) / (resamples + 1)


@pytest.mark.parametrize(("skill_b", "real"), [(0.45, True), (0.31, None)])
def test_the_interval_and_p_value_are_a_paired_bootstrap_and_randomization_over_calls(skill_b, real):
    truth = calls(300, seed=1)
    scores_a, scores_b = scores_of(truth, 0.3, seed=2), scores_of(truth, skill_b, seed=3)
    a, b = table_of(truth, scores_a), table_of(truth, scores_b)
    found = sig.compare_tables(a, b, "topic_f1_macro")
    own = truth_matrix(truth, TOPICS)
    gap, (low, high), p = direct(own, scores_a >= THRESHOLD, scores_b >= THRESHOLD, resamples=4000, seed=7)
    assert found.difference == pytest.approx(gap, abs=1e-12)
    assert found.ci95[0] == pytest.approx(low, abs=0.01) and found.ci95[1] == pytest.approx(high, abs=0.01)
    # Monte Carlo error of a p-value from 2,000 swaps: at most about 0.011; small ones are tighter
    assert found.p_value == pytest.approx(p, abs=0.005 if p < 0.05 else 0.035)
    assert found.test == sig.RANDOMIZATION and found.examples == 300
    if real is not None:
        assert found.real is real and found.outcome == "better"
    assert found == sig.compare_tables(a, b, "topic_f1_macro")  # seeded: the same every time


def test_on_all_calls_each_topic_metric_is_the_one_the_run_logs():
    truth = calls(200, seed=4)
    scores = scores_of(truth, 0.35, seed=5)
    table, expected = table_of(truth, scores), logged(truth, scores)
    other = table_of(truth, scores_of(truth, 0.4, seed=6))
    for metric in TOPIC_METRICS:
        assert sig.metric_value(table, metric) == pytest.approx(expected[metric], abs=1e-12), metric
        found = sig.estimate(table, metric)
        assert found.value == pytest.approx(expected[metric], abs=1e-12) and found.examples == 200
        assert found.ci95[0] < found.value < found.ci95[1], metric
        assert found.method == "bootstrap over calls"
        assert sig.compare_tables(table, other, metric).a == pytest.approx(expected[metric], abs=1e-12)
    # the topic never true and never tagged counts as 0 in the macro average, as scikit-learn's zero_division=0
    assert expected["topic_f1_macro"] < logged(truth, scores)["topic_f1_micro"]
    # read back as MLflow's JSON gives them (eval_ and metrics. prefixes read as the metric itself)
    assert sig.supported("metrics.topic_f1_macro") == "topic_f1_macro" == sig.supported("eval_topic_f1_macro")


def test_the_answer_in_words_counts_calls():
    truth = calls(300, seed=1)
    a = table_of(truth, scores_of(truth, 0.3, seed=2))
    b = table_of(truth, scores_of(truth, 0.45, seed=3))
    found = sig.compare_tables(a, b, "topic_f1_macro")
    assert found.verdict().startswith(f"better by {found.difference:.3f} topic_f1_macro on these 300 calls: a clear "
                                      "improvement (p < 0.001; 95% interval +")
    assert sig.compare_tables(b, a, "topic_f1_macro").verdict().startswith("worse by ")
    assert sig.compare_tables(a, a.copy(), "topic_f1_macro").verdict().startswith("the same topic_f1_macro")
    assert sig.estimate(a, "topic_f1_macro").words().endswith(", on 300 calls)")
    # a call right or wrong as a whole is not what is tested: no split of calls, nothing said about accuracy
    assert found.a_only is None and found.discordance is None and found.to_json()["metric"] == "topic_f1_macro"
    assert found.evidence()["verdict"] == found.verdict() and found.evidence()["test"] == sig.RANDOMIZATION


def test_compare_finds_the_runs_within_noise_of_the_best_by_topic_f1_macro():
    from core.examples import noise

    truth = calls(300, seed=1)
    tables = {"best": table_of(truth, scores_of(truth, 0.45, seed=3)),
              "close": table_of(truth, scores_of(truth, 0.44, seed=16)),
              "weak": table_of(truth, scores_of(truth, 0.3, seed=2))}
    refs = [noise.RunRef(name, name, "d" * 16, sig.metric_value(t, "topic_f1_macro")) for name, t in tables.items()]
    found = noise.against_best(refs[0], refs[1:], "topic_f1_macro", tables.get)
    assert [r.status for r in found.rivals] == [noise.WITHIN, noise.WORSE]
    assert found.sentence().startswith("1 run is within what chance gives on 300 calls: close (")
    assert found.detectable() == ""  # what a set of calls can tell is said for accuracy only
    intervals = noise.group_intervals(pd.DataFrame({"run_id": list(tables), "status": "FINISHED",
                                                    "metrics.topic_f1_macro": [r.value for r in refs],
                                                    "tags.run_type": "fine_tune", "params.lr": ["1", "2", "3"]}),
                                      "topic_f1_macro", "params.lr", tables.get)
    assert intervals["best"] == sig.estimate(tables["best"], "topic_f1_macro").ci95


def test_two_thousand_resamples_of_four_hundred_calls_and_ten_topics_take_about_a_second():
    truth = calls(400, seed=8)
    a = table_of(truth, scores_of(truth, 0.3, seed=9))
    b = table_of(truth, scores_of(truth, 0.33, seed=10))
    started = time.perf_counter()
    sig.compare_tables(a, b, "topic_f1_macro")  # 2,000 resamples and 2,000 swaps
    sig.estimate(a, "topic_f1_macro")
    assert time.perf_counter() - started < 5  # about 0.2 s alone; a loaded 2-core machine may take several times that


def test_tables_that_cannot_give_a_topic_metric_say_why():
    truth = calls(40, seed=11)
    table = table_of(truth, scores_of(truth, 0.3, seed=12))
    assert "topic_f1_weighted cannot be computed from a predictions table" in \
        sig.compare_tables(table, table, "topic_f1_weighted").why
    assert "topic_f1_macro" in sig.why_not(None, "loss")  # the refusal names what a table can give
    pairs = build_table([f"line {i}" for i in range(4)], ["a", "b", "c", "d"], ["h"] * 4, [0, 1, 0, 1],
                        np.eye(2)[[0, 1, 1, 1]], {0: "not_entailment", 1: "entailment"})
    assert "holds sentence pairs, not calls tagged with topics" in sig.why_not(pairs, "topic_f1_macro")
    unknown = table.assign(true_label=table["true_label"].where(table.index > 0, "refunds; topic 1"))
    assert "the topic 'refunds', which has no score column" in sig.why_not(unknown, "topic_f1_macro")
    assert "run B has no predictions table" in sig.compare_tables(table, None, "topic_f1_macro").why
    assert "no predictions table" in sig.estimate(None, "topic_accuracy").why


# -- on a store of two logged topic runs: the command line, Compare, the promotion and its record -------------------
class Calls(SimpleNamespace):
    """The validation calls as ``core.data.Examples`` gives them to ``log_call_predictions``."""

    def __len__(self) -> int:
        return len(self.rows)


def log_calls_run(name: str, truth: list[list[str]], scores: np.ndarray, tags: dict | None = None) -> str:
    """A finished run as a topic run leaves it: its topic metrics, its validation digest, its per-call table."""
    import mlflow

    from core.examples.table import log_call_predictions

    n = len(truth)
    found = Calls(rows=[f"line {i + 2}, call_id V-{i}" for i in range(n)], text_a=[f"call {i}" for i in range(n)],
                  labels=truth)
    with mlflow.start_run(run_name=name, tags=tags) as run:
        mlflow.log_params({"validation_digest": "d" * 16, "topic_pairs.validation_pairs": str(n * len(TOPICS))})
        mlflow.log_metrics(logged(truth, scores))
        log_call_predictions(found, scores, TOPICS, THRESHOLD, cap=5000)
    return run.info.run_id


@pytest.fixture
def two_runs(store):
    """(store, logged metrics of A, run A, run B): a zero-shot run and a clearly better one on the same 150 calls."""
    import mlflow

    from core.settings import configure_mlflow, ensure_experiment

    configure_mlflow(store)
    mlflow.set_experiment(experiment_id=ensure_experiment("Calls", store))
    truth = calls(150, seed=13)
    scores_a, scores_b = scores_of(truth, 0.3, seed=14), scores_of(truth, 0.45, seed=15)
    run_a, run_b = log_calls_run("zero-shot", truth, scores_a), log_calls_run("tuned", truth, scores_b)
    return store, logged(truth, scores_a), run_a, run_b


def expected(run_a: str, run_b: str, metric: str) -> sig.Difference:
    """B against A, from the two runs' tables as read back from the store."""
    from core import runs
    from core.examples import read_predictions

    client = runs.client()
    return sig.compare_tables(read_predictions(client, run_a), read_predictions(client, run_b), metric)


def test_compare_on_the_command_line_offers_and_answers_the_topic_metrics(two_runs):
    store, logged_a, run_a, run_b = two_runs
    env = child_env(TUNEBOARD_HOME=str(store.home), TUNEBOARD_USER="tester")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    done = cli("compare", run_a, run_b, "--metric", "topic_f1_macro", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    found = expected(run_a, run_b, "topic_f1_macro")
    assert answer["a"] == pytest.approx(logged_a["topic_f1_macro"], abs=1e-9)
    assert {k: answer[k] for k in ("metric", "b", "difference", "p_value", "real", "examples")} == \
        {"metric": "topic_f1_macro", "b": found.b, "difference": found.difference, "p_value": found.p_value,
         "real": True, "examples": 150}
    assert answer["ci95"] == list(found.ci95) and answer["detectable"] is None

    text = cli("compare", run_a, run_b, "--metric", "topic_recall_macro")
    assert text.returncode == 0, text.stderr
    recall = expected(run_a, run_b, "topic_recall_macro")
    assert f"Difference (B minus A): {recall.difference:+.4f}; 95% interval {recall.ci95[0]:+.4f}" in text.stdout
    assert "(paired bootstrap over calls)" in text.stdout and f"({sig.RANDOMIZATION})" in text.stdout
    assert f"B against A: {recall.verdict(better='difference')}." in text.stdout

    refused = cli("compare", run_a, run_b, "--metric", "topic_f1_weighted")
    assert refused.returncode == 2
    assert "No answer: topic_f1_weighted cannot be computed from a predictions table" in refused.stdout
    assert "topic_f1_macro" in " ".join(cli("compare", "--help").stdout.split())


def test_compare_page_says_whether_the_lead_by_topic_f1_macro_is_real(two_runs):
    from test_pages import app

    from core import runs

    _, _, run_a, run_b = two_runs
    at = app("pages/compare.py")
    at.multiselect(key="cmp_exps").set_value([runs.client().get_experiment_by_name("Calls").experiment_id]).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_metric").value == "topic_f1_macro"  # a topic run's default
    found = expected(run_b, run_a, "topic_f1_macro")  # the other run (B) against the best (A)
    said = next(i.value for i in at.info if "within what chance gives" in i.value)
    assert found.real and said == ("No other run is within what chance gives on 150 calls: tuned is clearly ahead of "
                                   "the one other run compared.")


def test_compare_page_says_whether_the_gain_over_the_baseline_is_real(store):
    """The best fine-tune against its own pretrained baseline, example by example: a clear gain, and a gain
    chance could give."""
    import mlflow
    from test_pages import app

    from core import runs
    from core.settings import configure_mlflow, ensure_experiment

    configure_mlflow(store)
    truth = calls(150, seed=13)
    for name, step in (("Clear", 0.15), ("Slight", 0.002)):
        mlflow.set_experiment(experiment_id=ensure_experiment(name, store))
        base = log_calls_run("m_pretrained_baseline", truth, scores_of(truth, 0.3, seed=14),
                             {"run_type": "baseline", "base_model_name": "m"})
        tuned = log_calls_run("m_calls_param_set1", truth, scores_of(truth, 0.3 + step, seed=14),
                              {"run_type": "fine_tune", "base_model_name": "m"})
        at = app("pages/compare.py")
        at.multiselect(key="cmp_exps").set_value([runs.client().get_experiment_by_name(name).experiment_id]).run()
        assert not at.exception, at.exception
        found = expected(base, tuned, "topic_f1_macro")  # the fine-tune (B) against its baseline (A)
        said = [i.value for i in at.info if i.value.startswith("Against its untrained baseline")]
        verdict = found.verdict(better="gain").replace("<", "&lt;")  # as markdown shows it: "p < 0.001"
        assert said == [f"Against its untrained baseline: {verdict}."], said
        assert said[0].endswith("not a clear gain.") == (name == "Slight") and found.real == (name == "Clear")
        # the baseline is no rival: the one fine-tune has nothing to be within noise of
        assert "m_calls_param_set1 is the only fine-tuned run in view: there is no other to compare it with." in \
            [i.value for i in at.info]


def test_a_promotion_by_topic_f1_macro_records_that_test_in_its_decision_record(two_runs):
    from core import runs as runs_mod
    from core.examples import evaluation, read_predictions
    from core.registry import decision_record
    from core.registry.model_transition import ModelTransition

    _, _, run_a, run_b = two_runs
    client = runs_mod.client()
    transition = ModelTransition("Calls_Topics")
    # the table's folder stands in for a model: the registry keeps a pointer, and nothing here loads it
    first, second = (transition.register_run(run, f"{run.info.artifact_uri}/predictions")
                     for run in (client.get_run(r) for r in (run_a, run_b)))
    transition.promote(first.version, "Production", reason="first", user="tester")
    # what the confirmation shows and records as evidence (pages/compare_examples.promotion_changes)
    shown = evaluation.like_for_like(client, "Calls_Topics", transition.current("Production"), run_b, "d" * 16, None,
                                     lambda run_id: read_predictions(client, run_id), "topic_f1_macro")
    assert shown.verdict == f"Against version 1 in production: {expected(run_a, run_b, 'topic_f1_macro').verdict()}."
    assert shown.evidence["metric"] == "topic_f1_macro" and "detectable_accuracy_difference" not in shown.evidence
    done = transition.promote(second.version, "Production", reason="better tags", user="tester",
                              metric="topic_f1_macro")
    decision, _ = decision_record.read(client, done.tags[decision_record.VERSION_TAG])
    said = decision["comparison"]["verdict"]
    assert said == shown.verdict
    assert said.startswith("Against version 1 in production: better by ") and " topic_f1_macro on these 150 calls: " \
        in said
    assert decision["comparison"]["evidence"]["metric"] == "topic_f1_macro"
