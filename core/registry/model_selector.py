"""The seed's ``ModelSelector``: the best run of an experiment, overall or per group.

Only finished fine-tuned runs count (baselines never win). :meth:`ModelSelector.get_best_model` is the best of them
by the metric, as the seed says, whether or not it holds a model; :meth:`ModelSelector.get_best_promotable` and the
groupings count only runs that hold one. A run holds a model when this tool tagged one, MLflow 3 links a logged
model to it, an MLflow 2-style ``MLmodel`` lies in its artifacts, or a logged model linked to no run was logged
just after it ended (``core.runs.find_models``; :attr:`ModelSelector.links` says which were linked by time), so
runs logged by other tools count too. A metric a run did not log is read as
the HF Trainer's ``eval_`` form (``accuracy`` -> ``eval_accuracy``), and :attr:`ModelSelector.metric_label`
says so. Loss-like metrics (``loss``, ``error``, ``mse``...) are minimised, the rest maximised. Ties go to the
run that started first, so the answer is stable. :meth:`ModelSelector.within_noise_of_best` says which runs the
best one does not clearly beat on their validation examples (``core.examples.noise``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from core import runs as runs_mod
from core.errors import NotFoundError
from core.examples import noise as noise_mod
from core.examples.table import read_predictions
from core.metrics import lower_is_better, metric_key, read_as


class ModelSelector:
    """Find the best run by ``metric`` in ``experiment_name``."""

    def __init__(self, experiment_name: str, metric: str = "accuracy", *, tracking_uri: str | None = None):
        self.experiment_name = experiment_name
        self.metric = metric
        self.client = runs_mod.client(tracking_uri)
        self.experiment = runs_mod.get_experiment(self.client, experiment_name)
        self.models: dict[str, str] = {}  # run_id -> model URI, of the runs the last selection looked at
        self.without_model: list = []  # finished runs with the metric that hold no model, best first
        self.metric_label = metric  # how the metric was read, e.g. "accuracy (read as eval_accuracy, ...)"
        self.noise: noise_mod.Noise | None = None  # the best run against the others, after within_noise_of_best()
        self.links: dict[str, runs_mod.TimeLink] = {}  # run_id -> how its model was linked by time (last selection)

    @property
    def minimise(self) -> bool:
        return lower_is_better(self.metric)

    def value(self, run) -> float | None:
        """The run's value of the metric (read as ``eval_<metric>`` where the run logged only that)."""
        key = metric_key(run.data.metrics, self.metric)
        value = run.data.metrics.get(key) if key else None
        return value if _finite(value) else None

    def _finished(self) -> list:
        """Finished runs that are not baselines (runs from other tools have no run_type: they count)."""
        finished = runs_mod.search_all(self.client, [self.experiment.experiment_id],
                                       filter_string="attributes.status = 'FINISHED'")
        return [r for r in finished if runs_mod.is_candidate(r)]

    def candidates(self) -> list:
        """Finished runs that are not baselines and hold a model."""
        finished = self._finished()
        self.models = runs_mod.find_models(self.client, finished)
        return [r for r in finished if r.info.run_id in self.models]

    def baselines(self) -> dict[str, object]:
        """The baseline run of each base model, by ``base_model_name``."""
        finished = runs_mod.search_all(self.client, [self.experiment.experiment_id],
                                       filter_string="attributes.status = 'FINISHED' and tags.run_type = 'baseline'")
        return {r.data.tags.get("base_model_name", ""): r for r in finished}

    def _with_metric(self) -> list:
        """Finished fine-tunes with a value of the metric (a NotFoundError says why there are none)."""
        finished = self._finished()
        if not finished:
            raise NotFoundError(f"experiment {self.experiment_name!r} has no finished fine-tuned run yet. Run the "
                                "experiments first, or wait for them to finish.")
        with_metric = [r for r in finished if self.value(r) is not None]
        if not with_metric:
            known = sorted({k for r in finished for k in r.data.metrics})
            raise NotFoundError(f"no run in {self.experiment_name!r} has the metric {self.metric!r}. "
                                f"Metrics logged: {', '.join(known) or 'none'}.")
        return with_metric

    def _scored(self) -> list:
        """Finished fine-tunes with a value of the metric that hold a model; records what was left out and why."""
        with_metric = self._with_metric()
        # only the runs that could win are looked up: listing artifacts costs a call per run
        self.links = {}
        self.models = runs_mod.find_models(self.client, with_metric, links=self.links)
        scored = [r for r in with_metric if r.info.run_id in self.models]
        self.without_model = self._ranked([r for r in with_metric if r.info.run_id not in self.models])
        self.metric_label = read_as(self.metric, {metric_key(r.data.metrics, self.metric) for r in scored
                                                  or with_metric})
        if not scored:
            names = ", ".join(r.info.run_name or r.info.run_id for r in self.without_model[:5])
            more = f" and {len(self.without_model) - 5} more" if len(self.without_model) > 5 else ""
            raise NotFoundError(f"no finished run in {self.experiment_name!r} holds a model to promote: "
                                f"{len(with_metric)} have {self.metric_label} ({names}{more}), but "
                                f"{runs_mod.NO_MODEL}. To make a run promotable, {runs_mod.HOW_TO_LOG}."
                                + runs_mod.unlinked_words(self.client, self.experiment.experiment_id))
        return scored

    def _ranked(self, runs: list) -> list:
        sign = 1 if self.minimise else -1
        return sorted(runs, key=lambda r: (sign * self.value(r), r.info.start_time or 0))

    def _pick(self, runs: list):
        return self._ranked(runs)[0]

    def get_best_model(self):
        """The run with the best value of the metric (as the seed says: whether or not it holds a model; promotion
        is where a missing model is explained, :meth:`get_best_promotable`)."""
        with_metric = self._with_metric()
        self.metric_label = read_as(self.metric, {metric_key(r.data.metrics, self.metric) for r in with_metric})
        return self._pick(with_metric)

    def get_best_promotable(self):
        """The run with the best value of the metric among those that hold a model (what a promotion registers);
        :meth:`better_without_model` names the better runs passed over. A NotFoundError says why there is none,
        listing the experiment's logged models that no run holds."""
        return self._pick(self._scored())

    def better_without_model(self, best) -> list:
        """Runs that beat ``best`` on the metric but cannot be promoted, as they hold no model (after a selection)."""
        ahead = self._ranked([*self.without_model, best])
        return ahead[:ahead.index(best)]

    def within_noise_of_best(self) -> list:
        """The runs the best one does not clearly beat: on the validation examples both were evaluated on, their
        difference on the metric is what chance gives (p >= 0.05; McNemar's exact test for accuracy), closest
        first. Only runs that hold a model count, as for :meth:`get_best_model`; :attr:`noise` keeps the whole
        answer (the runs that could not be compared and why, the sentences)."""
        scored = self._scored()
        best = self._pick(scored)
        by_id = {r.info.run_id: r for r in scored}
        self.noise = noise_mod.against_best(self._ref(best), [self._ref(r) for r in scored if r is not best],
                                            self.metric, lambda run_id: read_predictions(self.client, run_id))
        return [by_id[r.run.run_id] for r in self.noise.within]

    def _ref(self, run) -> noise_mod.RunRef:
        value = self.value(run)
        return noise_mod.RunRef(run.info.run_id, run.info.run_name or run.info.run_id,
                                run.data.params.get("validation_digest"), math.nan if value is None else value)

    def model_uri(self, run) -> str:
        """Where a run the last selection looked at keeps its model."""
        return self.models.get(run.info.run_id) or runs_mod.model_uri(run, self.client)

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
        if baseline is None or self.value(baseline) is None or self.value(run) is None:
            return None
        diff = self.value(run) - self.value(baseline)
        return -diff if self.minimise else diff


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
