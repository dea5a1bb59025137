"""Score a registered version on another validation file, as a background job, and find that run again.

A promotion compares the candidate with production example by example. When the two were evaluated on
different validation files (their ``validation_digest`` differs), production is evaluated on the candidate's
file: a job of kind "baseline" (an evaluation without training) whose base model is ``models:/NAME/VERSION``,
in the experiment ``Evaluations - NAME``, tagged with the version and the file's digest. Like every
evaluated run it logs its predictions table (``core.examples.table``).
"""

from __future__ import annotations

from pathlib import Path

from core import naming
from core import runs as runs_mod
from core.grid import DEFAULTS, RunSpec

EXPERIMENT_PREFIX = "Evaluations - "
MODEL_TAG = "evaluates_model"
VERSION_TAG = "evaluates_version"
DIGEST_TAG = "evaluated_on_digest"
RUN_TAGS = (MODEL_TAG, VERSION_TAG, DIGEST_TAG, "base_model_name")  # what a retry of the job keeps


def experiment_name(model_name: str) -> str:
    """The experiment holding the evaluations of a registered model's versions."""
    return f"{EXPERIMENT_PREFIX}{model_name}"


def evaluation_spec(model_name: str, version: str | int, validation_path: str, output_root: str | Path) -> RunSpec:
    """The run that scores version ``version`` of ``model_name`` on ``validation_path`` (nothing is trained)."""
    run_name = f"{model_name} v{version} on {naming.dataset_name(validation_path)}"
    return RunSpec(kind="baseline", experiment_name=experiment_name(model_name), run_name=run_name,
                   base_model=f"models:/{model_name}/{version}", validation_path=str(validation_path),
                   output_dir=str(Path(output_root) / "evaluations"), hyperparameters=dict(DEFAULTS))


def queue_evaluation(job_queue, model_name: str, version: str | int, validation_path: str, digest: str):
    """Queue the evaluation of a version on a validation file whose digest is ``digest``; returns the Job.

    Checked before anything is written, inside the allowed folders when the caller is confined (a page).
    """
    spec = evaluation_spec(model_name, version, validation_path, job_queue.settings.home)
    tags = {MODEL_TAG: model_name, VERSION_TAG: str(version), DIGEST_TAG: digest,
            "base_model_name": f"{model_name} v{version}"}
    return job_queue.submit(spec, tags=tags)[0]


def find_evaluation(mlflow_client, model_name: str, version: str | int, digest: str):
    """The evaluation run of that version on a file with that digest, or None: the latest that finished, else
    the latest of any status (one queued, running or failed)."""
    experiment = mlflow_client.get_experiment_by_name(experiment_name(model_name))
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    if "'" in str(version) or "'" in digest:
        return None  # never part of a filter string; no run is tagged with such a value anyway
    found = runs_mod.search_all(mlflow_client, [experiment.experiment_id],
                                f"tags.{VERSION_TAG} = '{version}' and tags.{DIGEST_TAG} = '{digest}'",
                                order_by=["attributes.start_time DESC"])
    found = [r for r in found if r.data.tags.get(MODEL_TAG) == model_name]
    return next((r for r in found if r.info.status == "FINISHED"), found[0] if found else None)
