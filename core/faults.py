"""Test seams: hold a process at a named point so a test can kill it there, and nothing else.

No module of the library calls this one. The queue, the worker, a job's process and the registry take a
``checkpoint`` callable (default: none), called at each point a crash must be survivable; only the entry points
(``core.cli``, ``python -m core.worker``, ``python -m core.train_job``) pass :func:`checkpoint`, and only when a
test armed it with two variables:

``TUNEBOARD_TEST_HOLD_AT=<stage>`` (or ``<stage>#<n>``: the n-th time this process gets there) and
``TUNEBOARD_TEST_HOLD_FILE=<path>``: a process reaching that stage while <path> exists runs ``before`` (e.g.
reports its progress), writes "<pid> <stage>" into the file and waits until the file is deleted.

Stages: "submitting" (a run created, not yet a job), "claimed" (the worker took a job, its process not yet
started), a job's "reading data", "loading model", "training" (after the first step), "evaluating",
"saving model", "logging model", "scoring" (after the first batch), and a promotion's "registered",
"checked" (an approval, just before the alias moves), "alias set", "settled". Used by tests/test_faults.py
and tests/test_registry_faults.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

STAGE_VARIABLE = "TUNEBOARD_TEST_HOLD_AT"
FILE_VARIABLE = "TUNEBOARD_TEST_HOLD_FILE"

Checkpoint = Callable[..., None]  # (stage, before=None)
_hits: dict[str, int] = {}


def checkpoint() -> Checkpoint | None:
    """:func:`hold` when a test armed it in this process's environment, else None (nothing to call)."""
    return hold if os.environ.get(STAGE_VARIABLE) else None


def hold(stage: str, before: Callable[[], object] | None = None) -> None:
    """Hold here if this is the armed stage (and its n-th hit) and the hold file exists; see the module doc."""
    wanted = os.environ.get(STAGE_VARIABLE)
    if not wanted or wanted.split("#")[0] != stage:
        return
    _hits[stage] = _hits.get(stage, 0) + 1
    path = os.environ.get(FILE_VARIABLE, "")
    if _hits[stage] != int(wanted.partition("#")[2] or 1) or not os.path.exists(path):
        return
    if before is not None:
        before()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)  # never creates it: no file, no hold
    except OSError:
        return
    os.write(fd, f"{os.getpid()} {stage}\n".encode())
    os.close(fd)
    while os.path.exists(path):
        time.sleep(0.05)
