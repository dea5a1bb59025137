"""The seed's ``ExperimentManager``: run a grid of fine-tunes into one MLflow experiment.

    manager = ExperimentManager(base_name=..., data_src=..., dataset_versions=[...],
                                hyperparameters=[{...}], base_model_versions=[...],
                                output_dir=..., train_file=".../{data_version}",
                                validation_file=..., evalute_pretrained_model=True, user_id=...)
    manager.run_experiments()

Everything is checked before the first run starts (hyperparameters, files,
model paths). A run that fails ends FAILED with its reason and the others go
on; ``run_experiments`` returns a summary of both, saying whether the best
fine-tune beat its pretrained baseline. While it runs, each run shows one
progress bar (step of total, loss, ETA) instead of the Trainer's raw dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import TuneboardError
from core.grid import GridSpec, RunSpec
from core.metrics import TOPIC_METRICS, lower_is_better
from core.progress import ProgressBar, TrainingProgress
from core.settings import Settings, configure_mlflow, current_user, ensure_experiment
from core.training.check import check_grid
from core.training.run import RunResult, describe, execute

log = logging.getLogger(__name__)

NO_GAIN_ADVICE = ("check that its training loss fell (the run's loss chart), then try another learning_rate, "
                  "more n_epochs or more training data before promoting it")


def baseline_verdict(metric: str, value: float, baseline: float | None) -> str:
    """``accuracy 0.480, 0.036 BELOW its pretrained baseline (0.516): fine-tuning made it worse; check ...``

    Plain words when fine-tuning did not help: a "best run" that loses to the untrained model is not one to promote.
    """
    shown = f"{metric} {value:.3f}"
    if baseline is None:
        return f"{shown} (no pretrained baseline evaluated to compare with)"
    minimise = lower_is_better(metric)
    gain = round((baseline - value) if minimise else (value - baseline), 3)
    if gain > 0:
        return f"{shown}, {gain:.3f} {'below' if minimise else 'above'} its pretrained baseline ({baseline:.3f})"
    if gain == 0:
        return f"{shown}, the same as its pretrained baseline ({baseline:.3f}): fine-tuning did not help; " \
            + NO_GAIN_ADVICE
    worse = f"{'ABOVE' if minimise else 'BELOW'} its pretrained baseline ({baseline:.3f})"
    return f"{shown}, {-gain:.3f} {worse}: fine-tuning made it worse; {NO_GAIN_ADVICE}"


@dataclass
class ExperimentSummary:
    """What ``run_experiments`` did: the experiment, and each run's outcome."""

    experiment_name: str
    experiment_id: str
    results: list[RunResult] = field(default_factory=list)
    specs: list[RunSpec] = field(default_factory=list)  # the spec of each result, in the same order

    @property
    def succeeded(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "FINISHED"]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status != "FINISHED"]

    @property
    def metric(self) -> str:
        """What the summary ranks by: ``topic_f1_macro`` when the runs tagged calls' topics, else accuracy (as
        Compare opens)."""
        names = {name for r in self.results if r.status == "FINISHED" for name in r.metrics}
        return TOPIC_METRICS[0] if TOPIC_METRICS[0] in names else "accuracy"

    def best_fine_tune(self, metric: str | None = None) -> tuple[RunResult, float | None] | None:
        """The best finished fine-tune of this call by ``metric`` (default: :attr:`metric`), and its base model's
        baseline value (None when no baseline was evaluated); None when no fine-tune finished with that metric."""
        metric = metric or self.metric
        if len(self.specs) != len(self.results):
            return None  # built by hand without specs: which run is a baseline is unknown
        finished = [(r, s) for r, s in zip(self.results, self.specs, strict=True) if r.status == "FINISHED"]
        tuned = [(r, s) for r, s in finished if s.kind == "fine_tune" and metric in r.metrics]
        if not tuned:
            return None
        sign = 1 if lower_is_better(metric) else -1
        best, spec = min(tuned, key=lambda pair: sign * pair[0].metrics[metric])
        baseline = next((r.metrics.get(metric) for r, s in finished
                         if s.kind == "baseline" and s.base_model == spec.base_model), None)
        return best, baseline

    def __str__(self) -> str:
        head = f"Experiment {self.experiment_name}: {len(self.succeeded)} run(s) finished, {len(self.failed)} failed."
        lines = [head]
        lines += [f"  {describe(r)}" for r in self.results]
        best = self.best_fine_tune()
        if best is not None:
            run, baseline = best
            lines.append(f"Best fine-tune: {run.run_name}, "
                         f"{baseline_verdict(self.metric, run.metrics[self.metric], baseline)}.")
        return "\n".join(lines)


class ExperimentManager:
    """Fine-tune every base model on every dataset version with every hyperparameter set."""

    def __init__(self, base_name: str, data_src: str, dataset_versions: Sequence[str],
                 hyperparameters: Sequence[Mapping[str, Any]], base_model_versions: Sequence[str],
                 output_dir: str, train_file: str, validation_file: str,
                 evalute_pretrained_model: bool | None = None, user_id: str | None = None, *,
                 evaluate_pretrained_model: bool | None = None, run_date: str | None = None,
                 columns: Mapping[str, str] | None = None, topic_pairs: Mapping[str, Any] | bool | None = None,
                 settings: Settings | None = None):
        """The seed's arguments, as its documentation gives them; beyond them, by keyword:

        ``columns`` reads files whose columns are named otherwise (``{"text": "transcript", "label": "topic"}``);
        ``topic_pairs`` (``True`` or ``{"template": "This call is about {}.", "negatives": 2}``) trains an NLI
        model on calls labelled with their topics (``core.topic_pairs``) and evaluates it per topic.
        """
        if evalute_pretrained_model is not None and evaluate_pretrained_model is not None \
                and evalute_pretrained_model != evaluate_pretrained_model:
            raise TuneboardError("evalute_pretrained_model and evaluate_pretrained_model disagree; give one.")
        flag = evalute_pretrained_model if evalute_pretrained_model is not None else evaluate_pretrained_model
        self.spec = GridSpec(
            base_name=base_name, data_src=data_src, dataset_versions=tuple(dataset_versions or ()),
            hyperparameters=tuple(hyperparameters or ()), base_model_versions=tuple(base_model_versions or ()),
            output_dir=output_dir, train_file=train_file, validation_file=validation_file,
            evaluate_pretrained_model=True if flag is None else flag, user_id=user_id or current_user(),
            run_date=run_date or "", columns=columns, topic_pairs=topic_pairs)
        self.settings = settings

    @classmethod
    def from_spec(cls, spec: GridSpec, settings: Settings | None = None) -> ExperimentManager:
        manager = cls.__new__(cls)
        manager.spec, manager.settings = spec, settings
        return manager

    # seed attribute names, for code written against the original module
    @property
    def experiment_name(self) -> str:
        return self.spec.experiment_name

    @property
    def base_model_versions(self) -> tuple[str, ...]:
        return self.spec.base_model_versions

    @property
    def dataset_versions(self) -> tuple[str, ...]:
        return self.spec.dataset_versions

    @property
    def hyperparameters(self) -> tuple[Mapping[str, Any], ...]:
        return self.spec.hyperparameters

    def plan(self) -> list[RunSpec]:
        """The runs ``run_experiments`` would make, in order, without running anything."""
        return self.spec.expand()

    def validate(self) -> list[RunSpec]:
        """Check files and models before anything runs; raises the first problem found."""
        return check_grid(self.spec)

    def run_experiments(self, on_progress: Callable[[str], None] | None = None, *,
                        show_progress: bool | None = None) -> ExperimentSummary:
        """Set the experiment, evaluate the baselines, then run every fine-tune; return the summary.

        ``on_progress`` gets each message: a run starting, each of its stages ("[2/5] name: training"), its result,
        and the summary. ``show_progress`` (by default: when no ``on_progress`` is given) shows them on stdout with
        one progress bar per run; where stdout is not a terminal (a notebook, a CI log) a line per stage and per
        tenth of the training steps instead. The Trainer's own dict prints are off either way.
        """
        show = on_progress is None if show_progress is None else show_progress
        tell = on_progress or (None if show else log.info)

        def say(message: str) -> None:
            if tell:
                tell(message)
            if show:
                print(message, flush=True)

        runs = self.validate()
        settings = configure_mlflow(self.settings)
        experiment_id = ensure_experiment(self.spec.experiment_name, settings)
        summary = ExperimentSummary(self.spec.experiment_name, experiment_id)
        say(f"Experiment {self.spec.experiment_name}: {len(runs)} run(s) to go.")
        for number, run in enumerate(runs, start=1):
            label = f"[{number}/{len(runs)}] {run.run_name}"
            summary.results.append(_run_one(run, label, settings, tell, ProgressBar(label) if show else None))
            summary.specs.append(run)
        say(str(summary))
        return summary


def _run_one(run: RunSpec, label: str, settings: Settings, tell: Callable[[str], None] | None,
             bar: ProgressBar | None) -> RunResult:
    """One run, its stages told to ``tell`` and drawn on ``bar``; the bar ends on the run's result."""
    progress = TrainingProgress()

    def on_status(stage: str) -> None:
        progress.stage = stage
        if tell:
            tell(f"{label}: {stage}")
        if bar:
            bar.stage(stage)

    on_status("starting")
    callbacks = [progress.callback(lambda event: bar.update(progress.snapshot()))] if bar else []
    result = execute(run, settings=settings, callbacks=callbacks, on_status=on_status)
    outcome = f"{label.partition(' ')[0]} {describe(result)}"
    if tell:
        tell(outcome)
    if bar:
        bar.close(outcome)
    return result
