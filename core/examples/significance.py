"""Is the difference real? Uncertainty over predictions tables, in plain words.

Pure functions over the tables ``core.examples.table`` reads (one row per validation example), written over their
``correct``, ``true_label``, ``predicted_label`` and ``score: <label>`` columns only, so any table of that shape
works:

- :func:`estimate`: one run's value of a metric with its 95% interval (Wilson's interval for accuracy, a seeded
  bootstrap over examples for the others);
- :func:`compare_tables`: two runs on the same examples: the difference (B minus A), its 95% interval by a seeded,
  paired bootstrap over examples, and a p-value: McNemar's exact test for accuracy (a two-sided binomial test on
  the examples one run gets right and the other wrong), a paired randomization test for the other metrics;
- :func:`detectable_difference`: the smallest accuracy difference a validation set detects at 80% power;
- the verdicts in words ("better by 0.021 accuracy, but on these 400 examples a difference this size comes by
  chance in 31% of cases: not a clear improvement").

The statistics are scipy's (``bootstrap(paired=True)``, ``binomtest``, ``monte_carlo_test``, ``binom``); the
metrics themselves, vectorised over resamples, are ``core.examples.table_metrics``. A topic run's ``topic_*`` metrics
(``topic_f1_macro``...) are read from its per-call table and resampled, swapped and counted over calls, with the
paired randomization test. Where a question has no answer
(different validation files, no table, a metric the table cannot give) the result says why and holds no number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, stats

from core.examples.analysis import matched
from core.examples.table_metrics import (
    METRICS,
    NAMES,
    TOPIC_METRICS,
    Coded,
    code_tables,
    from_codes,
    metric_value,
    name_of,
    right_or_wrong,
    supported,
    unit,
    why_not,
)

__all__ = ["ALPHA", "BOOTSTRAP", "CONFIDENCE", "MCNEMAR", "METRICS", "NAMES", "POWER", "RANDOMIZATION", "RESAMPLES",
           "SEED", "TOPIC_METRICS", "Difference", "Estimate", "about", "accuracy_difference", "chance",
           "compare_tables", "detectable_difference", "detectable_words", "estimate", "mcnemar", "mcnemar_power",
           "metric_value", "name_of", "p_text", "supported", "unit", "why_not"]

ALPHA = 0.05  # a difference is "real" when p < ALPHA
CONFIDENCE = 0.95
POWER = 0.8
RESAMPLES = 2000  # bootstrap and randomization resamples: p and interval ends steady to about 0.005
SEED = 0
BATCH = 250  # resamples computed at once: bounds memory at 5,000 examples (a few tens of MB)
MCNEMAR = "McNemar's exact test"
RANDOMIZATION = "paired randomization test"
BOOTSTRAP = "paired bootstrap over examples"


# -- one run -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """One run's value of a metric on its validation examples, with its 95% interval (None: ``why`` says why)."""

    metric: str
    examples: int
    value: float | None = None
    ci95: tuple[float, float] | None = None
    method: str = ""
    why: str | None = None

    def words(self) -> str:
        """"accuracy 0.797 (95% interval 0.755 to 0.834, on 400 examples)"."""
        if self.why:
            return f"{name_of(self.metric)}: no interval, as {self.why}"
        interval = f"95% interval {self.ci95[0]:.3f} to {self.ci95[1]:.3f}, " if self.ci95 else ""
        return f"{name_of(self.metric)} {self.value:.3f} ({interval}on {self.examples} {unit(self.metric)})"


def estimate(table: pd.DataFrame | None, metric: str, *, seed: int = SEED, resamples: int = RESAMPLES) -> Estimate:
    """One run's ``metric`` with its 95% interval: Wilson's interval for accuracy (``scipy.stats.binomtest``), a
    seeded percentile bootstrap over examples for the others (``scipy.stats.bootstrap``; over calls for a topic
    metric)."""
    why = why_not(table, metric)
    if why:
        return Estimate(metric, 0 if table is None else len(table), why=why)
    bare, n = supported(metric), len(table)
    if bare == "accuracy":
        right = int(right_or_wrong(table).sum())
        ci = stats.binomtest(right, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return Estimate(bare, n, right / n, (float(ci.low), float(ci.high)), "Wilson score interval")
    data = code_tables([table], bare)
    value = float(from_codes(data, bare, data.runs[0]))
    result = stats.bootstrap(data.runs[0], lambda *arrays, axis=-1: from_codes(data, bare, arrays), paired=True,
                             vectorized=True, n_resamples=resamples, batch=BATCH, method="percentile",
                             confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    return Estimate(bare, n, value, _interval(result), f"bootstrap over {unit(bare)}")


def _interval(result) -> tuple[float, float] | None:
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None  # a resample lacking a class


# -- two runs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """Run B against run A on the same validation examples: ``difference`` is B minus A.

    ``p_value``: how often chance alone gives a difference at least this large (McNemar's exact test for
    accuracy); ``ci95``: the paired bootstrap's 95% interval of the difference. ``a_only`` / ``b_only``: the
    examples only A / only B gets right. With ``why`` set there is no answer and no number.
    """

    metric: str
    examples: int = 0
    a: float | None = None
    b: float | None = None
    difference: float | None = None
    ci95: tuple[float, float] | None = None
    p_value: float | None = None
    test: str = ""
    a_only: int | None = None
    b_only: int | None = None
    why: str | None = None

    @property
    def real(self) -> bool | None:
        """Whether the difference is more than chance gives (p < 0.05); None without an answer."""
        return None if self.p_value is None else bool(self.p_value < ALPHA)

    @property
    def outcome(self) -> str:
        """"better" or "worse" (B clearly is), "unclear" (chance could give it, or no difference) or "none" (no
        answer): how a page colours the verdict."""
        if self.why or self.p_value is None:
            return "none"
        if not self.real or not self.difference:
            return "unclear"
        return "better" if self.difference > 0 else "worse"

    @property
    def discordance(self) -> float | None:
        """The share of examples one run gets right and the other wrong."""
        if self.a_only is None or self.b_only is None or not self.examples:
            return None
        return (self.a_only + self.b_only) / self.examples

    def verdict(self, *, better: str = "improvement") -> str:
        """The answer in words, B against A: "better by 0.021 accuracy, but on these 400 examples a difference
        this size comes by chance in 31% of cases: not a clear improvement", or "better by 0.027 accuracy on
        these 400 examples: a clear improvement (p = 0.002; 95% interval +0.013 to +0.041)"."""
        if self.why:
            return f"no answer: {self.why}"
        name, n, gap = name_of(self.metric), f"{self.examples} {unit(self.metric)}", self.difference
        if abs(gap) < 5e-7:
            return f"the same {name} ({self.b:.3f}) on these {n}: no difference to tell"
        size = f"{'better' if gap > 0 else 'worse'} by {abs(gap):.3f} {name}"
        if self.real:
            what = f"a clear {better}" if gap > 0 else "clearly worse"
            return f"{size} on these {n}: {what} ({self.figures()})"
        what = f"not a clear {better}" if gap > 0 else "not clearly worse"
        return f"{size}, but on these {n} {chance(self.p_value)}: {what}"

    def figures(self) -> str:
        """"p = 0.002; 95% interval +0.013 to +0.041"."""
        interval = f"; 95% interval {self.ci95[0]:+.3f} to {self.ci95[1]:+.3f}" if self.ci95 else ""
        return f"{p_text(self.p_value)}{interval}"

    def to_json(self) -> dict:
        """``metric``, ``a``, ``b``, ``difference``, ``ci95`` ([low, high]), ``p_value``, ``real``, ``test``,
        ``examples``, ``a_only``, ``b_only``, ``verdict``, ``why`` (None where there is no answer)."""
        return {"metric": self.metric, "a": self.a, "b": self.b, "difference": self.difference,
                "ci95": list(self.ci95) if self.ci95 else None, "p_value": self.p_value, "real": self.real,
                "test": self.test or None, "examples": self.examples, "a_only": self.a_only, "b_only": self.b_only,
                "verdict": self.verdict(better="difference"), "why": self.why}

    def evidence(self, a: str = "a", b: str = "b") -> dict[str, str]:
        """The figures as text, for version tags and the audit trail; ``a`` and ``b`` name the two sides."""
        if self.why:
            return {"metric": self.metric, "verdict": self.verdict()}
        found = {"metric": self.metric, "examples": str(self.examples), a: f"{self.a:.4f}", b: f"{self.b:.4f}",
                 "difference": f"{self.difference:+.4f}", "p_value": f"{self.p_value:.4g}", "test": self.test,
                 "verdict": self.verdict()}
        if self.ci95:
            found["ci95"] = f"{self.ci95[0]:+.4f} to {self.ci95[1]:+.4f}"
        return found


def p_text(p: float) -> str:
    """"p = 0.002", "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def chance(p: float) -> str:
    """How often chance alone gives a difference this size, in words."""
    if p >= 0.995:
        return "a difference this size is well within what chance gives"
    return f"a difference this size comes by chance in {p * 100:.0f}% of cases"


def mcnemar(a_only: int, b_only: int) -> float:
    """McNemar's exact test: the two-sided binomial test (``scipy.stats.binomtest``) of the examples only B gets
    right among those the two runs split on. 1.0 when they split on none."""
    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(b_only, a_only + b_only, 0.5).pvalue)


def accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray, *, seed: int = SEED,
                        resamples: int = RESAMPLES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(difference, low, high): B's accuracy minus A's and its 95% interval by a seeded, paired percentile
    bootstrap over examples (``scipy.stats.bootstrap(paired=True)``). The last axis holds the examples; any
    leading axes are separate comparisons (one call for many simulated ones)."""
    a, b = np.asarray(correct_a, dtype=np.int8), np.asarray(correct_b, dtype=np.int8)
    result = stats.bootstrap((a, b), lambda x, y, axis=-1: y.mean(axis=axis) - x.mean(axis=axis), paired=True,
                             vectorized=True, axis=-1, n_resamples=resamples, batch=BATCH, method="percentile",
                             confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    return b.mean(axis=-1) - a.mean(axis=-1), result.confidence_interval.low, result.confidence_interval.high


def _paired(a: pd.DataFrame | None, b: pd.DataFrame | None, digests: tuple[str | None, str | None]):
    """(A's rows, B's rows) on the same examples, aligned; or a reason there is no pairing."""
    if all(digests) and digests[0] != digests[1]:
        return "the two runs were evaluated on different validation files, so their examples cannot be paired"
    if a is None or b is None:
        which = "A" if a is None else "B"
        return f"run {which} has no predictions table (it was logged before runs kept them, or by another tool)"
    left, right = matched(a, b)
    if not len(left):
        return "the two runs share no validation example"
    if not all(digests) and not len(left) == len(a) == len(b):
        return (f"the two runs share only {len(left)} of their validation examples ({len(a)} and {len(b)}), and "
                "nothing says they were evaluated on the same file")
    return left, right


def compare_tables(a: pd.DataFrame | None, b: pd.DataFrame | None, metric: str = "accuracy", *,
                   digests: tuple[str | None, str | None] = (None, None), interval: bool = True, seed: int = SEED,
                   resamples: int = RESAMPLES) -> Difference:
    """Run B against run A on ``metric``, example by example (:class:`Difference`; B minus A).

    ``digests``: the runs' ``validation_digest`` params: different ones mean different files, and no answer.
    Examples are paired by their text, hypothesis and true label (``core.examples.analysis``). ``interval=False``
    skips the bootstrap (the p-value alone, to sort runs into "within noise" or not).
    """
    bare = supported(metric)
    if bare is None:
        return Difference(str(metric), why=why_not(None, metric))
    paired = _paired(a, b, digests)
    if isinstance(paired, str):
        return Difference(bare, why=paired)
    left, right = paired
    for side, table in (("A", left), ("B", right)):
        why = why_not(table, bare)
        if why:
            return Difference(bare, len(left), why=f"for run {side}, {why}")
    n = len(left)
    ca, cb = right_or_wrong(left), right_or_wrong(right)
    a_only, b_only = int((ca & ~cb).sum()), int((~ca & cb).sum())
    if bare in TOPIC_METRICS:  # a call "right" means all its topics tagged exactly: not what is tested, so unsaid
        a_only = b_only = None
    data = code_tables([left, right], bare)
    value_a, value_b = (float(from_codes(data, bare, arrays)) for arrays in data.runs)
    found = {"metric": bare, "examples": n, "a": value_a, "b": value_b, "difference": value_b - value_a,
             "a_only": a_only, "b_only": b_only}
    test = MCNEMAR if bare == "accuracy" else RANDOMIZATION
    if all((x == y).all() for x, y in zip(*data.runs, strict=True)):  # every resample and swap gives 0
        return Difference(**found, ci95=(0.0, 0.0) if interval else None, p_value=1.0, test=test)
    p = mcnemar(a_only, b_only) if bare == "accuracy" else _randomization(data, bare, seed, resamples)
    ci = None
    if interval and bare == "accuracy":
        ci = tuple(float(x) for x in accuracy_difference(ca, cb, seed=seed, resamples=resamples)[1:])
    elif interval:
        parts = len(data.runs[0])
        result = stats.bootstrap(
            (*data.runs[0], *data.runs[1]),
            lambda *arrays, axis=-1: from_codes(data, bare, arrays[parts:]) - from_codes(data, bare, arrays[:parts]),
            paired=True, vectorized=True, n_resamples=resamples, batch=BATCH, method="percentile",
            confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
        ci = _interval(result)
    return Difference(**found, ci95=ci, p_value=p, test=test)


def _randomization(data: Coded, metric: str, seed: int, resamples: int) -> float:
    """The two-sided p-value of a paired randomization test: if the runs did not differ, which of the two made
    each example's prediction would not matter, so random swaps per example give chance's differences.

    Only the examples where the runs' codes differ are swapped (a swap elsewhere changes nothing); the rest are
    counted once. ``scipy.stats.monte_carlo_test`` draws the swaps: its ``permutation_test(permutation_type=
    "samples")`` does the same but loops over examples in Python (about 0.8 s at 5,000 examples).
    """
    (a_arrays, b_arrays), rng = data.runs, np.random.default_rng(seed)
    differ = np.logical_or.reduce([x != y for x, y in zip(a_arrays, b_arrays, strict=True)])
    base = tuple(np.bincount(x[~differ], minlength=data.bins) for x in a_arrays)
    a_arrays, b_arrays = tuple(x[differ] for x in a_arrays), tuple(y[differ] for y in b_arrays)

    def gap(swapped: np.ndarray, axis: int = -1) -> np.ndarray:
        swapped = swapped.astype(bool)
        a_side = tuple(np.where(swapped, y, x) for x, y in zip(a_arrays, b_arrays, strict=True))
        b_side = tuple(np.where(swapped, x, y) for x, y in zip(a_arrays, b_arrays, strict=True))
        return from_codes(data, metric, b_side, base) - from_codes(data, metric, a_side, base)

    result = stats.monte_carlo_test(np.zeros(int(differ.sum()), dtype=np.int8),
                                    lambda size: rng.integers(0, 2, size=size, dtype=np.int8), gap,
                                    vectorized=True, n_resamples=resamples, batch=BATCH)
    return float(result.pvalue)


# -- how much a validation set can tell --------------------------------------------------------------------------
def mcnemar_power(examples: int, discordance: float, difference: float, *, alpha: float = ALPHA) -> float:
    """The chance McNemar's exact test finds a real accuracy difference of ``difference`` on ``examples`` examples
    when the two runs split (one right, one wrong) on ``discordance`` of them; exact, through ``scipy.stats.binom``.

    The number of split examples is binomial; of those, the better run gets right a binomial share
    ``(discordance + difference) / (2 * discordance)``; the test rejects when the split is at least as lopsided as
    its two-sided level allows (:func:`mcnemar` with p < ``alpha``).
    """
    if not 0 < discordance <= 1 or not 0 <= difference <= discordance:
        raise ValueError("need 0 < discordance <= 1 and 0 <= difference <= discordance")
    split = np.arange(examples + 1)
    weight = stats.binom.pmf(split, examples, discordance)
    # the test rejects k or fewer (and the mirror image) when P(K <= k) < alpha / 2 under a fair split
    low = stats.binom.ppf(alpha / 2, split, 0.5) - 1
    share = (discordance + difference) / (2 * discordance)
    reject = stats.binom.cdf(low, split, share) + stats.binom.sf(split - low - 1, split, share)
    return float(np.sum(weight * np.where(low >= 0, reject, 0.0)))


@lru_cache(maxsize=256)  # pages ask on every rerun; 0.25 s at 5,000 examples
def detectable_difference(examples: int, discordance: float, *, power: float = POWER,
                          alpha: float = ALPHA) -> float | None:
    """The smallest accuracy difference McNemar's exact test detects with ``power`` (80%) on ``examples``
    examples, for two runs splitting on ``discordance`` of them; None when no difference is that detectable."""
    if examples < 1 or not 0 < discordance <= 1:
        return None
    if mcnemar_power(examples, discordance, discordance, alpha=alpha) < power:
        return None
    return float(optimize.brentq(lambda d: mcnemar_power(examples, discordance, d, alpha=alpha) - power,
                                 0.0, discordance, xtol=1e-5))


def about(value: float) -> str:
    """A rounded figure for a sentence: two decimals, or two significant digits below 0.01."""
    return f"{value:.2f}" if value >= 0.0095 else f"{value:.2g}"


def detectable_words(examples: int, discordance: float | None) -> str:
    """"With 400 examples, differences in accuracy under about 0.05 are hard to tell from chance." (for two runs
    that split on ``discordance`` of the examples); "" when it cannot be said."""
    if not discordance:
        return ""
    smallest = detectable_difference(examples, discordance)
    if smallest is None:
        return (f"With {examples} examples, no difference in accuracy between runs that split on {discordance:.0%} "
                "of them can be told from chance reliably.")
    return (f"With {examples} examples, differences in accuracy under about {about(smallest)} are hard to tell "
            "from chance.")

