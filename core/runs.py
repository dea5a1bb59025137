"""Reading runs back from MLflow: experiments by name, every run (paginated), one DataFrame.

``runs_frame`` is a pure function from MLflow ``Run`` entities to a pandas
DataFrame with ``metrics.*``, ``params.*`` and ``tags.*`` columns, the shape
that selection, the CLI and the dashboard's charts all read.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.errors import NotFoundError
from core.naming import BOOKKEEPING_TAG, RUN_TYPE_TAG
from core.settings import configure_mlflow

PAGE = 1000
log = logging.getLogger("tuneboard.runs")


def client(tracking_uri: str | None = None, registry_uri: str | None = None):
    from mlflow.tracking import MlflowClient

    settings = configure_mlflow()
    return MlflowClient(tracking_uri or settings.tracking_uri, registry_uri or settings.registry_uri)


def get_experiment(mlflow_client, name: str):
    """The experiment called ``name``; a NotFoundError lists the ones that exist."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        names = sorted(e.name for e in mlflow_client.search_experiments(max_results=200))
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        raise NotFoundError(f"experiment {name!r} does not exist. Existing experiments: {shown or 'none'}.")
    return experiment


def search_all(mlflow_client, experiment_ids: Sequence[str], filter_string: str = "",
               order_by: Sequence[str] | None = None, view_type: int | None = None) -> list:
    """Every matching run (live ones unless ``view_type`` says otherwise): ``search_runs`` stops at one page,
    so follow the tokens."""
    from mlflow.entities import ViewType

    runs: list = []
    token = None
    while True:
        page = mlflow_client.search_runs(list(experiment_ids), filter_string=filter_string, max_results=PAGE,
                                         run_view_type=view_type or ViewType.ACTIVE_ONLY,
                                         order_by=list(order_by or []), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_frame(runs: Iterable, models: Mapping[str, str] | None = None):
    """One row per run: ids, name, status, times, ``model_uri`` (from ``models``, see :func:`find_models`;
    None where the run holds none), then ``metrics.*``, ``params.*``, ``tags.*``."""
    import pandas as pd

    models = models or {}
    return pd.DataFrame([run_row(run, models.get(run.info.run_id)) for run in runs])


def run_row(run, model: str | None) -> dict:
    """One run's row of :func:`runs_frame` (kept per run by ``core.runs_cache``)."""
    import pandas as pd

    info, data = run.info, run.data
    row = {"run_id": info.run_id, "experiment_id": info.experiment_id, "run_name": info.run_name,
           "status": info.status, "start_time": pd.to_datetime(info.start_time, unit="ms"),
           "end_time": pd.to_datetime(info.end_time, unit="ms") if info.end_time else pd.NaT,
           "model_uri": model}
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items()})
    return row


# -- a run's model, through MLflow's own links ---------------------------------------------------------------
NO_MODEL = ("MLflow links no logged model to it and its artifacts hold no MLmodel file, so there is nothing to "
            "register")
HOW_TO_LOG = ("log the model inside the run with mlflow.transformers.log_model (or save it with "
              "mlflow.transformers.save_model and log that folder with mlflow.log_artifacts(folder, \"model\"))")
OUR_RUN_TYPES = ("fine_tune", "baseline")  # core.training's run_type tag
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")  # what the HF callback logs per save with HF_MLFLOW_LOG_ARTIFACTS
_IN_CHUNK = 500  # run ids per search_logged_models filter (well under any database's bound-parameter limit)
_MAX_FOLDERS = 10  # top-level artifact folders looked into for an MLmodel, per run
_LISTING_THREADS = 8  # artifact listings at once (each is an HTTP call on a remote artifact store)
# Artifact listings, by run id: {run_id: (when listed, model URI or None)}. A page that polls must not list
# every foreign run's artifacts again on each rerun: a model found stays found; "none" is asked again after
# LISTING_TTL (a model logged into a finished run later shows within it).
_LISTED: dict[str, tuple[float, str | None]] = {}
LISTING_TTL = 300.0


def is_candidate(run) -> bool:
    """A finished run that is not one of our baselines: the runs selection and promotion look at."""
    return run.info.status == "FINISHED" and run.data.tags.get(RUN_TYPE_TAG) != "baseline"


def find_models(mlflow_client, runs: Sequence, links: dict | None = None) -> dict[str, str]:
    """{run_id: model URI} for those of ``runs`` that hold a model, found through MLflow's own links:

    1. our ``model_uri`` tag (runs this tool trained);
    2. MLflow 3 logged models: linked to the run as model outputs (``search_runs`` fills ``run.outputs`` in),
       or whose ``source_run_id`` is the run. One ``search_logged_models`` per experiment covers all the runs
       and says which models are READY; a final model wins over the HF callback's ``checkpoint-N`` ones, then
       the latest;
    3. MLflow 2: an ``MLmodel`` file in a top-level folder of the run's artifacts (``runs:/ID/model``), listed
       only for the runs the first two found nothing for;
    4. by time (:func:`time_links`): a logged model linked to no run, created within ``LINK_WINDOW_S`` after this
       run ended, when no other run of the experiment ended or ran in between (``trainer.train()`` then
       ``log_model`` with no run open). ``links``, when given, gets a :class:`TimeLink` per run linked that way.

    Pass only the runs that matter (finished candidates, e.g. :func:`is_candidate`): steps 2 and 3 query the store.
    """
    found: dict[str, str] = {}
    rest = []
    for run in runs:
        uri = run.data.tags.get("model_uri")
        if uri:
            found[run.info.run_id] = uri
        elif run.data.tags.get(RUN_TYPE_TAG) not in OUR_RUN_TYPES:  # ours tag the model they log: nothing to find
            rest.append(run)
    found.update(_logged_models(mlflow_client, rest))
    found.update(_artifact_models([r for r in rest if r.info.run_id not in found]))
    for experiment_id in sorted({r.info.experiment_id for r in rest if r.info.run_id not in found}):
        linked, _ = time_links(mlflow_client, experiment_id)
        for run in rest:
            link = linked.get(run.info.run_id)
            if link is not None and run.info.run_id not in found:
                found[run.info.run_id] = f"models:/{link.model_id}"
                if links is not None:
                    links[run.info.run_id] = link
    return found


LINK_WINDOW_S = 60  # a logged model created this long after a run ended may be that run's (step 4 of find_models)


@dataclass(frozen=True)
class TimeLink:
    """A logged model taken as a run's because of when it was logged."""

    model_id: str
    run_id: str
    run_name: str
    seconds: float  # after the run ended

    @property
    def words(self) -> str:
        return f"linked by time: logged {self.seconds:.0f} s after {self.run_name} ended"


@dataclass(frozen=True)
class Unlinked:
    """A logged model of an experiment that no run holds, by link or by time."""

    model_id: str
    name: str
    created_ms: int

    @property
    def words(self) -> str:
        at = _dt.datetime.fromtimestamp(self.created_ms / 1000, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.model_id} ({self.name or 'unnamed'}, logged {at})"


def time_links(mlflow_client, experiment_id: str) -> tuple[dict[str, TimeLink], list[Unlinked]]:
    """({run_id: TimeLink}, the logged models no run holds) for the experiment's logged models linked to no run.

    Models are taken oldest first. A model is a run's when that run is the only one of the experiment that ended
    within ``LINK_WINDOW_S`` before the model was created and holds no model yet (MLflow's own links, or a model
    linked this way before: a script that logs each model right after its run links them all), and no other run
    ended or was running between that run's end and the model's creation. Every other model without a source
    run is listed as unlinked, oldest first: nothing is guessed when two runs ended within the window.
    """
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException

    try:
        models = [m for m in _search_models(mlflow_client, experiment_id, "")
                  if not m.source_run_id and m.status == LoggedModelStatus.READY
                  and not _CHECKPOINT.match(m.name or "")]
    except MlflowException:  # a store without logged models (MLflow 2 server)
        return {}, []
    if not models:
        return {}, []
    runs = search_all(mlflow_client, [experiment_id])
    window = LINK_WINDOW_S * 1000
    links: dict[str, TimeLink] = {}
    unlinked: list[Unlinked] = []
    taken = {r.info.run_id for r in runs if has_model(r)}
    for model in sorted(models, key=lambda m: m.creation_timestamp or 0):
        created = model.creation_timestamp or 0
        ended = [r for r in runs if r.info.run_id not in taken and r.info.end_time
                 and r.info.end_time <= created <= r.info.end_time + window]
        if len(ended) == 1:
            run = ended[0]
            end = run.info.end_time
            between = [r for r in runs if r is not run and (r.info.start_time or 0) <= created
                       and (not r.info.end_time or r.info.end_time > end)]
            if not between:
                links[run.info.run_id] = TimeLink(model.model_id, run.info.run_id, run.info.run_name or run.info.run_id,
                                                  (created - end) / 1000)
                taken.add(run.info.run_id)
                continue
        unlinked.append(Unlinked(model.model_id, model.name or "", created))
    return links, unlinked


def _logged_models(mlflow_client, runs: Sequence) -> dict[str, str]:
    """Step 2 of :func:`find_models`: {run_id: ``models:/m-...``} of the runs' MLflow 3 logged models."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException

    linked = {r.info.run_id: {o.model_id: o.step for o in (getattr(r.outputs, "model_outputs", None) or [])}
              for r in runs}
    by_experiment: dict[str, list[str]] = {}
    for run in runs:
        by_experiment.setdefault(run.info.experiment_id, []).append(run.info.run_id)
    known: dict[str, object] = {}  # model_id -> LoggedModel
    for experiment_id, ids in by_experiment.items():
        for i in range(0, len(ids), _IN_CHUNK):
            quoted = ", ".join(f"'{run_id}'" for run_id in ids[i:i + _IN_CHUNK])
            try:
                known.update((m.model_id, m) for m in _search_models(mlflow_client, experiment_id,
                                                                      f"source_run_id IN ({quoted})"))
            except MlflowException as exc:  # a store without logged models (MLflow 2 server): outputs only
                log.info("search_logged_models is not available here (%s); using run outputs only", exc)
                break
    for model in known.values():
        if model.source_run_id in linked:
            linked[model.source_run_id].setdefault(model.model_id, -1)
    found = {}
    for run_id, models in linked.items():
        ranked = []
        for model_id, step in models.items():
            model = known.get(model_id)
            if model is not None and model.status != LoggedModelStatus.READY:
                continue  # a log_model that failed half-way, or is still uploading
            final = model is None or not _CHECKPOINT.match(model.name or "")
            ranked.append((final, step, getattr(model, "creation_timestamp", 0) or 0, model_id))
        if ranked:
            found[run_id] = f"models:/{max(ranked)[-1]}"
    return found


def _search_models(mlflow_client, experiment_id: str, filter_string: str) -> list:
    models: list = []
    token = None
    while True:
        page = mlflow_client.search_logged_models([experiment_id], filter_string=filter_string, max_results=PAGE,
                                                  page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def _artifact_models(runs: Sequence) -> dict[str, str]:
    """Step 3 of :func:`find_models`: {run_id: ``runs:/ID/FOLDER``} where a top-level folder holds an MLmodel.

    Lists through each run's own artifact URI (no ``get_run`` per run), several runs at once, with results
    cached (see ``_LISTED``).
    """
    import contextvars
    import time
    from concurrent.futures import ThreadPoolExecutor

    now = time.monotonic()
    found, todo = {}, []
    for run in runs:
        listed = _LISTED.get(run.info.run_id)
        if listed and (listed[1] or now - listed[0] < LISTING_TTL):
            if listed[1]:
                found[run.info.run_id] = listed[1]
        else:
            todo.append(run)
    if not todo:
        return found
    if len(_LISTED) > 10_000:
        _LISTED.clear()
    # each listing in a copy of this thread's context: a signed-in session's credentials travel with it
    with ThreadPoolExecutor(min(_LISTING_THREADS, len(todo))) as pool:
        listed = list(pool.map(lambda run, ctx: ctx.run(_artifact_model, run), todo,
                               [contextvars.copy_context() for _ in todo]))
    for run, uri in zip(todo, listed, strict=True):
        if uri is not False:  # False: the store could not be read; ask again next time
            _LISTED[run.info.run_id] = (now, uri)
        if uri:
            found[run.info.run_id] = uri
    return found


def _artifact_model(run) -> str | None | bool:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repo = get_artifact_repository(run.info.artifact_uri)
        folders = [f.path for f in repo.list_artifacts() if f.is_dir]
        folders.sort(key=lambda path: path != "model")  # the usual name first
        for folder in folders[:_MAX_FOLDERS]:
            if any(f.path.rsplit("/", 1)[-1] == "MLmodel" for f in repo.list_artifacts(folder)):
                return f"runs:/{run.info.run_id}/{folder}"
    except Exception as exc:  # noqa: BLE001 - an unreachable artifact store: the run shows without a model
        log.warning("could not list the artifacts of run %s: %s", run.info.run_id, exc)
        return False
    return None


def has_model(run, mlflow_client=None) -> bool:
    """Whether a run holds a model: with a client, through every link MLflow has (:func:`find_models`); without
    one, only what the run entity shows (our tag, MLflow 3 model outputs)."""
    if mlflow_client is not None:
        return run.info.run_id in find_models(mlflow_client, [run])
    outputs = getattr(run, "outputs", None)
    return bool(run.data.tags.get("model_uri") or (outputs and getattr(outputs, "model_outputs", None)))


def model_uri(run, mlflow_client) -> str:
    """Where a run's model lives, for registration (:func:`find_models`); a NotFoundError says why there is none."""
    uri = find_models(mlflow_client, [run]).get(run.info.run_id)
    if not uri:
        raise NotFoundError(f"run {run.info.run_name} ({run.info.run_id}) holds no model: {NO_MODEL}. To make it "
                            f"promotable, {HOW_TO_LOG}." + unlinked_words(mlflow_client, run.info.experiment_id))
    return uri


def unlinked_words(mlflow_client, experiment_id: str, model_name: str = "MODEL") -> str:
    """" Logged in this experiment but linked to no run: m-1 (model, logged ...), ... Promote one by its id: ..."
    ("" when there are none)."""
    _, unlinked = time_links(mlflow_client, experiment_id)
    if not unlinked:
        return ""
    return (f" Logged in this experiment but linked to no run (no run ended alone within {LINK_WINDOW_S} s before "
            "it): " + "; ".join(u.words for u in unlinked) + ". Promote one by its model id: python -m core.cli "
            f"promote {model_name} --model-id {unlinked[-1].model_id} (or request it: python -m core.cli request "
            f"{model_name} --model-id {unlinked[-1].model_id} --reason \"...\").")


def experiment_ids(mlflow_client) -> list[str]:
    """The ids of every live experiment (for searching runs across all of them)."""
    return [e.experiment_id for e in _all_experiments(mlflow_client)]


def experiments(mlflow_client) -> list:
    """Every live experiment, newest first (the empty 'Default' one and Tuneboard's own records left out)."""
    found = [e for e in _all_experiments(mlflow_client) if BOOKKEEPING_TAG not in (e.tags or {})]
    return [e for e in found if not (e.name == "Default" and e.experiment_id == "0")] or found


def _all_experiments(mlflow_client) -> list:
    found = []
    token = None
    while True:
        page = mlflow_client.search_experiments(max_results=PAGE, page_token=token,
                                                order_by=["creation_time DESC"])
        found.extend(page)
        token = page.token
        if not token:
            return found


def load_frame(mlflow_client, experiment_ids: Sequence[str]):
    """All runs of the experiments as one DataFrame (with the experiment's name in a column).

    ``model_uri`` is filled for the finished candidates that logged a metric (:func:`find_models`).
    ``core.runs_cache`` returns the same frame, re-reading only the runs that changed.
    """
    found = search_all(mlflow_client, experiment_ids)
    frame = runs_frame(found, find_models(mlflow_client, model_holders(found)))
    return with_experiment_names(frame, {i: mlflow_client.get_experiment(i).name
                                         for i in {r.info.experiment_id for r in found}})


def model_holders(runs: Sequence) -> list:
    """The runs whose model :func:`load_frame` looks for: finished candidates that logged a metric."""
    return [r for r in runs if is_candidate(r) and r.data.metrics]


def with_experiment_names(frame, names: Mapping[str, str]):
    """``frame`` with an ``experiment`` column (the name, from ``names`` by experiment id) as its third."""
    if len(frame):
        frame.insert(2, "experiment", frame["experiment_id"].map(names))
    return frame


def metric_histories(mlflow_client, runs: dict[str, str], metric: str) -> dict:
    """{run name: DataFrame(step, value)} of one metric for the given {run_id: run name}."""
    import pandas as pd

    return {name: pd.DataFrame([(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, metric)],
                               columns=["step", "value"])
            for run_id, name in runs.items()}


def confusion_matrix(mlflow_client, run_id: str) -> dict | None:
    """The run's confusion_matrix.json artifact, or None if it has none."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, "confusion_matrix.json", tmp)
        except Exception:  # noqa: BLE001 - no such artifact (runs logged by other tools)
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)


# -- what past runs measured (the worker's packing, the grid's duration estimate) ----------------------------------
def _quoted(value: str) -> str | None:
    """A value as an MLflow filter literal; None when it holds both quote marks (MLflow has no escapes)."""
    if "'" not in value:
        return f"'{value}'"
    return None if '"' in value else f'"{value}"'


def memory_peak(mlflow_client, base_model_name: str) -> tuple[float, int] | None:
    """(GPU memory peak in bytes, batch x max_length) of the latest run of this base model that measured one."""
    quoted = _quoted(base_model_name)
    if quoted is None:
        return None
    for run in mlflow_client.search_runs(experiment_ids(mlflow_client), f"tags.base_model_name = {quoted} and "
                                         "metrics.gpu_memory_peak_mb > 0", max_results=1,
                                         order_by=["attributes.start_time DESC"]):
        params = run.data.params
        tokens = int(params.get("per_device_train_batch_size", 16)) * int(params.get("max_length", 128))
        return run.data.metrics["gpu_memory_peak_mb"] * 2**20, tokens
    return None


def training_speed(mlflow_client, base_model_name: str, experiment_limit: int = 50) -> float | None:
    """The median training speed (samples/s) of the latest finished runs of this base model, or None."""
    quoted = _quoted(base_model_name)
    if quoted is None:
        return None
    past = mlflow_client.search_runs(experiment_ids(mlflow_client)[:experiment_limit],
                                     f"tags.base_model_name = {quoted} and attributes.status = 'FINISHED'",
                                     max_results=20)
    speeds = sorted(r.data.metrics["train_samples_per_second"] for r in past
                    if "train_samples_per_second" in r.data.metrics)
    return speeds[len(speeds) // 2] if speeds else None
