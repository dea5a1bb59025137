"""The seed's ``ExperimentManager``: run a grid of fine-tunes into one MLflow experiment.

    manager = ExperimentManager(base_name=..., data_src=..., dataset_versions=[...],
                                hyperparameters=[{...}], base_model_versions=[...],
                                output_dir=..., train_file=".../{data_version}",
                                validation_file=..., evalute_pretrained_model=True, user_id=...)
    manager.run_experiments()

Everything is checked before the first run starts (hyperparameters, files,
model paths). A run that fails ends FAILED with its reason and the others go
on; ``run_experiments`` returns a summary of both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.data import align_labels, load_examples
from core.errors import TuneboardError
from core.grid import GridSpec, RunSpec
from core.modelio import load_config
from core.settings import Settings, configure_mlflow, current_user, ensure_experiment
from core.training import RunResult, describe, execute

log = logging.getLogger(__name__)


@dataclass
class ExperimentSummary:
    """What ``run_experiments`` did: the experiment, and each run's outcome."""

    experiment_name: str
    experiment_id: str
    results: list[RunResult] = field(default_factory=list)

    @property
    def succeeded(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "FINISHED"]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status != "FINISHED"]

    def __str__(self) -> str:
        head = f"Experiment {self.experiment_name}: {len(self.succeeded)} run(s) finished, {len(self.failed)} failed."
        lines = [head]
        lines += [f"  {describe(r)}" for r in self.results]
        return "\n".join(lines)


class ExperimentManager:
    """Fine-tune every base model on every dataset version with every hyperparameter set."""

    def __init__(self, base_name: str, data_src: str, dataset_versions: Sequence[str],
                 hyperparameters: Sequence[Mapping[str, Any]], base_model_versions: Sequence[str],
                 output_dir: str, train_file: str, validation_file: str,
                 evalute_pretrained_model: bool | None = None, user_id: str | None = None, *,
                 evaluate_pretrained_model: bool | None = None, run_date: str | None = None,
                 settings: Settings | None = None):
        if evalute_pretrained_model is not None and evaluate_pretrained_model is not None \
                and evalute_pretrained_model != evaluate_pretrained_model:
            raise TuneboardError("evalute_pretrained_model and evaluate_pretrained_model disagree; give one.")
        flag = evalute_pretrained_model if evalute_pretrained_model is not None else evaluate_pretrained_model
        self.spec = GridSpec(
            base_name=base_name, data_src=data_src, dataset_versions=tuple(dataset_versions or ()),
            hyperparameters=tuple(hyperparameters or ()), base_model_versions=tuple(base_model_versions or ()),
            output_dir=output_dir, train_file=train_file, validation_file=validation_file,
            evaluate_pretrained_model=True if flag is None else flag, user_id=user_id or current_user(),
            run_date=run_date or "")
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
        runs = self.plan()
        validation = load_examples(self.spec.validation_file)
        configs = {m: load_config(m) for m in self.spec.base_model_versions}
        for version in self.spec.dataset_versions:
            train = load_examples(self.spec.train_path(version))
            for config in configs.values():
                align_labels(train, validation, getattr(config, "label2id", None), getattr(config, "num_labels", 2))
        return runs

    def run_experiments(self, on_progress: Callable[[str], None] | None = None) -> ExperimentSummary:
        """Set the experiment, evaluate the baselines, then run every fine-tune; return the summary."""
        say = on_progress or log.info
        runs = self.validate()
        settings = configure_mlflow(self.settings)
        experiment_id = ensure_experiment(self.spec.experiment_name, settings)
        summary = ExperimentSummary(self.spec.experiment_name, experiment_id)
        say(f"Experiment {self.spec.experiment_name}: {len(runs)} run(s) to go.")
        for number, run in enumerate(runs, start=1):
            say(f"[{number}/{len(runs)}] {run.run_name}: starting")
            result = execute(run, settings=settings,
                             on_status=lambda stage, n=number, r=run: say(f"[{n}/{len(runs)}] {r.run_name}: {stage}"))
            summary.results.append(result)
            say(f"[{number}/{len(runs)}] {describe(result)}")
        say(str(summary))
        return summary
