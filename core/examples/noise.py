"""Which runs are within noise of the best: the best run against each other run, example by example; and any two
runs by id (:func:`compare_runs`, the CLI's ``compare``).

A page, the CLI and ``ModelSelector`` name runs differently (a runs DataFrame, MLflow runs); each turns its runs
into :class:`RunRef` and asks :func:`against_best`. A run is *within noise* of the best when the paired test of
``core.examples.significance`` finds no clear difference (p >= 0.05) on the validation examples both were
evaluated on. Runs evaluated on another file, or without a predictions table, get no answer and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from core import compare
from core.errors import NotFoundError
from core.examples import significance as sig
from core.examples.table import read_predictions
from core.metrics import metric_key

LIMIT = 30  # runs compared with the best at most, the closest first: each costs a table read and a test
# what a run is, against the best
BEST = "best"
WITHIN = "within noise"
WORSE = "clearly worse"
BETTER = "clearly better"  # on these examples: a best chosen by a logged metric that its table does not bear out
UNKNOWN = "cannot tell"
SKIPPED = "not compared"


@dataclass(frozen=True)
class RunRef:
    """A run as the comparison needs it: its id, a name to show, its validation file's digest (None: unknown),
    and its logged value of the metric (to order the runs; never used as the answer)."""

    run_id: str
    name: str
    digest: str | None = None
    value: float = float("nan")


@dataclass(frozen=True)
class Rival:
    """One run against the best: ``status`` is one of best, within noise, clearly worse, clearly better (on these
    examples), cannot tell (``why`` says why) or not compared (beyond :data:`LIMIT`)."""

    run: RunRef
    status: str
    difference: sig.Difference | None = None  # the run (B) against the best (A)
    why: str | None = None

    @property
    def cell(self) -> str:
        """The run's cell in a table's "within noise of best" column."""
        if self.status == BEST:
            return "best"
        if self.status in (WITHIN, WORSE, BETTER):
            p = sig.p_text(self.difference.p_value)
            return f"yes ({p})" if self.status == WITHIN else f"no, {self.status} ({p})"
        if self.status == SKIPPED:
            return f"not compared (only the {LIMIT} runs closest to the best are)"
        return f"cannot tell: {self.why}"


@dataclass(frozen=True)
class Noise:
    """The best run and how every other run compares with it, on ``metric``, over ``examples`` examples."""

    metric: str
    best: RunRef | None
    rivals: list[Rival] = field(default_factory=list)  # the closest first
    examples: int = 0
    why: str | None = None  # no comparison at all (the metric, or the best's table)

    def of(self, status: str) -> list[Rival]:
        """The runs of one status (:data:`WITHIN`, :data:`WORSE`...), closest to the best first."""
        return [r for r in self.rivals if r.status == status]

    @property
    def within(self) -> list[Rival]:
        """The runs whose difference from the best is what chance gives."""
        return self.of(WITHIN)

    def sentence(self) -> str:
        """"2 runs are within what chance gives on 400 examples: a (0.772), b (0.765). Any of them may be as good
        as c (0.780)." and the like, with the runs that could not be compared and why."""
        if self.best is None:
            return ""
        if self.why:
            return f"Whether other runs are within noise of {self.best.name} cannot be told: {self.why}."
        compared = [r for r in self.rivals if r.status in (WITHIN, WORSE, BETTER)]
        within, n = self.within, f"{self.examples} {sig.unit(self.metric)}"  # a topic metric counts calls
        if not self.rivals:
            head = f"{self.best.name} is the only fine-tuned run in view: there is no other to compare it with."
        elif not compared:
            head = f"No other run can be compared with {self.best.name} example by example."
        elif within:
            runs = ", ".join(f"{r.run.name} ({r.difference.b:.3f})" for r in within)
            head = (f"{len(within)} {'run is' if len(within) == 1 else 'runs are'} within what chance gives on {n}: "
                    f"{runs}. Any of them may be as good as {self.best.name} ({self.best_value:.3f}).")
        else:
            others = "the one other run compared" if len(compared) == 1 else f"all {len(compared)} runs compared"
            head = (f"No other run is within what chance gives on {n}: {self.best.name} is clearly ahead "
                    f"of {others}.")
        unknown, skipped = self.of(UNKNOWN), self.of(SKIPPED)
        if unknown:
            shown = "; ".join(f"{r.run.name}, as {r.why}" for r in unknown[:5])
            head += f" Not compared: {shown}{f'; and {len(unknown) - 5} more' if len(unknown) > 5 else ''}."
        if skipped:
            head += (f" {len(skipped)} {'run' if len(skipped) == 1 else 'runs'} further from the best "
                     f"{'was' if len(skipped) == 1 else 'were'} not compared (only the {LIMIT} closest are).")
        return head

    @property
    def best_value(self) -> float:
        compared = [r for r in self.rivals if r.difference is not None and r.difference.a is not None]
        return compared[0].difference.a if compared else self.best.value

    @property
    def discordance(self) -> float | None:
        """The share of examples the best and its closest compared rival split on (one right, one wrong)."""
        found = [r.difference.discordance for r in self.rivals if r.status in (WITHIN, WORSE, BETTER)]
        return found[0] if found else None

    def detectable(self) -> str:
        """How much the validation set can tell (:func:`significance.detectable_words`), for the best and its
        closest rival; "" when no pair was compared."""
        return sig.detectable_words(self.examples, self.discordance) if self.examples else ""

    def column(self) -> dict[str, str]:
        """{run_id: "within noise of best" cell} for the best and every run compared or skipped."""
        cells = {self.best.run_id: "best"} if self.best is not None else {}
        cells.update({r.run.run_id: r.cell for r in self.rivals})
        return cells


def against_best(best: RunRef, others: Sequence[RunRef], metric: str,
                 read: Callable[[str], pd.DataFrame | None], *, limit: int = LIMIT) -> Noise:
    """The best run against each of ``others`` (the closest ``limit`` by logged value; the rest "not compared").

    ``read(run_id)`` gives a run's predictions table or None (a page's cached reader, or
    ``core.examples.table.read_predictions`` with a client). Only p-values are computed (no intervals): McNemar's
    exact test for accuracy, a paired randomization test for the other metrics.
    """
    if sig.supported(metric) is None:
        return Noise(metric, best, why=sig.why_not(None, metric))
    table = read(best.run_id)
    why = sig.why_not(table, metric)
    if why:
        return Noise(metric, best, why=f"{best.name}: {why}")
    ordered = sorted(others, key=lambda r: abs(r.value - best.value) if np.isfinite(r.value) else np.inf)
    rivals = []
    for i, run in enumerate(ordered):
        if i >= limit:
            rivals.append(Rival(run, SKIPPED))
            continue
        if best.digest and run.digest and best.digest != run.digest:  # not even read: nothing to pair
            rivals.append(Rival(run, UNKNOWN, why="it was evaluated on another validation file"))
            continue
        other = read(run.run_id)
        why = sig.why_not(other, metric)
        found = None if why else sig.compare_tables(table, other, metric, digests=(best.digest, run.digest),
                                                     interval=False)
        if why or found.why:
            rivals.append(Rival(run, UNKNOWN, found, why or found.why))
        elif not found.real:
            rivals.append(Rival(run, WITHIN, found))
        else:
            rivals.append(Rival(run, WORSE if found.difference < 0 else BETTER, found))
    return Noise(metric, best, rivals, examples=len(table))


def _ref(row: pd.Series, metric: str) -> RunRef:
    digest = row.get("params.validation_digest")
    return RunRef(str(row["run_id"]), str(row.get("run_name") or row["run_id"]),
                  digest if isinstance(digest, str) and digest else None, compare.value_of(row, metric))


def in_frame(frame: pd.DataFrame, metric: str, read: Callable[[str], pd.DataFrame | None], *,
             limit: int = LIMIT) -> Noise:
    """:func:`against_best` over a runs DataFrame (``core.runs``' shape): its best candidate
    (``core.compare.best_run``) against every other candidate."""
    best = compare.best_run(frame, metric)
    if best is None:
        return Noise(metric, None, why="no finished run has the metric")
    others = compare.candidates(frame, metric)
    others = others[others["run_id"] != best["run_id"]]
    return against_best(_ref(best, metric), [_ref(row, metric) for _, row in others.iterrows()], metric, read,
                        limit=limit)


def against_baseline(frame: pd.DataFrame, metric: str,
                     read: Callable[[str], pd.DataFrame | None]) -> sig.Difference | None:
    """The best candidate (B) against its own pretrained baseline (A, ``core.compare.baseline_of``), example by
    example: is its gain more than chance gives? None where the best has no baseline in ``frame``."""
    best = compare.best_run(frame, metric)
    base = compare.baseline_of(frame, metric, best.name) if best is not None else None
    if base is None:
        return None
    a, b = _ref(base, metric), _ref(best, metric)
    if a.digest and b.digest and a.digest != b.digest:
        return sig.compare_tables(None, None, metric, digests=(a.digest, b.digest))
    return sig.compare_tables(read(a.run_id), read(b.run_id), metric, digests=(a.digest, b.digest))


def group_intervals(frame: pd.DataFrame, metric: str, column: str,
                    read: Callable[[str], pd.DataFrame | None]) -> dict[str, tuple[float, float]]:
    """{run_id: 95% interval} of the best run of each group of ``column`` (``core.compare.best_per_group``),
    for the runs whose predictions table gives the metric (:func:`significance.estimate`)."""
    if sig.supported(metric) is None:
        return {}
    found = {}
    for run_id in compare.best_per_group(frame, metric, column).get("run_id", []):
        estimate = sig.estimate(read(run_id), metric)
        if estimate.ci95 is not None:
            found[str(run_id)] = estimate.ci95
    return found



def run_ref(mlflow_client, run_id: str, metric: str) -> RunRef:
    """A run by its id, as :class:`RunRef` (its logged value of ``metric``, read as ``eval_<metric>`` where it
    logged only that); a NotFoundError when the store has no such run."""
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as exc:
        raise NotFoundError(f"there is no run {run_id!r} in this tracking store (give a run id, as MLflow's UI or "
                            "`python -m core.cli jobs` shows it).") from exc
    key = metric_key(run.data.metrics, metric)
    return RunRef(run.info.run_id, run.info.run_name or run.info.run_id, run.data.params.get("validation_digest"),
                  run.data.metrics[key] if key else float("nan"))


def compare_runs(mlflow_client, run_a: str, run_b: str, metric: str = "accuracy", *,
                 seed: int = sig.SEED) -> tuple[sig.Difference, RunRef, RunRef]:
    """Run B against run A on ``metric``, example by example (``significance.compare_tables``: B minus A, its
    95% interval, the p-value), with the two runs as :class:`RunRef`."""
    a, b = run_ref(mlflow_client, run_a, metric), run_ref(mlflow_client, run_b, metric)
    if a.digest and b.digest and a.digest != b.digest:
        tables = (None, None)  # different files: not even read, there is nothing to pair
    else:
        tables = (read_predictions(mlflow_client, a.run_id), read_predictions(mlflow_client, b.run_id))
    return sig.compare_tables(*tables, metric, digests=(a.digest, b.digest), seed=seed), a, b
