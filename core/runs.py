"""Reading runs back from MLflow: experiments by name, every run (paginated), one DataFrame.

``runs_frame`` is a pure function from MLflow ``Run`` entities to a pandas
DataFrame with ``metrics.*``, ``params.*`` and ``tags.*`` columns, the shape
that selection, the CLI and the dashboard's charts all read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.errors import NotFoundError

PAGE = 1000


def client(tracking_uri: str | None = None, registry_uri: str | None = None):
    from mlflow.tracking import MlflowClient

    from core.settings import configure_mlflow

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
               order_by: Sequence[str] | None = None) -> list:
    """Every matching run: ``search_runs`` stops at one page, so follow the tokens."""
    runs: list = []
    token = None
    while True:
        page = mlflow_client.search_runs(list(experiment_ids), filter_string=filter_string, max_results=PAGE,
                                         order_by=list(order_by or []), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_frame(runs: Iterable):
    """One row per run: ids, name, status, times, then ``metrics.*``, ``params.*``, ``tags.*``."""
    import pandas as pd

    rows = []
    for run in runs:
        info, data = run.info, run.data
        row = {"run_id": info.run_id, "experiment_id": info.experiment_id, "run_name": info.run_name,
               "status": info.status, "start_time": pd.to_datetime(info.start_time, unit="ms"),
               "end_time": pd.to_datetime(info.end_time, unit="ms") if info.end_time else pd.NaT}
        row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
        row.update({f"params.{k}": v for k, v in data.params.items()})
        row.update({f"tags.{k}": v for k, v in data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def has_model(run) -> bool:
    """A run holds a model if we tagged one, or MLflow 3 recorded a logged-model output."""
    if run.data.tags.get("model_uri"):
        return True
    outputs = getattr(run, "outputs", None)
    return bool(outputs and getattr(outputs, "model_outputs", None))


def model_uri(run) -> str:
    """Where a run's model lives, for registration."""
    uri = run.data.tags.get("model_uri")
    if uri:
        return uri
    outputs = getattr(run, "outputs", None)
    if outputs and getattr(outputs, "model_outputs", None):
        return f"models:/{outputs.model_outputs[0].model_id}"
    raise NotFoundError(f"run {run.info.run_name} ({run.info.run_id}) holds no model to register.")


def experiment_ids(mlflow_client) -> list[str]:
    """The ids of every live experiment (for searching runs across all of them)."""
    return [e.experiment_id for e in _all_experiments(mlflow_client)]


def experiments(mlflow_client) -> list:
    """Every live experiment, newest first (the empty 'Default' one left out)."""
    found = _all_experiments(mlflow_client)
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


def change_token(mlflow_client, experiment_ids: Sequence[str]) -> tuple:
    """A cheap fingerprint that changes when runs are added, start or end: keys the pages' cache."""
    if not experiment_ids:
        return ()
    ids = list(experiment_ids)
    newest = mlflow_client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"])
    ended = mlflow_client.search_runs(ids, max_results=1, order_by=["attributes.end_time DESC"])
    active = mlflow_client.search_runs(ids, "attributes.status != 'FINISHED'", max_results=PAGE)
    return (newest[0].info.run_id if newest else None, ended[0].info.end_time if ended else None,
            tuple(sorted((r.info.run_id, r.info.status) for r in active)))


def load_frame(mlflow_client, experiment_ids: Sequence[str]):
    """All runs of the experiments as one DataFrame (with the experiment's name in a column)."""
    frame = runs_frame(search_all(mlflow_client, experiment_ids))
    if len(frame):
        names = {i: mlflow_client.get_experiment(i).name for i in set(frame["experiment_id"])}
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
