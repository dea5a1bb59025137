"""Errors a user can act on, in one place.

Every message says what is wrong and what to do, and names the file, row,
key or run it is about. Pages and the CLI print ``str(error)``; logs keep the
traceback.
"""

from __future__ import annotations


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


class AuthError(TuneboardError):
    """Sign-in failed, or the server refused an action for the signed-in user."""
