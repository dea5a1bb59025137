"""The seed's ``ModelSelector``: the best run of an experiment, overall or per group.

Only finished fine-tuned runs that hold a model count (baselines never win).
Loss-like metrics (``loss``, ``error``, ``mse``...) are minimised, the rest
maximised. Ties go to the run that started first, so the answer is stable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from core import runs as runs_mod
from core.errors import NotFoundError
from core.metrics import lower_is_better


class ModelSelector:
    """Find the best run by ``metric`` in ``experiment_name``."""

    def __init__(self, experiment_name: str, metric: str = "accuracy", *, tracking_uri: str | None = None):
        self.experiment_name = experiment_name
        self.metric = metric
        self.client = runs_mod.client(tracking_uri)
        self.experiment = runs_mod.get_experiment(self.client, experiment_name)

    @property
    def minimise(self) -> bool:
        return lower_is_better(self.metric)

    def candidates(self) -> list:
        """Finished runs that are not baselines and hold a model."""
        finished = runs_mod.search_all(self.client, [self.experiment.experiment_id],
                                       filter_string="attributes.status = 'FINISHED'")
        return [r for r in finished if r.data.tags.get("run_type") != "baseline" and runs_mod.has_model(r)]

    def baselines(self) -> dict[str, object]:
        """The baseline run of each base model, by ``base_model_name``."""
        finished = runs_mod.search_all(self.client, [self.experiment.experiment_id],
                                       filter_string="attributes.status = 'FINISHED' and tags.run_type = 'baseline'")
        return {r.data.tags.get("base_model_name", ""): r for r in finished}

    def _scored(self) -> list:
        candidates = self.candidates()
        if not candidates:
            raise NotFoundError(f"experiment {self.experiment_name!r} has no finished fine-tuned run holding a "
                                "model yet. Run the experiments first, or wait for them to finish.")
        scored = [r for r in candidates if _finite(r.data.metrics.get(self.metric))]
        if not scored:
            known = sorted({k for r in candidates for k in r.data.metrics})
            raise NotFoundError(f"no run in {self.experiment_name!r} has the metric {self.metric!r}. "
                                f"Metrics logged: {', '.join(known) or 'none'}.")
        return scored

    def _pick(self, runs: list):
        sign = 1 if self.minimise else -1
        return min(runs, key=lambda r: (sign * r.data.metrics[self.metric], r.info.start_time or 0))

    def get_best_model(self):
        """The run with the best value of the metric."""
        return self._pick(self._scored())

    def _best_by(self, what: str, name: str, value_of: Callable) -> dict[str, object]:
        scored = self._scored()
        groups: dict[str, list] = {}
        for run in scored:
            value = value_of(run)
            if value is not None:
                groups.setdefault(value, []).append(run)
        if not groups:
            known = sorted({k for r in scored for k in (r.data.tags if what == "tag" else r.data.params)
                            if not k.startswith("mlflow.")})
            raise NotFoundError(f"no run in {self.experiment_name!r} has the {what} {name!r}. "
                                f"{what.capitalize()}s present: {', '.join(known) or 'none'}.")
        return {value: self._pick(group) for value, group in sorted(groups.items())}

    def get_best_models_by_tag(self, tag: str) -> dict[str, object]:
        """The best run of each group of runs sharing a value of ``tag`` (e.g. ``base_model_name``)."""
        return self._best_by("tag", tag, lambda r: r.data.tags.get(tag))

    def get_best_models_by_param(self, param: str) -> dict[str, object]:
        """The best run of each group of runs sharing a value of ``param`` (e.g. ``learning_rate``)."""
        return self._best_by("param", param, lambda r: r.data.params.get(param))

    def gain_over_baseline(self, run) -> float | None:
        """How much ``run`` beats the baseline of its base model on the metric (None without a baseline)."""
        baseline = self.baselines().get(run.data.tags.get("base_model_name", ""))
        if baseline is None or not _finite(baseline.data.metrics.get(self.metric)):
            return None
        diff = run.data.metrics[self.metric] - baseline.data.metrics[self.metric]
        return -diff if self.minimise else diff


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
