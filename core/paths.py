"""Which folders data files and base models may be read from.

A grid names its files and model folders by path, and the dashboard reads them
on the server: without a fence, whoever can type a path could have the server
read any file it can (``../../etc/passwd.csv``, a link to someone's folder).
Paths are resolved with ``..`` and symlinks followed before they are compared,
so a link inside an allowed folder that leads out of it is refused too.

| variable | default |
| --- | --- |
| ``TUNEBOARD_DATA_ROOTS`` | the data folder (``TUNEBOARD_DATA_DIR``) and ``TUNEBOARD_HOME`` |
| ``TUNEBOARD_MODEL_ROOTS`` | ``TUNEBOARD_HOME`` (the demo models) and the Hugging Face cache |

Each holds folders separated by ``os.pathsep`` (``:`` on Linux and macOS).
Hub ids (``org/model``) are not paths: ``core.modelio`` sends them to the hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import DataError, ModelPathError
from core.settings import Settings

DATA_ROOTS = "TUNEBOARD_DATA_ROOTS"
MODEL_ROOTS = "TUNEBOARD_MODEL_ROOTS"


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _roots(variable: str, defaults: list[Path]) -> list[Path]:
    entries = [e.strip() for e in os.environ.get(variable, "").split(os.pathsep) if e.strip()]
    return list(dict.fromkeys(_real(e) for e in entries or defaults))


def data_roots() -> list[Path]:
    """Folders data files may be read from: ``TUNEBOARD_DATA_ROOTS``, else the data folder and home."""
    settings = Settings.from_env()
    return _roots(DATA_ROOTS, [settings.data_dir, settings.home])


def model_roots() -> list[Path]:
    """Folders base models may be loaded from: ``TUNEBOARD_MODEL_ROOTS``, else home and the HF cache."""
    from huggingface_hub import constants

    return _roots(MODEL_ROOTS, [Settings.from_env().home, Path(constants.HF_HUB_CACHE)])


def check_inside(path: str | Path, roots: list[Path], what: str) -> Path:
    """The real path of ``path`` (``..`` and symlinks resolved) when it lies inside one of ``roots``.

    ``what`` is ``"data"`` (refused with a DataError) or ``"model"`` (a ModelPathError); the message names
    the path, where it really leads, the allowed folders and the variable that allows another one.
    """
    real = _real(path)
    if any(real.is_relative_to(root) for root in roots):
        return real
    variable, things = (DATA_ROOTS, "data files") if what == "data" else (MODEL_ROOTS, "base models")
    leads = f" (it leads to {real})" if str(real) != str(path) else ""
    allowed = ", ".join(str(r) for r in roots) or "none"
    problem = f"is outside the folders {things} may be read from{leads}. Allowed: {allowed}."
    hint = (f"Move or copy it into one of them, or add its folder to {variable} "
            f"(folders separated by '{os.pathsep}').")
    if what == "data":
        raise DataError(path, problem, hint=hint)
    raise ModelPathError(f"{path}: {problem} {hint}")
