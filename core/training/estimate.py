"""How long training takes: a grid before it is launched, and each queued run once others have finished.

- :func:`estimate`: a grid on one slot, before launch: examples x epochs over each base model's measured speed
  (the median ``train_samples_per_second`` of past finished runs of it, ``core.runs.training_speed``; with none
  yet, a guess, fast for the tiny demo models), plus a few seconds per run. Rough, and said to be.
- :func:`job_seconds`: one run of a grid in the queue, from the finished runs it can learn from (the same base
  model first): its optimizer steps at the seconds theirs took at its batch, its evaluations over their
  evaluation speed, and the time they spent outside both (start-up, loading, saving, logging). A model with
  only its baselines finished borrows another model's step, its forward and backward passes scaled by how much
  slower it evaluates; with no fine-tune at all, the training speed is the evaluation speed over
  :data:`EVAL_PER_TRAIN`: a grid's end is known once its baselines have run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core import paths
from core.demo import DEMO_MODELS
from core.grid import GridSpec, RunSpec
from core.jobkind import Past
from core.naming import base_model_name
from core.training.reading import GridReading

GUESS_DEMO, GUESS_OTHER = 800.0, 150.0  # samples/s before any run of the model has finished (tiny demo, other)
PER_RUN_SECONDS = 6.0  # start-up, evaluation and logging of one run
# evaluation samples/s over training samples/s of one fine-tune, before any fine-tune has measured it: a training
# step is a forward pass, a backward pass and an optimizer step (3.6-6.1 for the demo models on the 2-core CPU)
EVAL_PER_TRAIN = 4.5
# a training example's forward and backward passes over an evaluated example's forward pass: the backward pass
# costs about two forward passes (6 against 2 FLOPs per parameter and token)
TRAIN_COMPUTE_PER_EVAL = 3.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the speeds were: "demo-bert-tiny: 812 samples/s (measured); ..."


def row_count(path: str | Path) -> int:
    """Data rows of a text data file (its lines, less the header)."""
    with open(path, "rb") as f:
        return max(0, sum(1 for _ in f) - 1)


def estimate(spec: GridSpec, speed_of: Callable[[str], float | None],
             rows_of: Callable[[Path], int] = row_count, reading: GridReading | None = None) -> Estimate:
    """The grid's duration on one slot; ``speed_of(base_model_name)`` gives a measured speed or None.

    With ``reading`` (``core.training.reading``: what the runs will read as windows) a run's work is its
    windows: the rows an epoch trains on, and the forward passes that choose long calls' windows, evaluate the
    validation windows and tag every validation call's windows with every topic (at the speed of evaluation,
    :data:`EVAL_PER_TRAIN` times training's). Without it, a file's rows. A training file that cannot be read here
    (missing, or outside the allowed folders of a confined page) counts as empty: the estimate never reads what
    the launch would refuse.
    """
    total, notes = 0.0, set()
    validation = Path(spec.validation_file).name
    for model in spec.base_model_versions:
        name = base_model_name(model)
        measured = speed_of(name)
        speed = measured or (GUESS_DEMO if name in DEMO_MODELS else GUESS_OTHER)  # the tiny ones, not the encoder
        notes.add(f"{name}: {speed:.0f} samples/s ({'measured' if measured else 'a guess until a run finishes'})")
        evaluated = reading.for_file(name, validation) if reading else None
        one_eval = (evaluated.rows if evaluated else 0) / (speed * EVAL_PER_TRAIN)
        topic_eval = (reading.topic_passes(validation) if reading else 0) / (speed * EVAL_PER_TRAIN)
        for version in spec.dataset_versions:
            path = Path(spec.train_path(version))
            found = reading.for_file(name, path.name) if reading else None
            rows = found.rows if found else rows_of(path) if path.is_file() and paths.may_read_data(path) else 0
            choosing = found.choosing / (speed * EVAL_PER_TRAIN) if found else 0.0
            for params in spec.hyperparameters:
                epochs = float(params.get("num_train_epochs", 3))
                total += rows * epochs / speed + epochs * (choosing + one_eval) + topic_eval + PER_RUN_SECONDS
        if spec.evaluate_pretrained_model:
            total += one_eval + topic_eval + PER_RUN_SECONDS
    return Estimate(total, "; ".join(sorted(notes)))


def _median(values: Sequence[float]) -> float | None:
    values = sorted(v for v in values if v is not None and v > 0)
    return values[len(values) // 2] if values else None


def _evaluations(spec: RunSpec) -> int:
    """How often a run evaluates: once per epoch for a fine-tune, once for a baseline."""
    if spec.kind != "fine_tune":
        return 1
    return max(1, math.ceil(float(spec.hyperparameters.get("num_train_epochs", 1))))


def _batch(spec: RunSpec) -> int:
    """Examples per optimizer step."""
    hyper = spec.hyperparameters
    return int(hyper.get("per_device_train_batch_size", 16)) * int(hyper.get("gradient_accumulation_steps", 1))


def _training_seconds(past: Past) -> float:
    """A fine-tune's seconds of training alone: the Trainer's ``train_runtime`` holds its evaluations too."""
    runtime = past.figures.get("train_runtime", 0.0)
    alone = runtime - _evaluations(past.spec) * past.figures.get("eval_runtime", 0.0)
    return alone if alone > 0 else runtime


def _outside(past: Past) -> float:
    """A finished run's seconds outside training and evaluation: start-up, loading, saving, logging (and, for a
    topic run, tagging every validation call with every topic, the same for every run of a grid)."""
    if past.spec.kind == "fine_tune":  # its evaluations ran inside train_runtime
        return past.seconds - past.figures.get("train_runtime", 0.0)
    return past.seconds - past.figures.get("eval_runtime", 0.0)


def _rows(spec: RunSpec, rows_of: Callable[[Path], int]) -> float:
    """The training file's rows times the epochs (the work a run asks for, in the file's rows)."""
    path = Path(spec.train_path or "")
    rows = rows_of(path) if path.is_file() and paths.may_read_data(path) else 0
    return rows * float(spec.hyperparameters.get("num_train_epochs", 3))


def _steps(spec: RunSpec, rows_of: Callable[[Path], int], per_row: float) -> float:
    """Optimizer steps: ``max_steps``, or the rows (as training examples: ``per_row`` each) over the batch."""
    hyper = spec.hyperparameters
    if int(hyper.get("max_steps", -1) or -1) > 0:
        return float(int(hyper["max_steps"]))
    return _rows(spec, rows_of) * per_row / _batch(spec)


def _at_batch(tuned: Sequence[Past], batch: int) -> float | None:
    """Seconds per optimizer step of ``tuned`` fine-tunes at ``batch``: their seconds over their steps (a
    500-step run outweighs a 100-step one timed at a busy moment); None if none ran at that batch."""
    at = [p for p in tuned if _batch(p.spec) == batch and _steps_done(p) > 0]
    return sum(_training_seconds(p) for p in at) / sum(_steps_done(p) for p in at) if at else None


def _line(tuned: Sequence[Past]) -> tuple[float, float] | None:
    """Seconds per step against the batch through ``tuned`` fine-tunes' batches (least squares): the seconds at
    batch 0 and those each example of a batch adds; None while fewer than two batches are measured."""
    xs = sorted({_batch(p.spec) for p in tuned if _steps_done(p) > 0})
    if len(xs) < 2:
        return None
    ys = [_at_batch(tuned, x) for x in xs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mean_x) ** 2 for x in xs)
    return mean_y - slope * mean_x, slope


def _step_seconds(tuned: Sequence[Past], batch: int, others: Sequence[Past] = ()) -> float | None:
    """Seconds per optimizer step at ``batch``, from finished fine-tunes of one model: theirs at that batch, else
    a line through theirs at other batches, else their one batch's plus what each further example of a batch
    adds on ``others``' line (other models' fine-tunes), else the nearest batch's. On a CPU a small model's step
    is mostly fixed cost: samples per second are not comparable across batches."""
    if (same := _at_batch(tuned, batch)) is not None:
        return same
    line = _line(tuned)
    if line and (fitted := line[0] + line[1] * batch) > 0:
        return fitted
    batches = {_batch(p.spec) for p in tuned if _steps_done(p) > 0}
    if not batches:
        return None
    nearest = min(batches, key=lambda b: abs(b - batch))
    theirs = _line(others) if len(batches) == 1 else None
    if theirs and (shifted := _at_batch(tuned, nearest) + theirs[1] * (batch - nearest)) > 0:
        return shifted
    return _at_batch(tuned, nearest)


def _borrowed_step(other_step: float, evaluated: Sequence[Past], batch: int, slower: float) -> float:
    """Seconds per step at ``batch`` of a model with no fine-tune finished, from other models' (``other_step`` at
    that batch, and their finished runs, ``evaluated``) and how many times ``slower`` its baseline evaluated.

    Only a step's forward and backward passes scale with the model: at most :data:`TRAIN_COMPUTE_PER_EVAL` times
    the batch's evaluation time, at the fastest that their evaluations went (the least disturbed pass: on a busy
    machine a fine-tune's evaluations ran 1-5 times slower per example than its baseline's, on an idle one 3 times
    faster); the rest of the step (optimizer, autograd, loading the batch) stays as theirs. Scaling the whole
    step, the demo DeBERTa was expected to train 2.5-3 times slower than the demo BERT, as it evaluates; it
    trained 1.0-1.8 times slower (bench_grid --eta: +40% to +171% of the time left after jobs 3-6)."""
    per_example = min((1.0 / p.figures["eval_samples_per_second"] for p in evaluated
                       if p.figures.get("eval_samples_per_second")), default=None)
    compute = min(other_step, TRAIN_COMPUTE_PER_EVAL * batch * per_example) if per_example else other_step
    return other_step - compute + compute * slower


def _steps_done(past: Past) -> float:
    """The optimizer steps a finished fine-tune took: its training examples (samples/s x runtime) over its batch."""
    figures = past.figures
    return figures.get("train_samples_per_second", 0.0) * figures.get("train_runtime", 0.0) / _batch(past.spec)


def _per_row(spec: RunSpec, tuned: Sequence[Past], rows_of: Callable[[Path], int]) -> float:
    """Training examples per row of the file: 1 for plain rows; more for topic pairs (a call's true topics and
    negatives) or texts read in several windows; learnt from finished fine-tunes of the same file."""
    found = [_steps_done(p) * _batch(p.spec) / rows for p in tuned
             if p.spec.train_path == spec.train_path and (rows := _rows(p.spec, rows_of)) > 0]
    return _median(found) or 1.0


def job_seconds(spec: RunSpec, past: Sequence[Past], rows_of: Callable[[Path], int] = row_count) -> float | None:
    """The run's expected seconds from start to end, learnt from ``past`` finished runs (of the same base model
    when there are some, else of any); None while no run has finished to learn from.

    A fine-tune is its optimizer steps times the seconds a step takes at its batch (:func:`_step_seconds`), its
    evaluations, and the time outside both. With only this model's baselines finished, a step's seconds are
    another model's at this batch, its forward and backward passes scaled by how much slower this model
    evaluates (:func:`_borrowed_step`), else its evaluation's time per example times the batch and
    :data:`EVAL_PER_TRAIN`; its examples per row of the file, another model's fine-tunes of that file.
    """
    runs = [p for p in past if isinstance(p.spec, RunSpec)]
    same = [p for p in runs if p.spec.base_model_name == spec.base_model_name] or runs
    if not same:
        return None
    # outside training and evaluation, a fine-tune saves and logs a model and a baseline does not: a fine-tune of a
    # model with only its baseline finished takes another model's fine-tunes' time outside, not its baseline's
    overhead = _median([_outside(p) for p in same if p.spec.kind == spec.kind]) \
        or _median([_outside(p) for p in runs if p.spec.kind == spec.kind]) \
        or _median([_outside(p) for p in same]) or PER_RUN_SECONDS
    one_eval = _median([p.figures.get("eval_runtime") for p in same]) or 0.0
    if spec.kind != "fine_tune":
        return overhead + one_eval
    tuned = [p for p in same if p.spec.kind == "fine_tune"]
    batch = _batch(spec)
    others = [p for p in runs if p.spec.kind == "fine_tune" and p.spec.base_model_name != spec.base_model_name]
    step = _step_seconds(tuned, batch, others) if tuned else None
    if step is None:  # only this model's baselines so far
        # like with like: a baseline's evaluation is a cold first pass, three times slower per example than the
        # evaluations inside a warm fine-tune (bench_grid --eta, 6 Dec), so baselines are compared with baselines
        models = {o.spec.base_model_name for o in others}
        mine = _median([p.figures.get("eval_samples_per_second") for p in same if p.spec.kind != "fine_tune"])
        theirs = _median([p.figures.get("eval_samples_per_second") for p in runs if p.spec.kind != "fine_tune"
                          and p.spec.base_model_name in models])
        other_step = _step_seconds(others, batch) if others else None
        if other_step and mine and theirs:
            step = _borrowed_step(other_step, [p for p in runs if p.spec.base_model_name in models], batch,
                                  theirs / mine)
        else:
            per_example = _median([1.0 / p.figures["eval_samples_per_second"] for p in same
                                   if p.figures.get("eval_samples_per_second")])
            step = per_example * batch * EVAL_PER_TRAIN if per_example else None
    if not step:
        return None
    # pairs or windows per row: this model's fine-tunes of the file say, else another model's (they read the same
    # calls), not 1
    per_row = _per_row(spec, tuned or others, rows_of)
    return overhead + _steps(spec, rows_of, per_row) * step + _evaluations(spec) * one_eval
