"""The seed's naming conventions for experiments and runs.

Experiment: ``/Users/{user_id}/{base_name}_{data_src}_{run_date}`` (run_date YYYYMMDD).
Run: ``{base_model_name}_{dataset_name}_param_set{index}``, index from 1.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import PurePath

BASELINE_SUFFIX = "pretrained_baseline"


def experiment_name(user_id: str, base_name: str, data_src: str,
                    run_date: _dt.date | str | None = None) -> str:
    """``/Users/{user_id}/{base_name}_{data_src}_{YYYYMMDD}``; today when no date is given."""
    if run_date is None:
        run_date = _dt.date.today()
    if isinstance(run_date, _dt.date):
        run_date = run_date.strftime("%Y%m%d")
    return f"/Users/{user_id}/{base_name}_{data_src}_{run_date}"


def base_model_name(path_or_id: str) -> str:
    """Last path component of a model path or hub id (``org/deberta-v3-base`` -> ``deberta-v3-base``).

    A registered model keeps its name: ``models:/Topic/3`` -> ``Topic-v3``, ``models:/Topic@production`` ->
    ``Topic@production``.
    """
    text = str(path_or_id).strip()
    if text.startswith("models:/"):
        name, _, which = text[len("models:/"):].rstrip("/").rpartition("/")
        return f"{name}-v{which}" if name and which.isdigit() else text[len("models:/"):].replace("/", "-")
    return PurePath(str(path_or_id).rstrip("/\\")).name


def dataset_name(path: str) -> str:
    """File stem of a dataset version (``full_dataset.csv`` -> ``full_dataset``)."""
    return PurePath(str(path)).stem


def run_name(base_model: str, dataset_version: str, index: int) -> str:
    """``{base_model_name}_{dataset_name}_param_set{index}``."""
    return f"{base_model_name(base_model)}_{dataset_name(dataset_version)}_param_set{index}"


def baseline_run_name(base_model: str) -> str:
    """Name of the pretrained-model evaluation run of one base model."""
    return f"{base_model_name(base_model)}_{BASELINE_SUFFIX}"
