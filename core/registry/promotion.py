"""A promotion's candidate: the best run of an experiment by a metric, as a person is asked to confirm it.

:func:`best_candidate` picks it with the seed's :class:`~core.registry.model_selector.ModelSelector` and keeps what the
confirmation says about it: its metrics (the five read as their ``eval_`` forms where an HF Trainer run logged
only those), the model to register, the validation file and its digest (for a like-for-like comparison with
production), and the better runs passed over because they hold no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import compare
from core.metrics import EVAL_PREFIX, headline
from core.registry.model_selector import ModelSelector


@dataclass(frozen=True)
class Candidate:
    run_id: str
    run_name: str
    experiment: str
    metric: str  # the metric it is best by, as the user chose it
    label: str  # how the metric was read ("accuracy (read as eval_accuracy, ...)")
    metrics: dict[str, float]
    model_uri: str
    dataset: str | None = None
    digest: str | None = None  # of its validation file
    validation_file: str | None = None
    passed_over: list[tuple[str, float | None]] = field(default_factory=list)  # better, but hold no model
    link: str = ""  # "linked by time: logged 2 s after hf-lr0.005 ended" when its model was linked that way
    baseline: str | None = None  # the name of its pretrained baseline's run (same base model), when there is one
    baseline_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        """The five classification metrics under their bare names (what versions record)."""
        return headline(self.metrics)

    def sentences(self, production: dict[str, float] | None, production_label: str = "") -> tuple[str, list[str]]:
        """(what it is compared with, said once; its metrics in words): against production's metrics, or with
        nothing in production, against its pretrained baseline's."""
        if production is not None:
            return "", compare.compare_versions(self.scores, production, candidate_label="",
                                                current_label=production_label)
        if not self.baseline:
            return ("Nothing is in production yet. It has no pretrained baseline to compare with either.",
                    [f"{compare.display_name(m)} {v:.2f}" for m, v in self.scores.items()])
        return (f"Nothing is in production yet. Compared with its pretrained baseline ({self.baseline}) instead:",
                compare.compare_versions(self.scores, headline(self.baseline_metrics), candidate_label="",
                                         current_label="", against="its pretrained baseline"))

    def is_worse_than(self, production: dict[str, float] | None) -> bool:
        """Whether it does strictly worse than production's recorded metrics on the metric it was chosen by."""
        bare = self.metric.removeprefix(EVAL_PREFIX)  # versions record eval_accuracy as accuracy
        if bare in self.scores:
            return compare.is_worse(self.scores, production or {}, bare)
        return compare.is_worse(self.metrics, production or {}, self.metric)


def best_candidate(experiment: str, metric: str, *, tracking_uri: str | None = None) -> Candidate:
    """The experiment's best run by ``metric`` that holds a model, with what a confirmation shows of it."""
    selector = ModelSelector(experiment, metric, tracking_uri=tracking_uri)
    best = selector.get_best_promotable()
    link = selector.links.get(best.info.run_id)
    baseline = selector.baselines().get(best.data.tags.get("base_model_name", "")) \
        if best.data.tags.get("base_model_name") else None
    return Candidate(
        run_id=best.info.run_id, run_name=best.info.run_name, experiment=experiment, metric=metric,
        label=selector.metric_label, metrics=dict(best.data.metrics), model_uri=selector.model_uri(best),
        dataset=best.data.tags.get("dataset_name"), digest=best.data.params.get("validation_digest"),
        validation_file=best.data.params.get("validation_file"),
        passed_over=[(r.info.run_name, selector.value(r)) for r in selector.better_without_model(best)],
        link=link.words if link else "", baseline=baseline.info.run_name if baseline is not None else None,
        baseline_metrics=dict(baseline.data.metrics) if baseline is not None else {})
