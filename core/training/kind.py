"""Training as a kind of background job (``core.jobkind``): baselines and fine-tunes of a grid, or one run.

A grid (:class:`~core.grid.GridSpec`) is checked whole (``core.training.check``) and becomes one queued run
per baseline and fine-tune, sharing a ``grid_id``; one :class:`~core.grid.RunSpec` (the evaluation of a
registered version on another file, ``core.examples.evaluation``) is checked and queued alone. In the job's
process the run goes through :func:`core.training.run.execute`, reporting the Trainer's progress.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

from core import packing, paths
from core import runs as runs_mod
from core.errors import NotFoundError
from core.examples.evaluation import RUN_TAGS as EVALUATION_TAGS
from core.grid import GridSpec, RunSpec
from core.jobkind import SPEC_TAG, JobContext, Outcome, Past, Planned, spec_kind
from core.progress import TrainingProgress
from core.settings import Settings, current_user
from core.training import estimate
from core.training.check import check_grid, read_inputs

GRID_TAGS = ("base_name", "data_src", "user_id")  # kept on the experiment, so its grid can be rebuilt


class TrainingKind:
    """Baseline evaluations and fine-tunes."""

    names = ("fine_tune", "baseline")
    labels: ClassVar[dict[str, str]] = {"fine_tune": "fine-tune", "baseline": "baseline"}

    def accepts(self, request: object) -> bool:
        return isinstance(request, (GridSpec, RunSpec))

    def plan(self, request: GridSpec | RunSpec, settings: Settings, confined: bool) -> list[Planned]:
        if isinstance(request, RunSpec):
            read_inputs(request)  # its validation file and model (and training file) read cleanly
            spec = replace(request, confined=confined)
            return [Planned(spec, spec.experiment_name, spec.tags())]
        specs = check_grid(request)
        grid_id = uuid.uuid4().hex[:12]
        experiment_tags = {f"grid_{key}": getattr(request, key) for key in GRID_TAGS}
        planned = [replace(spec, grid_id=grid_id, confined=confined) for spec in specs]
        return [Planned(spec, spec.experiment_name, spec.tags(), experiment_tags) for spec in planned]

    def spec_from_json(self, text: str) -> RunSpec:
        return RunSpec.from_json(text)

    def retry_tags(self, spec: RunSpec, tags: Mapping[str, str]) -> dict[str, str]:
        kept = {k: v for k, v in tags.items() if k in EVALUATION_TAGS}  # an evaluation is found by these
        return {**spec.tags(), **kept}

    def run(self, spec: RunSpec, context: JobContext) -> Outcome:
        # torch and transformers: loaded here, in the job's process, never by the queue or the worker
        from core.training.run import execute

        # The trust boundary (core.paths): a job from a page reads only inside the roots, checked again here since
        # files can change after submit; on a team's server every job does, whoever wrote its spec.
        spec = replace(spec, confined=spec.confined or paths.confines_jobs(context.settings.tracking_uri))
        print(f"job {context.run_id}: {spec.run_name} ({spec.kind}) on "
              f"{os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'}"
              + (", reading only inside the allowed folders" if spec.confined else ""), flush=True)
        progress = TrainingProgress()

        def changed(event: str) -> None:
            context.report(progress.snapshot(), force=event != "step")
            if event == "step":
                context.checkpoint("training")  # a test may hold a job mid-training, after a step

        def on_status(stage: str) -> None:
            progress.stage = stage
            context.stage(stage, hold=stage != "training")  # that hold point comes after the first step

        result = execute(spec, run_id=context.run_id, settings=context.settings,
                         callbacks=[progress.callback(changed)], on_status=on_status, requeue=context.requeue,
                         before_end=context.before_end)
        return Outcome(result.status, result.error)

    def gpu_bytes(self, spec: RunSpec, memory_peak: Callable[[str], tuple[float, int] | None]) -> int | None:
        return packing.job_bytes(dict(spec.hyperparameters), spec.base_model, memory_peak(spec.base_model_name))

    def expected_seconds(self, spec: RunSpec, past: Sequence[Past]) -> float | None:
        return estimate.job_seconds(spec, past)

    def warm_up(self) -> None:
        """What a warm spare does before its job comes: every first-time cost of a run, paid while idle."""
        from core.training.run import warm_up  # torch and transformers, as in run()

        warm_up()


TRAINING = TrainingKind()


def past_grid(client, experiment_id: str) -> dict:
    """The grid arguments of an experiment's queued runs, to start a new grid from (GridSpec.from_dict form)."""
    experiment = client.get_experiment(experiment_id)
    specs = [RunSpec.from_json(r.data.tags[SPEC_TAG])
             for r in runs_mod.search_all(client, [experiment_id], order_by=["attributes.start_time ASC"])
             if spec_kind(r.data.tags.get(SPEC_TAG, "")) in TRAINING.names]
    if not specs:
        raise NotFoundError(f"experiment {experiment.name!r} was not launched from the queue, so it holds no grid "
                            "to start from.")
    tunes = [s for s in specs if s.kind == "fine_tune"]
    first = tunes[0] if tunes else specs[0]
    sets: dict[int, dict] = {}
    for spec in tunes:
        sets.setdefault(spec.param_set or 0, dict(spec.hyperparameters))
    train_file = (first.train_path.replace(first.dataset_version, "{data_version}")
                  if first.train_path and first.dataset_version else "{data_version}")
    tags = experiment.tags
    return {
        "base_name": tags.get("grid_base_name", "Experiment"), "data_src": tags.get("grid_data_src", "Data"),
        "user_id": tags.get("grid_user_id", current_user()),
        "base_model_versions": list(dict.fromkeys(s.base_model for s in specs)),
        "dataset_versions": list(dict.fromkeys(s.dataset_version for s in tunes if s.dataset_version)),
        "hyperparameters": [sets[k] for k in sorted(sets)], "train_file": train_file,
        "validation_file": first.validation_path,
        "output_dir": str(os.path.dirname(os.path.dirname(tunes[0].output_dir)) if tunes else first.output_dir),
        "evaluate_pretrained_model": any(s.kind == "baseline" for s in specs),
        **({"split": dict(first.split)} if first.split else {}),  # its files were held out of one: the same share
        # how its files were read: the same mapping and topic pairs, not a new guess (a calls grid kept its files
        # but lost its topic pairs, so the new grid trained plain classes and ranked by accuracy)
        **({"columns": dict(first.columns)} if first.columns else {}),
        **({"topic_pairs": dict(first.topic_pairs)} if first.topic_pairs else {}),
    }
