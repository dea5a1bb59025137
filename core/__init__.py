"""Tuneboard's library: fine-tune, compare and promote text classifiers on MLflow.

The seed's three classes are re-exported here; importing ``core`` itself
stays cheap (torch and mlflow load on first use). Never imports streamlit.
"""

from __future__ import annotations

import os

# MLflow's usage telemetry stays off in every process that imports Tuneboard (dashboard, CLI, worker, team server,
# jobs, a user's script that imports core before mlflow), unless MLFLOW_DISABLE_TELEMETRY was set by the user: the
# client starts at `import mlflow`, and where it cannot fetch its config (offline, as many of our users' machines
# are) its thread removes _MLFLOW_TELEMETRY_SESSION_ID from os.environ while a call to a tracking server may be
# iterating it (requests reads the proxies from it), and that call fails with a KeyError (seen in the chaos soaks)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__all__ = ["ExperimentManager", "ModelSelector", "ModelTransition"]

_HOMES = {
    "ExperimentManager": "core.experiment_manager",
    "ModelSelector": "core.registry.model_selector",
    "ModelTransition": "core.registry.model_transition",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
