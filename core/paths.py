"""Which folders data files and base models may be read from, and when that fence applies.

The trust boundary: the Python API and the CLI run as the user, in the user's
own process, and read whatever that process can read (the seed's example
names its files wherever the user keeps them). A browser session is someone
else asking the dashboard's process to read files on the server: what it can
name or upload, and any grid it submits, is confined to the allowed roots,
so nobody can have the server read ``../../etc/passwd.csv`` or a link to
someone's folder. Paths are resolved with ``..`` and symlinks followed
before they are compared, so a link inside an allowed folder that leads out
of it is refused too.

Confined are:

- reads inside :func:`confined` (or after :func:`confine`): every dashboard page calls it first;
- jobs whose spec says ``confined`` (a grid submitted from a confined context: a page), checked again in
  the training process, since a file can change between submit and run;
- every job run on a tracking server (team mode, ``python -m core.cli server``): anyone who may write runs
  there can queue one, and the worker reads files as itself (:func:`confines_jobs`);
- everything, in a process where the deployment sets ``TUNEBOARD_DATA_ROOTS`` or ``TUNEBOARD_MODEL_ROOTS``.

| variable | default (where confinement applies) |
| --- | --- |
| ``TUNEBOARD_DATA_ROOTS`` | the data folder (``TUNEBOARD_DATA_DIR``) and ``TUNEBOARD_HOME`` |
| ``TUNEBOARD_MODEL_ROOTS`` | ``TUNEBOARD_HOME`` (the demo models) and the Hugging Face cache |
| ``TUNEBOARD_OUTPUT_ROOTS`` | where trained models may be written: ``TUNEBOARD_HOME`` and the data roots |

Each holds folders separated by ``os.pathsep`` (``:`` on Linux and macOS).
Hub ids (``org/model``) are not paths: ``core.modelio`` sends them to the hub.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from core.errors import DataError, GridError, ModelPathError
from core.settings import Settings

DATA_ROOTS = "TUNEBOARD_DATA_ROOTS"
MODEL_ROOTS = "TUNEBOARD_MODEL_ROOTS"
OUTPUT_ROOTS = "TUNEBOARD_OUTPUT_ROOTS"

# Per thread and task (a Streamlit script run is one thread), so one browser session never confines another
# caller in the same process, and a test's AppTest never confines the test itself.
_CONFINED: ContextVar[bool] = ContextVar("tuneboard_confined", default=False)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _entries(variable: str) -> list[str]:
    return [e.strip() for e in os.environ.get(variable, "").split(os.pathsep) if e.strip()]


def _roots(variable: str, defaults: list[Path]) -> list[Path]:
    return list(dict.fromkeys(_real(e) for e in _entries(variable) or defaults))


def data_roots() -> list[Path]:
    """Folders data files may be read from: ``TUNEBOARD_DATA_ROOTS``, else the data folder and home."""
    settings = Settings.from_env()
    return _roots(DATA_ROOTS, [settings.data_dir, settings.home])


def model_roots() -> list[Path]:
    """Folders base models may be loaded from: ``TUNEBOARD_MODEL_ROOTS``, else home and the HF cache."""
    from huggingface_hub import constants

    return _roots(MODEL_ROOTS, [Settings.from_env().home, Path(constants.HF_HUB_CACHE)])


def output_roots() -> list[Path]:
    """Folders trained models may be written to: ``TUNEBOARD_OUTPUT_ROOTS``, else home and the data roots."""
    return _roots(OUTPUT_ROOTS, [Settings.from_env().home, *data_roots()])


def turned_on() -> bool:
    """Whether this process's deployment turned the roots on for everything: any of the variables set."""
    return bool(_entries(DATA_ROOTS) or _entries(MODEL_ROOTS) or _entries(OUTPUT_ROOTS))


def is_confined() -> bool:
    """Whether reads in this context must stay inside the roots."""
    return _CONFINED.get() or turned_on()


@contextlib.contextmanager
def confined(on: bool = True) -> Iterator[None]:
    """Confine reads in this block to the roots when ``on``; never loosens an outer confinement."""
    token = _CONFINED.set(_CONFINED.get() or on)
    try:
        yield
    finally:
        _CONFINED.reset(token)


def confine() -> None:
    """Confine the rest of this context: a Streamlit script run, which has no single block to wrap."""
    _CONFINED.set(True)


def confines_jobs(tracking_uri: str) -> bool:
    """Whether jobs queued on this store run confined whatever their spec says.

    On a tracking server (team mode) anyone who may write runs can queue a job, and the worker runs it as
    itself; on a local SQLite or file store the writer is this machine's user. Roots turned on count too.
    """
    from urllib.parse import urlparse

    scheme = urlparse(tracking_uri).scheme
    local = scheme in ("sqlite", "file") or (not scheme and not tracking_uri.startswith("databricks"))
    return turned_on() or not local


def check_inside(path: str | Path, roots: list[Path], what: str) -> Path:
    """The real path of ``path`` (``..`` and symlinks resolved) when it lies inside one of ``roots``.

    ``what`` is ``"data"`` (refused with a DataError), ``"model"`` (a ModelPathError) or ``"output"`` (a
    GridError on ``output_dir``); the message names the path, where it really leads, the allowed folders and
    the variable that allows another one.
    """
    real = _real(path)
    if any(real.is_relative_to(root) for root in roots):
        return real
    variable, things, verb = {"data": (DATA_ROOTS, "data files", "read from"),
                              "model": (MODEL_ROOTS, "base models", "read from"),
                              "output": (OUTPUT_ROOTS, "trained models", "written to")}[what]
    leads = f" (it leads to {real})" if str(real) != str(Path(path).expanduser()) else ""  # a link, or a ..
    allowed = ", ".join(str(r) for r in roots) or "none"
    problem = f"is outside the folders {things} may be {verb}{leads}. Allowed: {allowed}."
    hint = (f"Choose a folder inside one of them, or add its folder to {variable} "
            f"(folders separated by '{os.pathsep}')." if what == "output" else
            f"Move or copy it into one of them, or add its folder to {variable} "
            f"(folders separated by '{os.pathsep}').")
    if what == "data":
        raise DataError(path, problem, hint=hint)
    if what == "output":
        raise GridError(f"{path} {problem} {hint}", key="output_dir")
    raise ModelPathError(f"{path}: {problem} {hint}")


def check_data(path: str | Path) -> None:
    """Refuse a data file outside the data roots, where this context is confined."""
    if is_confined():
        check_inside(path, data_roots(), "data")


def check_model(path: str | Path) -> None:
    """Refuse a model folder outside the model roots, where this context is confined."""
    if is_confined():
        check_inside(path, model_roots(), "model")


def check_output(path: str | Path) -> None:
    """Refuse a folder for trained models outside the output roots, where this context is confined: a browser
    session must not have the server write into someone else's folders."""
    if is_confined():
        check_inside(path, output_roots(), "output")


def may_read_data(path: str | Path) -> bool:
    """Whether :func:`check_data` would let ``path`` through here (for previews that must not read past it)."""
    try:
        check_data(path)
    except DataError:
        return False
    return True


def relative_inside(path: str | Path, folder: Path, what: str, hint: str = "") -> str:
    """``path`` as a name inside ``folder`` (``what`` names the folder in the message); a DataError otherwise."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(folder):
        raise DataError(path, f"is outside {what} {folder}.", hint=hint)
    return resolved.relative_to(folder).as_posix()
