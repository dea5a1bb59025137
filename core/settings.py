"""Where things live: the MLflow stores, the data folder, the current user.

Everything is read from environment variables, with an embedded default that
needs no set-up: MLflow tracking and registry on SQLite in ``.mlflow/`` at the
repository root, artifacts beside it, demo data in ``data/``.

| variable | default |
| --- | --- |
| ``TUNEBOARD_HOME`` | ``<repo>/.mlflow`` (SQLite store, artifacts, demo models) |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///<home>/mlflow.db`` |
| ``MLFLOW_REGISTRY_URI`` | the tracking URI |
| ``TUNEBOARD_DATA_DIR`` | ``<repo>/data`` |
| ``TUNEBOARD_USER`` | the operating-system user (a dashboard session signed in to the team server: that user) |
| ``TUNEBOARD_DATA_ROOTS`` | data folder and home: where confined reads (pages, their grids, team jobs) may go |
| ``TUNEBOARD_MODEL_ROOTS`` | home and the HF cache: the same for base models (either set: all reads confined) |
| ``TUNEBOARD_APPROVAL`` | off; ``required`` or ``marked``: promotion only through a request someone else approves |

``TUNEBOARD_APPROVAL=required`` governs every model; ``marked`` only the models tagged ``tuneboard.approval=required``.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.auth import signed_in_user
from core.errors import TuneboardError

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    home: Path
    tracking_uri: str
    registry_uri: str
    data_dir: Path
    user: str

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def demo_models_dir(self) -> Path:
        return self.home / "demo-models"

    @property
    def is_embedded(self) -> bool:
        """True when the store is the local SQLite default (we then choose artifact folders)."""
        return self.tracking_uri == default_tracking_uri(self.home)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TUNEBOARD_HOME") or REPO_ROOT / ".mlflow").resolve()
        tracking = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)
        registry = os.environ.get("MLFLOW_REGISTRY_URI") or tracking
        data_dir = Path(os.environ.get("TUNEBOARD_DATA_DIR") or REPO_ROOT / "data").resolve()
        return cls(home=home, tracking_uri=tracking, registry_uri=registry, data_dir=data_dir,
                   user=current_user())


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def current_user() -> str:
    """The one place that knows who is acting (audit trail, experiment names).

    The user signed in to the team server in this session (core.auth) wins; otherwise the process's user.
    """
    return signed_in_user() or os.environ.get("TUNEBOARD_USER") or getpass.getuser()


APPROVAL = "TUNEBOARD_APPROVAL"
# A registered-model tag: with TUNEBOARD_APPROVAL=marked, the models carrying it (value MARK) need approval; on the
# team server the mark cannot be removed or changed once set (core.registry.approval_server)
APPROVAL_TAG = "tuneboard.approval"
MARK = "required"


def approval_rule() -> str:
    """``TUNEBOARD_APPROVAL`` read: "off" (unset: promote directly), "required" (every model's promotions need an
    approved request) or "marked" (only those of models tagged ``tuneboard.approval=required``)."""
    value = os.environ.get(APPROVAL, "").strip().lower()
    if value in ("", "off", "no", "false", "0", "optional"):
        return "off"
    if value in ("required", "on", "yes", "true", "1"):
        return "required"
    if value == "marked":
        return "marked"
    raise TuneboardError(f"{APPROVAL}={value!r} is not a rule: use 'required' (every model's promotions need "
                         f"someone else's approval), 'marked' (only models tagged {APPROVAL_TAG}={MARK}), or leave "
                         "it unset to promote directly.")


def approval_required() -> bool:
    """Whether every model's promotions need an approved request (``TUNEBOARD_APPROVAL=required``)."""
    return approval_rule() == "required"


def is_marked(tags: Mapping[str, str] | None) -> bool:
    """Whether a registered model's tags mark it as needing approval (``tuneboard.approval=required``)."""
    return str((tags or {}).get(APPROVAL_TAG, "")).strip().lower() == MARK


def needs_approval(rule: str, tags: Mapping[str, str] | None) -> bool:
    """Whether, under ``rule`` (``approval_rule``), a model with these tags needs an approved request."""
    return rule == "required" or (rule == "marked" and is_marked(tags))


def configure_mlflow(settings: Settings | None = None) -> Settings:
    """Point the mlflow module at the configured stores; create the local folder if embedded."""
    import mlflow

    settings = settings or Settings.from_env()
    if settings.is_embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        create_store_once(settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return settings


def create_store_once(settings: Settings) -> None:
    """Create the embedded SQLite store's tables, one process at a time (a file lock in home).

    Two processes opening a new store at once both create MLflow's tables, and one dies of "table
    registered_models already exists": seen when ``core.cli prepare`` and the worker it starts opened a new home
    together on a loaded machine. After the first time, a marker file makes this one ``stat``.
    """
    import fcntl

    ready = settings.home / ".store-ready"
    if ready.exists():
        return
    with open(settings.home / ".store.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if ready.exists():
            return
        from mlflow.tracking import MlflowClient

        client = MlflowClient(settings.tracking_uri, settings.registry_uri)  # the tracking store's tables
        client.search_registered_models(max_results=1)  # and the registry's, when it is another file
        ready.touch()


def ensure_experiment(name: str, settings: Settings | None = None) -> str:
    """Return the id of experiment ``name``, creating it (artifacts under home when embedded)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    settings = settings or Settings.from_env()
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":
            client.restore_experiment(existing.experiment_id)
        return existing.experiment_id
    location = settings.artifacts_dir.as_uri() if settings.is_embedded else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:  # another process created it since we looked (two submits of one new name)
        created = client.get_experiment_by_name(name) if exc.error_code == "RESOURCE_ALREADY_EXISTS" else None
        if created is None:
            raise
        return created.experiment_id
