"""Is the difference real? (issue 19): the statistics over predictions tables against cases worked out by hand, the
metrics against scikit-learn's, and calibration by seeded simulation. No MLflow here: tables are built the way
runs build them (``core.examples.table.build_table``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.examples import significance as sig
from core.examples.table import build_table
from core.metrics import classification_metrics

BINARY = {0: "not_entailment", 1: "entailment"}


def table_of(correct: list[bool] | np.ndarray, *, order: np.ndarray | None = None) -> pd.DataFrame:
    """A binary predictions table whose examples are right or wrong as ``correct`` says (true labels alternate)."""
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    true = np.arange(n) % 2
    said = np.where(correct, true, 1 - true)
    probs = np.where(said[:, None] == np.arange(2), 0.8, 0.2)
    frame = build_table([f"line {i + 2}" for i in range(n)], [f"call {i}" for i in range(n)], None, true, probs,
                        BINARY)
    return frame if order is None else frame.iloc[order].reset_index(drop=True)


def split(both: int, only_a: int, only_b: int, neither: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs' tables on the same examples: right on both, only A, only B, on neither."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return table_of(a), table_of(b)


def model_table(n: int, classes: dict[int, str], seed: int, *, never_true: tuple[int, ...] = ()):
    """A table of ``n`` examples from a noisy model, and what it was built from (labels, probabilities)."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    labels = rng.choice([c for c in range(k) if c not in never_true], size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).round(6)
    return build_table([f"line {i}" for i in range(n)], [f"text {i}" for i in range(n)], None, labels, probs,
                       classes), labels, probs


# -- cases worked out by hand ---------------------------------------------------------------------------------------
def test_mcnemar_exact_on_ten_discordant_examples_split_nine_to_one():
    # P(K <= 1 or K >= 9 | K ~ Binomial(10, 1/2)) = 2 * (1 + 10) / 2**10 = 22 / 1024
    assert sig.mcnemar(1, 9) == pytest.approx(22 / 1024) == pytest.approx(0.0215, abs=5e-5)
    assert sig.mcnemar(9, 1) == sig.mcnemar(1, 9)
    assert sig.mcnemar(5, 5) == 1.0
    assert sig.mcnemar(0, 0) == 1.0  # they split on nothing: nothing to tell


def test_a_pair_split_nine_to_one_on_a_hundred_examples():
    a, b = split(both=80, only_a=1, only_b=9, neither=10)
    found = sig.compare_tables(a, b, "accuracy")
    assert (found.a, found.b, found.examples, found.a_only, found.b_only) == (0.81, 0.89, 100, 1, 9)
    assert found.difference == pytest.approx(0.08)
    assert found.p_value == pytest.approx(22 / 1024) and found.real and found.test == sig.MCNEMAR
    # the bootstrap's interval of a mean of 9 (+1), 1 (-1) and 90 zeros: about 0.08 +- 2 x 0.03
    low, high = found.ci95
    assert 0 < low < 0.08 < high < 0.16
    assert found.verdict() == (f"better by 0.080 accuracy on these 100 examples: a clear improvement (p = 0.021; "
                               f"95% interval {low:+.3f} to {high:+.3f})")
    assert found.discordance == 0.10
    # B against A the other way round: the same p-value, the interval mirrored
    back = sig.compare_tables(b, a, "accuracy")
    assert back.difference == pytest.approx(-0.08) and back.p_value == found.p_value
    assert back.verdict().startswith("worse by 0.080 accuracy on these 100 examples: clearly worse (p = 0.021")
    assert (found.outcome, back.outcome) == ("better", "worse")


def test_not_a_clear_improvement_says_how_often_chance_gives_it():
    a, b = split(both=300, only_a=10, only_b=16, neither=74)  # p = 2 P(K <= 10 | Binomial(26, 1/2)) = 0.327
    found = sig.compare_tables(a, b, "accuracy")
    assert found.p_value == pytest.approx(0.3269, abs=1e-4) and not found.real
    assert found.verdict() == ("better by 0.015 accuracy, but on these 400 examples a difference this size comes by "
                               "chance in 33% of cases: not a clear improvement")
    assert sig.compare_tables(b, a, "accuracy").verdict().endswith("in 33% of cases: not clearly worse")
    assert found.outcome == "unclear"
    low, high = found.ci95
    assert low < 0 < high


def test_the_same_answers_on_every_example_is_no_difference():
    a, _ = split(both=30, only_a=5, only_b=0, neither=5)
    found = sig.compare_tables(a, a.copy(), "f1")
    assert (found.difference, found.p_value, found.ci95) == (0.0, 1.0, (0.0, 0.0))
    assert found.verdict() == f"the same F1 ({found.b:.3f}) on these 40 examples: no difference to tell"
    same_count = sig.compare_tables(*split(both=30, only_a=3, only_b=3, neither=4), "accuracy")
    assert same_count.difference == 0 and same_count.p_value == 1.0
    assert same_count.verdict().startswith("the same accuracy (0.825) on these 40 examples")


def test_wilson_interval_of_one_run_by_hand():
    # 80 right of 100: centre (0.8 + 1.96^2 / 200) / (1 + 1.96^2 / 100), half-width 1.96 sqrt(.0016 + 1.96^2 / 40000)
    # / (1 + 1.96^2 / 100): 0.7112 to 0.8666
    found = sig.estimate(table_of([True] * 80 + [False] * 20), "accuracy")
    assert found.value == 0.8 and found.examples == 100
    assert found.ci95 == pytest.approx((0.7112, 0.8666), abs=1e-4)
    assert found.words() == "accuracy 0.800 (95% interval 0.711 to 0.867, on 100 examples)"


def test_the_other_metrics_get_a_bootstrap_interval_around_their_value():
    table, _, _ = model_table(400, BINARY, seed=3)
    for metric in ("f1", "precision", "recall", "roc_auc"):
        found = sig.estimate(table, metric)
        assert found.ci95[0] < found.value < found.ci95[1], metric
        assert found.ci95[1] - found.ci95[0] < 0.2, metric  # 400 examples pin it down to a few hundredths
        assert found == sig.estimate(table, metric)  # seeded: the same every time


# -- the metrics, as scikit-learn computes them from the model's outputs --------------------------------------------
@pytest.mark.parametrize(("classes", "never_true"), [
    (BINARY, ()),
    ({0: "billing", 1: "fraud", 2: "login"}, ()),
    ({0: "billing", 1: "fraud", 2: "login", 3: "rollover"}, (3,)),  # a class never true: scores renormalised
    ({0: "billing", 1: "fraud", 2: "login"}, (2,)),  # two classes seen of three: binary ROC-AUC of the second
])
def test_metrics_from_a_table_equal_those_the_run_logs(classes, never_true):
    table, labels, probs = model_table(500, classes, seed=len(classes) + len(never_true), never_true=never_true)
    logged, _ = classification_metrics(labels, probs, classes)
    assert {m: sig.metric_value(table, m) for m in logged} == pytest.approx(logged, abs=1e-12)


def test_pairs_are_matched_by_example_not_by_row_order():
    table, _, _ = model_table(300, BINARY, seed=5)
    other, _, _ = model_table(300, BINARY, seed=6)
    other["text"], other["true_label"] = table["text"], table["true_label"]  # the same examples, another model
    other["correct"] = other["true_label"] == other["predicted_label"]
    shuffled = other.iloc[np.random.default_rng(0).permutation(300)].reset_index(drop=True)
    for metric in sig.METRICS:
        here, there = sig.compare_tables(table, other, metric), sig.compare_tables(table, shuffled, metric)
        assert (here.a, here.b, here.p_value, here.ci95) == (there.a, there.b, there.p_value, there.ci95), metric
        assert here.a == pytest.approx(sig.metric_value(table, metric))
        assert here.b == pytest.approx(sig.metric_value(other, metric))
        assert here.test == (sig.MCNEMAR if metric == "accuracy" else sig.RANDOMIZATION)
        assert set(here.to_json()) >= {"metric", "a", "b", "difference", "ci95", "p_value", "real"}


# -- no answer, and why -----------------------------------------------------------------------------------------------
def test_no_answer_says_why_and_holds_no_number():
    a, b = split(both=30, only_a=5, only_b=2, neither=3)
    cases = {
        "the two runs were evaluated on different validation files": sig.compare_tables(a, b, digests=("x", "y")),
        "run B has no predictions table": sig.compare_tables(a, None),
        "loss cannot be computed from a predictions table": sig.compare_tables(a, b, "loss"),
        "share no validation example": sig.compare_tables(a, b.assign(text=b["text"] + " (another file)")),
        "share only 20 of their validation examples (40 and 20)": sig.compare_tables(a, b.iloc[:20]),
    }
    for why, found in cases.items():
        assert why in found.why, found.why
        assert (found.difference, found.ci95, found.p_value, found.real) == (None, None, None, None)
        assert found.verdict().startswith("no answer: ")
        assert found.outcome == "none"
    # the same file (same digest): the examples both tables hold are compared
    assert sig.compare_tables(a, b.iloc[:20], digests=("x", "x")).examples == 20


def test_a_table_says_plainly_which_metrics_it_cannot_give():
    a, _ = split(both=30, only_a=5, only_b=2, neither=3)
    bare = a[["row", "text", "correct"]]  # another tool's table: which examples it got right, nothing else
    assert sig.why_not(bare, "accuracy") is None and sig.metric_value(bare, "accuracy") == 35 / 40
    assert "no true and predicted labels, which F1 needs" in sig.why_not(bare, "f1")
    unscored = a.drop(columns=[c for c in a.columns if c.startswith("score: ")])
    assert sig.why_not(unscored, "f1") is None
    assert "no score for every class, which ROC-AUC needs" in sig.why_not(unscored, "roc_auc")
    one_class = a[a["true_label"] == "entailment"]
    assert "a single class, so ROC-AUC is undefined" in sig.why_not(one_class, "roc_auc")
    assert "holds no examples" in sig.why_not(a.iloc[:0], "accuracy")
    assert "no predictions table" in sig.estimate(None, "f1").why
    with pytest.raises(ValueError, match="ROC-AUC"):
        sig.metric_value(unscored, "roc_auc")
    assert sig.supported("eval_f1") == "f1" and sig.supported("metrics.roc_auc") == "roc_auc"
    assert sig.supported("eval_loss") is None


# -- words -----------------------------------------------------------------------------------------------------------
def test_p_values_and_chance_in_words():
    assert sig.p_text(0.0004) == "p < 0.001" and sig.p_text(0.0215) == "p = 0.021"
    assert sig.chance(0.31) == "a difference this size comes by chance in 31% of cases"
    assert sig.chance(1.0) == "a difference this size is well within what chance gives"


def test_evidence_is_text_for_tags():
    found = sig.compare_tables(*split(both=80, only_a=1, only_b=9, neither=10))
    evidence = found.evidence(a="production", b="candidate")
    assert evidence["production"] == "0.8100" and evidence["candidate"] == "0.8900"
    assert evidence["difference"] == "+0.0800" and evidence["p_value"] == "0.02148"
    assert evidence["test"] == sig.MCNEMAR and evidence["verdict"] == found.verdict()
    assert all(isinstance(v, str) for v in evidence.values())


# -- calibration by seeded simulation ---------------------------------------------------------------------------------
# Vectorised, each takes 7-11 s alone on the 2-core machine, and 23-29 s beside another xdist worker building the
# shared store: marked slow, so `make check` leaves them to `make test`.
SIMULATIONS = 2000
EXAMPLES = 400


def _simulated(rng: np.random.Generator, accuracy_a: float, accuracy_b: float) -> tuple[np.ndarray, np.ndarray]:
    """2,000 pairs of runs on 400 examples each, their mistakes independent: (right or wrong) arrays."""
    return (rng.random((SIMULATIONS, EXAMPLES)) < accuracy_a), (rng.random((SIMULATIONS, EXAMPLES)) < accuracy_b)


@pytest.mark.slow
def test_with_no_real_difference_p_below_005_in_5_percent_and_the_interval_covers_0_in_95():
    a, b = _simulated(np.random.default_rng(19), 0.8, 0.8)
    p = np.array([sig.mcnemar(int((x & ~y).sum()), int((~x & y).sum())) for x, y in zip(a, b, strict=True)])
    # McNemar's exact test is conservative: with about 128 split examples its size is 4.1% (exact, by enumeration)
    assert 0.03 <= (p < 0.05).mean() <= 0.07
    _, low, high = sig.accuracy_difference(a, b)
    assert 0.93 <= ((low <= 0) & (0 <= high)).mean() <= 0.97


@pytest.mark.slow
def test_with_a_real_difference_the_interval_covers_it_in_95_percent():
    a, b = _simulated(np.random.default_rng(20), 0.78, 0.81)
    _, low, high = sig.accuracy_difference(a, b)
    assert 0.93 <= ((low <= 0.03) & (0.03 <= high)).mean() <= 0.97


@pytest.mark.slow
def test_the_randomization_test_of_f1_rejects_a_true_null_in_about_5_percent():
    a, b = _simulated(np.random.default_rng(21), 0.8, 0.8)
    # 300 pairs of runs that answer each example alike in distribution: their F1 differs by chance only
    rejected = [sig.compare_tables(table_of(x), table_of(y), "f1", interval=False).real
                for x, y in zip(a[:300], b[:300], strict=True)]
    assert 0.02 <= np.mean(rejected) <= 0.09  # 5% expected; 300 draws give about +- 2.5% either way


# -- how much a validation set can tell -----------------------------------------------------------------------------
def test_the_smallest_detectable_difference_at_80_percent_power():
    # 400 examples, runs splitting on 12.5% of them: about 0.05, as the normal approximation of McNemar's test says:
    # (z 0.975 + z 0.8) sqrt(0.125 / 400) = 2.80 x 0.0177 = 0.0495
    smallest = sig.detectable_difference(400, 0.125)
    assert smallest == pytest.approx(2.8016 * math.sqrt(0.125 / 400), rel=0.05)
    assert sig.detectable_words(400, 0.125) == ("With 400 examples, differences in accuracy under about 0.05 are hard "
                                                "to tell from chance.")
    assert sig.detectable_difference(5000, 0.125) < smallest / 3  # 12.5 times the examples: sqrt(12.5) = 3.5
    assert sig.detectable_difference(10, 0.1) is None  # one split example on average: nothing is detectable
    assert "no difference in accuracy" in sig.detectable_words(10, 0.1)
    assert sig.detectable_words(400, None) == ""


def test_the_power_behind_it_matches_a_simulation_of_the_test():
    examples, discordance = 400, 0.2
    smallest = sig.detectable_difference(examples, discordance)
    assert sig.mcnemar_power(examples, discordance, smallest) == pytest.approx(0.8, abs=1e-4)
    rng = np.random.default_rng(22)
    split_on = rng.binomial(examples, discordance, size=SIMULATIONS)
    only_b = rng.binomial(split_on, (discordance + smallest) / (2 * discordance))
    found = np.mean([sig.mcnemar(int(m - k), int(k)) < 0.05 for m, k in zip(split_on, only_b, strict=True)])
    assert 0.77 <= found <= 0.83
