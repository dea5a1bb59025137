"""Score a registered version on another validation file, as a background job, and find that run again.

A promotion compares the candidate with production example by example (:func:`like_for_like`). When the two
were evaluated on different validation files (their ``validation_digest`` differs), production is evaluated on
the candidate's file: a job of kind "baseline" (an evaluation without training) whose base model is
``models:/NAME/VERSION``, in the experiment ``Evaluations - NAME``, tagged with the version and the file's
digest. Like every evaluated run it logs its predictions table (``core.examples.table``).

Like for like also means read alike: a candidate that read its calls as windows of 256 tokens is not compared
example by example with a version whose run read them at 128 (its first window only, or three times the windows).
Production is then scored again on the candidate's file the candidate's way (its ``max_length``,
``window_overlap`` and ``truncate``, tagged ``evaluated_reading``).

On the same examples, the comparison also says whether the candidate's difference is more than chance gives
(``core.examples.significance``): the figures a promotion records as its evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core import naming
from core import runs as runs_mod
from core.examples import significance as sig
from core.examples.analysis import Changes, changes
from core.grid import DEFAULTS, READING_KEYS, RunSpec

EXPERIMENT_PREFIX = "Evaluations - "
MODEL_TAG = "evaluates_model"
VERSION_TAG = "evaluates_version"
DIGEST_TAG = "evaluated_on_digest"
READING_TAG = "evaluated_reading"
RUN_TAGS = (MODEL_TAG, VERSION_TAG, DIGEST_TAG, READING_TAG, "base_model_name")  # what a retry of the job keeps


def reading_of(params: dict[str, str]) -> dict[str, object]:
    """How a run asked to read its texts, from its params (``READING_KEYS``; strings as MLflow keeps them), the
    defaults' ``max_length`` where it logged none."""
    found: dict[str, object] = {"max_length": int(DEFAULTS["max_length"])}
    if str(params.get("max_length", "")).strip().isdigit():
        found["max_length"] = int(params["max_length"])
    if str(params.get("window_overlap", "")).strip().isdigit():
        found["window_overlap"] = int(params["window_overlap"])
    if str(params.get("truncate", "")).strip().lower() == "true":
        found["truncate"] = True
    return found


def reading_label(reading: dict[str, object]) -> str:
    """``reading`` in words, the same for the same reading: "windows of 256 tokens, overlap default"."""
    overlap = reading.get("window_overlap")
    words = (f"the first {reading['max_length']} tokens only" if reading.get("truncate")
             else f"windows of {reading['max_length']} tokens")
    return f"{words}, overlap {'default' if overlap is None else overlap}"


DEFAULT_READING = reading_label(reading_of({}))  # an evaluation tagged with no reading read at the defaults'


def _run_reading(mlflow_client, run_id: str | None) -> dict[str, object] | None:
    """The reading of run ``run_id``, or None where the run cannot be read (gone, or named by another tool)."""
    if not run_id:
        return None
    try:
        return reading_of(mlflow_client.get_run(run_id).data.params)
    except Exception:  # noqa: BLE001 - no run to read: the comparison goes on as if both read alike
        return None


def experiment_name(model_name: str) -> str:
    """The experiment holding the evaluations of a registered model's versions."""
    return f"{EXPERIMENT_PREFIX}{model_name}"


def evaluation_spec(model_name: str, version: str | int, validation_path: str, output_root: str | Path,
                    reading: dict[str, object] | None = None) -> RunSpec:
    """The run that scores version ``version`` of ``model_name`` on ``validation_path`` (nothing is trained), read
    as ``reading`` says (``READING_KEYS``; the defaults' otherwise)."""
    run_name = f"{model_name} v{version} on {naming.dataset_name(validation_path)}"
    read = {key: value for key, value in (reading or {}).items() if key in READING_KEYS}
    return RunSpec(kind="baseline", experiment_name=experiment_name(model_name), run_name=run_name,
                   base_model=f"models:/{model_name}/{version}", validation_path=str(validation_path),
                   output_dir=str(Path(output_root) / "evaluations"), hyperparameters={**DEFAULTS, **read})


def queue_evaluation(job_queue, model_name: str, version: str | int, validation_path: str, digest: str,
                     reading: dict[str, object] | None = None):
    """Queue the evaluation of a version on a validation file whose digest is ``digest``, read as ``reading``
    (the candidate's: :func:`reading_of`); returns the Job.

    Checked before anything is written, inside the allowed folders when the caller is confined (a page).
    """
    spec = evaluation_spec(model_name, version, validation_path, job_queue.settings.home, reading)
    tags = {MODEL_TAG: model_name, VERSION_TAG: str(version), DIGEST_TAG: digest,
            READING_TAG: DEFAULT_READING if reading is None else reading_label(reading),
            "base_model_name": f"{model_name} v{version}"}
    return job_queue.submit(spec, tags=tags)[0]


def find_evaluation(mlflow_client, model_name: str, version: str | int, digest: str,
                    reading: dict[str, object] | None = None):
    """The evaluation run of that version on a file with that digest, read as ``reading`` (an evaluation tagged
    with no reading read at the defaults), or None: the latest that finished, else the latest of any status (one
    queued, running or failed)."""
    experiment = mlflow_client.get_experiment_by_name(experiment_name(model_name))
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    if "'" in str(version) or "'" in digest:
        return None  # never part of a filter string; no run is tagged with such a value anyway
    found = runs_mod.search_all(mlflow_client, [experiment.experiment_id],
                                f"tags.{VERSION_TAG} = '{version}' and tags.{DIGEST_TAG} = '{digest}'",
                                order_by=["attributes.start_time DESC"])
    wanted = DEFAULT_READING if reading is None else reading_label(reading)
    found = [r for r in found if r.data.tags.get(MODEL_TAG) == model_name
             and r.data.tags.get(READING_TAG, DEFAULT_READING) == wanted]
    return next((r for r in found if r.info.status == "FINISHED"), found[0] if found else None)


@dataclass(frozen=True)
class LikeForLike:
    """What a promotion can say about a candidate against the version in production, example by example.

    ``changes`` when the two were compared on the same examples (``scored_by`` names the evaluation job when
    production had to be scored on the candidate's file first), with ``difference``: the candidate (B) against
    production (A), whether it is more than chance gives; otherwise ``why`` says why not, and
    ``evaluation`` is the evaluation job of production on the candidate's file (queued, running, failed) when
    there is one, and ``can_evaluate`` whether one can be queued.
    """

    against: str  # "version 3"
    changes: Changes | None = None
    scored_by: str | None = None
    why: str | None = None
    evaluation: object | None = None  # an MLflow run
    can_evaluate: bool = False
    candidate_has_table: bool = True
    different_files: bool = False
    difference: sig.Difference | None = None
    reading: dict[str, object] | None = None  # the candidate's, for scoring production the same way

    @property
    def verdict(self) -> str:
        """"Against version 3 in production: better by 0.021 accuracy, but on these 400 examples a difference this
        size comes by chance in 31% of cases: not a clear improvement." ("" without a comparison)."""
        if self.difference is None:
            return ""
        return f"Against {self.against} in production: {self.difference.verdict()}."

    @property
    def detectable(self) -> str:
        """How much these validation examples can tell (``significance.detectable_words``), "" without a pair."""
        found = self.difference
        return sig.detectable_words(found.examples, found.discordance) if found is not None and not found.why else ""

    @property
    def evidence(self) -> dict[str, str] | None:
        """The figures a promotion records (``ModelTransition.promote(evidence=...)``): the metric, both values,
        the difference, its 95% interval, the p-value and test, the verdict, what was compared; or why there was
        no answer. None when nothing was compared."""
        if self.difference is None:
            return {"compared_with": self.against, "verdict": f"no answer: {self.why}"} if self.why else None
        found = {**self.difference.evidence(a="production", b="candidate"), "compared_with": self.against}
        if self.scored_by:
            found["production_scored_by"] = self.scored_by
        smallest = (sig.detectable_difference(self.difference.examples, self.difference.discordance)
                    if self.difference.discordance else None)
        if smallest is not None:
            found["detectable_accuracy_difference"] = f"{smallest:.4f}"
        return found


def like_for_like(mlflow_client, model_name: str, current, candidate_run_id: str, candidate_digest: str | None,
                  candidate_file: str | None, read: Callable[[str], pd.DataFrame | None],
                  metric: str = "accuracy") -> LikeForLike:
    """Compare the candidate run with ``current`` (a registered version) on the same validation examples.

    ``read(run_id)`` gives a finished run's predictions table or None (a page passes its cached reader). Same
    file: the two tables. Different files: production as scored on the candidate's file by an evaluation job
    (:func:`queue_evaluation`), once that job has finished. Read alike too: where the two runs read their texts
    differently (``max_length``, ``window_overlap``, ``truncate``), production is scored again the candidate's way
    first. The difference is tested on ``metric`` when a predictions table gives it (``eval_f1`` reads as F1),
    else on accuracy.
    """
    tested = metric if sig.supported(metric) else "accuracy"
    against = f"version {current.version}"
    theirs = current.tags.get("validation_digest")
    same_file = bool(candidate_digest) and theirs == candidate_digest
    candidate = read(candidate_run_id)
    if candidate is None:
        return LikeForLike(against, candidate_has_table=False, different_files=bool(theirs) and not same_file,
                           why="The candidate has no predictions table (it was logged before runs kept them, or by "
                               "another tool), so the comparison is by the metrics above only.")
    source = current.tags.get("source_run_id") or current.run_id
    reading, their_reading = _run_reading(mlflow_client, candidate_run_id), _run_reading(mlflow_client, source)
    read_alike = reading is None or their_reading is None or reading_label(reading) == reading_label(their_reading)
    production = read(source) if same_file and read_alike and source else None
    if production is not None:
        return LikeForLike(against, changes=changes(candidate, production), reading=reading,
                           difference=sig.compare_tables(production, candidate, tested, digests=(theirs, theirs)))
    if same_file and not read_alike:
        why = (f"The candidate read its validation texts as {reading_label(reading)}, version {current.version}'s "
               f"run as {reading_label(their_reading)}, so their examples were not read alike: version "
               f"{current.version} is compared once scored the candidate's way.")
    elif same_file:
        why = (f"Version {current.version}'s run has no predictions table (it was logged before runs kept them), "
               "so it cannot be compared example by example as it stands.")
    else:
        why = (f"The candidate and version {current.version} were evaluated on different validation files, so "
               "their numbers and examples are not like for like.")
    run = (find_evaluation(mlflow_client, model_name, current.version, candidate_digest, reading)
           if candidate_digest else None)
    if run is not None and run.info.status == "FINISHED":
        scored = read(run.info.run_id)
        if scored is not None:
            return LikeForLike(against, changes=changes(candidate, scored), scored_by=run.info.run_name,
                               different_files=not same_file, reading=reading,
                               difference=sig.compare_tables(scored, candidate, tested,
                                                             digests=(candidate_digest, candidate_digest)))
    return LikeForLike(against, why=why, evaluation=run, can_evaluate=bool(candidate_file and candidate_digest),
                       different_files=not same_file, reading=reading)
