"""Errors a user can act on, in one place.

Every message says what is wrong and what to do, and names the file, row,
key or run it is about. Pages and the CLI print ``str(error)``; logs keep the
traceback.
"""

from __future__ import annotations

import errno
import os
import shutil


class TuneboardError(Exception):
    """Base class: a problem the user can fix, with a plain-language message."""


class DataError(TuneboardError):
    """A dataset file is missing, unreadable or has bad rows."""

    def __init__(self, path: str, problem: str, *, row: str | None = None, hint: str = ""):
        self.path = str(path)
        self.row = row
        where = f"{self.path}, {row}" if row else self.path
        message = f"{where}: {problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)


class GridError(TuneboardError):
    """The experiment grid (models, datasets, hyperparameters) is invalid."""

    def __init__(self, problem: str, *, key: str | None = None):
        self.key = key
        super().__init__(f"{key}: {problem}" if key else problem)


class ModelPathError(TuneboardError):
    """A base model path or id does not point at a usable model."""


class TopicError(TuneboardError):
    """Topic tagging cannot run as asked: the template, the topic list or the model does not fit.

    ``key`` names what is wrong: ``template``, ``topics``, ``threshold``, ``transcripts`` or ``model``.
    """

    def __init__(self, problem: str, *, key: str):
        self.key = key
        super().__init__(problem)


class NotFoundError(TuneboardError):
    """An experiment, run, metric, registered model or version does not exist."""


class RegistryError(TuneboardError):
    """The model registry refused or could not perform a change."""


class ApprovalError(RegistryError):
    """A promotion request cannot be made, approved, rejected or withdrawn (or a direct promotion is refused
    because promotions need an approved request); the message says what changed or what to do."""


class AuthError(TuneboardError):
    """Sign-in failed, or the server refused an action for the signed-in user."""


class ScoreError(TuneboardError):
    """A request to score a file is invalid; ``key`` names the field (``mode``, ``batch_size``...)."""

    def __init__(self, problem: str, *, key: str):
        self.key = key
        super().__init__(f"{key}: {problem}")


def explain(exc: BaseException, artifact_uri: str | None = None) -> str:
    """The reason a run failed, in words a user can act on (a full disk, MLflow out of reach, GPU memory...)."""
    import torch

    if isinstance(exc, TuneboardError):
        return str(exc)
    full = _disk_full(exc)
    if full is not None:
        return _disk_full_message(full, artifact_uri)
    unreachable = _mlflow_unreachable(exc)
    if unreachable:
        return unreachable
    if isinstance(exc, torch.OutOfMemoryError):
        return (f"out of GPU memory ({str(exc).splitlines()[0]}). Try a smaller train_batch_size or max_length, "
                "or gradient_accumulation_steps to keep the effective batch size.")
    return f"{type(exc).__name__}: {exc}"


def _mlflow_unreachable(exc: Exception) -> str | None:
    """MLflow's client gave up on the tracking server (down, or failing) after its retries: say so plainly."""
    import mlflow
    from mlflow.exceptions import MlflowException

    text = str(exc)
    if not isinstance(exc, MlflowException) or "API request to" not in text:
        return None
    why = "connection refused" if "Connection refused" in text else text.splitlines()[0][:300]
    return (f"the MLflow tracking server at {mlflow.get_tracking_uri()} could not be reached ({why}) after the "
            "client's retries, so this run could not be recorded. Retry the job once the server is up.")


def _disk_full(exc: BaseException) -> BaseException | None:
    """The "no space left on device" error in ``exc`` or its causes (``shutil.Error`` lists them as text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or f"[Errno {errno.ENOSPC}]" in str(exc)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _disk_full_message(exc: BaseException, artifact_uri: str | None) -> str:
    """"The disk is full", with the file being written, its file system, and that file system's size."""
    target = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
    if target is None and isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        target = next((entry[1] for entry in exc.args[0] if f"[Errno {errno.ENOSPC}]" in str(entry)), None)
    stored = f"; this run's artifacts go to {artifact_uri}" if artifact_uri else ""
    if target is None and artifact_uri and artifact_uri.startswith(("file:", "/")):
        from urllib.parse import unquote, urlparse

        target, stored = unquote(urlparse(artifact_uri).path), ""  # the run's artifact folder, where it wrote
    where = f" writing {target}" if target else ""
    disk = ""
    if target:
        mount = os.path.abspath(str(target))
        while not os.path.ismount(mount) and os.path.dirname(mount) != mount:
            mount = os.path.dirname(mount)
        try:
            usage = shutil.disk_usage(mount)
            disk = f" (the file system at {mount}: {_size(usage.total)}, {_size(usage.free)} free)"
        except OSError:
            disk = f" (the file system at {mount})"
    return (f"the disk is full: no space left on device{where}{disk}{stored}. Free space there, or store the "
            "artifacts on a larger disk, then retry this job.")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
