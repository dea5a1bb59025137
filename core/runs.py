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
