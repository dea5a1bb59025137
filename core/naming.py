"""Names: the seed's conventions for experiments and runs, the tags our runs carry, and stage names.

Experiment: ``/Users/{user_id}/{base_name}_{data_src}_{run_date}`` (run_date YYYYMMDD).
Run: ``{base_model_name}_{dataset_name}_param_set{index}``, index from 1.
A registry stage names an alias: ``Production`` -> ``production`` (stages are deprecated in MLflow 3).
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import PurePath

from core.errors import RegistryError

BASELINE_SUFFIX = "pretrained_baseline"

# Tags every run of ours carries (no dots: MLflow filter strings take them as they are)
RUN_TYPE_TAG = "run_type"  # what the run is: "baseline" | "fine_tune" | "score" (a job's kind of run)
ERROR_TAG = "error"  # why the run failed, in words a user can act on
MODEL_URI_TAG = "model_uri"  # where a fine-tune logged its model

STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


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


def alias_for(stage_or_alias: str) -> tuple[str, str | None]:
    """(alias, stage) for a name: ``Production`` -> (``production``, ``Production``); ``champion`` -> alias only."""
    name = (stage_or_alias or "").strip()
    if not _ALIAS.match(name) or name.lower() == "latest" or re.fullmatch(r"[vV]\d+", name):
        raise RegistryError(f"{stage_or_alias!r} cannot be a stage or alias: use letters, digits, '_' or '-' "
                            "(e.g. Production, Staging, champion); 'latest' and 'v1'-style names are reserved.")
    stage = STAGES.get(name.lower())
    return name.lower() if stage else name, stage


# An experiment tag: the experiment holds Tuneboard's own records (decision records), not runs to compare or promote
BOOKKEEPING_TAG = "tuneboard_bookkeeping"
