"""Scoring a file as a kind of background job (``core.jobkind``): one file through one model version.

Checked before anything is queued: the model exists (an alias is pinned to the version it names now, so the
job scores with what the user chose), for topic tagging it is an NLI model, and the file reads with the
columns asked for. The run lands in ``Scoring - <model>``; in the job's process it is
:func:`core.scoring.job.score`, reporting rows done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import ClassVar

from core import packing, paths
from core import runs as runs_mod
from core.jobkind import JobContext, Outcome, Planned
from core.models import sources
from core.progress import Progress
from core.scoring import files
from core.scoring.job import KIND, ScoreSpec, experiment_name, run_tags, score
from core.scoring.topics import check_nli
from core.settings import Settings, current_user

# What a retry keeps of the scored run's tags: the same model version and file, tagged as before
RETRY_TAGS = ("run_type", "mlflow.runName", "model_ref", "model_uri", "model_name", "model_label", "model_version",
              "model_run_id", "score_mode", "input_file")


class ScoringKind:
    """A file scored by a model: labels and scores per row, or each call's topics."""

    names = (KIND,)
    labels: ClassVar[dict[str, str]] = {KIND: "score a file"}

    def accepts(self, request: object) -> bool:
        return isinstance(request, ScoreSpec)

    def plan(self, request: ScoreSpec, settings: Settings, confined: bool) -> list[Planned]:
        source = sources.resolve(request.model, runs_mod.client(settings.tracking_uri, settings.registry_uri))
        if request.mode == "topics":  # a model that is not NLI is refused now, not minutes later in the job
            check_nli(sources.labels(source))  # its config only (the download is the one the job then uses)
        files.choose_columns(files.read(request.input_path), request.text_column, request.pair_column,
                             transcripts=request.mode == "topics")
        spec = replace(request, confined=confined)
        return [Planned(spec, experiment_name(source), run_tags(spec, source))]

    def spec_from_json(self, text: str) -> ScoreSpec:
        return ScoreSpec.from_json(text)

    def retry_tags(self, spec: ScoreSpec, tags: Mapping[str, str]) -> dict[str, str]:
        return {**{k: v for k, v in tags.items() if k in RETRY_TAGS}, "submitted_by": current_user()}

    def run(self, spec: ScoreSpec, context: JobContext) -> Outcome:
        spec = replace(spec, confined=spec.confined or paths.confines_jobs(context.settings.tracking_uri))
        print(f"job {context.run_id}: scoring {spec.input_path} with {spec.model} ({spec.mode}) on "
              f"{os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'}"
              + (", reading only inside the allowed folders" if spec.confined else ""), flush=True)
        started, first = time.monotonic(), [True]

        def on_progress(done: int, total: int) -> None:
            seconds = time.monotonic() - started
            speed = done / seconds if done and seconds > 0 else None
            context.report(Progress(stage="scoring", unit="row", step=done, total_steps=total,
                                    samples_per_second=speed, eta_seconds=(total - done) / speed if speed else None,
                                    updated_at=time.time()))
            if first:  # a test may hold the job here, after its first batch
                first.clear()
                context.checkpoint("scoring")

        result = score(spec, context.run_id, on_progress=on_progress,
                       on_status=lambda stage: context.stage(stage, hold=False), before_end=context.before_end)
        return Outcome(result.status, result.error, f"{result.rows} rows" if result.rows else "")

    def gpu_bytes(self, spec: ScoreSpec, memory_peak: Callable[[str], tuple[float, int] | None]) -> int | None:
        return packing.SCORE_BYTES


SCORING = ScoringKind()
