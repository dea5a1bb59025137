"""Tuneboard's team server with sign-in, as ``python -m core.cli server --db ... --auth-db ...`` runs it (issue 28).

The server app (``core.registry.approval_server``: MLflow's basic-auth app and the approval rule), its tracking store
and its users each in a PostgreSQL database of their own on 127.0.0.1:5432, created here and dropped afterwards.
The first admin is ``ADMIN``; each test module adds its own users and models. ``tests/conftest.py`` holds the
fixture (``app_server``: one server per module; a module sets the rule by overriding ``app_server_approval``).
Nothing here is a test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from core.auth import Credentials

PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ADMIN = Credentials("admin", "admin-" + secrets.token_hex(8))  # the server's first admin, in every module
# The team the modules make on their servers (each module gives them its own permissions): alice and bob who
# request and approve, carol who only edits
ALICE = Credentials("alice", "alice-" + secrets.token_hex(8))
BOB = Credentials("bob", "bob-" + secrets.token_hex(8))
CAROL = Credentials("carol", "carol-" + secrets.token_hex(8))
EVERYONE = (ADMIN, ALICE, BOB, CAROL)


def pg(sql: str) -> None:
    """Run one statement as PostgreSQL's admin (creating and dropping the servers' databases)."""
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def running(folder: Path, approval: str | None = None) -> Iterator[str]:
    """The server on a free port, ``TUNEBOARD_APPROVAL=approval`` in its environment (unset: None); its address.

    Its log is ``folder/server.log``. On leaving, the server is stopped and both databases are dropped.
    """
    from conftest import free_port

    from core.team import start_server

    tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    dbs = [f"tuneboard_app_{name}_{tag}" for name in ("track", "users")]
    for db in dbs:
        pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        pg(f"CREATE DATABASE {db}")
    proc = None
    try:
        port = free_port()
        with _environment(approval):
            proc = start_server(f"postgresql://postgres@127.0.0.1:5432/{dbs[0]}", folder / "artifacts", port=port,
                                log=folder / "server.log", auth_db=f"postgresql://postgres@127.0.0.1:5432/{dbs[1]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        for db in dbs:
            pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@contextlib.contextmanager
def _environment(approval: str | None) -> Iterator[None]:
    """The admin's password and the approval rule, for the server process only (this one's are put back)."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN.password)
        if approval is None:
            mp.delenv("TUNEBOARD_APPROVAL", raising=False)
        else:
            mp.setenv("TUNEBOARD_APPROVAL", approval)
        yield
