"""Tuneboard's library: fine-tune, compare and promote text classifiers on MLflow.

The seed's three classes are re-exported here; importing ``core`` itself
stays cheap (torch and mlflow load on first use). Never imports streamlit.
"""

from __future__ import annotations

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
