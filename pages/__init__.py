"""The dashboard's pages (one file per task, run by ``app.py``) and the helpers they share.

Streamlit runs each session's script in a thread of its own, and a rerun can start while an earlier run is
still importing. Two threads importing the same modules for the first time can trip Python's module-lock
deadlock check inside MLflow's protobuf modules (``_DeadlockError: deadlock detected by
_ModuleLock('mlflow.protos.databricks_pb2')``, seen when a link was clicked while the first page view was still
loading): the page shows "This app has encountered an error". So ``app.py`` calls :func:`import_once` first:
every module a page imports is imported once, by one thread at a time, before any page runs.

transformers 5 imports its classes when first asked for them (a lazy module), from whichever thread asks; with
``runner.fastReruns`` (Streamlit's default) a rerun starts in a new thread at once, while the run it replaces stops
only at its next Streamlit call, so a rerun that starts while the old run is still importing can get "cannot import
name 'TrainingArguments' from 'transformers'" (a loaded CI run: loading a grid file on Compose showed that error).
So the classes the dashboard's core functions ask for are resolved here too (:data:`LAZY`; about 3 s once per
dashboard process).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import threading
from pathlib import Path

_LOCK = threading.Lock()
_imported = False
# the names core asks a lazy module for while a page runs (checking a grid, reading a model's config, trying a model)
LAZY = {"transformers": ("AutoConfig", "AutoTokenizer", "AutoModelForSequenceClassification",
                         "PreTrainedTokenizerFast", "TrainingArguments")}


def page_imports() -> list[str]:
    """Every module the page files import, at any level (``from core import runs`` gives ``core.runs``)."""
    names: list[str] = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names += [f"{node.module}.{alias.name}" for alias in node.names
                          if _is_module(f"{node.module}.{alias.name}")]
    return [name for name in dict.fromkeys(names) if name != "__future__"]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def import_once() -> None:
    """Import every module the pages use, and resolve :data:`LAZY`, once per process, one thread at a time."""
    global _imported
    if _imported:
        return
    with _LOCK:
        if not _imported:
            for name in page_imports():
                importlib.import_module(name)
            for module, names in LAZY.items():
                for name in names:
                    getattr(importlib.import_module(module), name)
            _imported = True
