"""Team mode: one MLflow tracking server on PostgreSQL that everybody's dashboard, CLI and workers use.

    python -m core.cli server --db postgresql://USER@HOST:5432/DB --artifacts /shared/mlflow-artifacts
    export MLFLOW_TRACKING_URI=http://HOST:5000     # on every machine; nothing else changes

Artifacts (models, logs, confusion matrices) go through the server
(``--serve-artifacts`` with ``--artifacts-destination``), so clients need no
access to the artifact store themselves.

With sign-in (Tuneboard's app, ``core.registry.approval_server``: MLflow's basic-auth app, users and permissions in
their own PostgreSQL database, and with ``TUNEBOARD_APPROVAL=required`` in the server's environment, production moved
only by the server carrying out an approved request; ``TUNEBOARD_APPROVAL=marked``: the same for the models tagged
``tuneboard.approval=required``, a mark nobody removes once set):

    export MLFLOW_AUTH_ADMIN_PASSWORD=...            # the first admin, created on first start
    python -m core.cli server --db postgresql://.../mlflow --auth-db postgresql://.../mlflow_auth --artifacts ...

Everyone then signs in on the dashboard; the CLI and the workers use
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of an account that
may edit the team's experiments (a service account with admin rights is simplest).

Allowed folders are on by default in team mode: anyone who may write runs to
the server can queue a job, and a worker reads that job's files as itself, so
every job run against a tracking server reads its data files and base models
only inside ``TUNEBOARD_DATA_ROOTS`` / ``TUNEBOARD_MODEL_ROOTS`` (each
worker's own; defaults: its data folder and home / its home and Hugging Face
cache), whoever submitted it (``core.paths.confines_jobs``). The server
itself reads no data files, so the roots are set on the worker machines,
where the files are; the server command says so when it starts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core import paths
from core.errors import TuneboardError
from core.settings import approval_rule


def _check_pg(uri: str, flag: str) -> None:
    """A team's database: PostgreSQL, or SQLite (``sqlite:///path``) for a trial on one machine."""
    if uri.startswith(("postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://")):
        return
    if uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().parent
        if not folder.is_dir():
            raise TuneboardError(f"{flag} {uri}: the folder {folder} does not exist; create it or give another path.")
        return
    raise TuneboardError(f"{flag} must be a PostgreSQL URI such as postgresql://user@host:5432/mlflow (or, for a "
                         f"trial on one machine, sqlite:///path/to/file.db), got {uri!r}.")


def server_command(db_uri: str, artifacts: str, *, host: str = "127.0.0.1", port: int = 5000,
                   workers: int = 2, app_name: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for a server on PostgreSQL (or SQLite, a trial) that serves artifacts."""
    _check_pg(db_uri, "--db")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db_uri,
               "--artifacts-destination", artifacts, "--serve-artifacts", "--host", host, "--port", str(port),
               "--workers", str(workers)]
    if app_name:
        command += ["--app-name", app_name]
    return command


def setup_text(host: str, port: int) -> str:
    """What the server command prints: how every machine joins, and where the team's workers read files from."""
    url = f"http://{host}:{port}"
    return (f"Team server at {url}; on every machine (dashboard, CLI, workers): export MLFLOW_TRACKING_URI={url}\n"
            f"Workers using this server read data files and base models only inside {paths.DATA_ROOTS} and "
            f"{paths.MODEL_ROOTS} (defaults: each worker's data folder and home, and its home and Hugging Face "
            f"cache). On each worker machine, set them to the folders holding the team's data and models, "
            f"separated by '{os.pathsep}'.")


APP_NAME = "tuneboard"  # core.registry.approval_server: MLflow's basic-auth app that keeps approvals


def server_environment() -> dict[str, str]:
    """Defaults for our server: MLflow 3's own job runner (about 8 extra processes) serves nothing of ours,
    and with it a restart took ~18 s instead of ~6 s."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def app_path(environ: dict[str, str] | None = None) -> str:
    """``PYTHONPATH`` with the repository root and ``core/entry_points`` first: MLflow finds Tuneboard's app by its
    ``mlflow.app`` entry point (``core/entry_points/tuneboard.egg-info``; the repository's top level stays as the
    design card has it) and the server's workers import ``core`` from the root, so the app runs without installing
    the project."""
    root = Path(__file__).resolve().parents[1]
    current = (environ if environ is not None else os.environ).get("PYTHONPATH", "")
    return os.pathsep.join([str(root), str(root / "core" / "entry_points"), *([current] if current else [])])


def auth_environment(auth_db: str, config_dir: Path, *, admin: str = "admin",
                     default_permission: str = "READ") -> dict[str, str]:
    """Environment for ``mlflow server --app-name basic-auth``: its config file, admin and CSRF key.

    The first admin's password comes from ``MLFLOW_AUTH_ADMIN_PASSWORD`` (never from a file of ours).
    Several servers behind one address must share ``MLFLOW_FLASK_SERVER_SECRET_KEY``; a single one gets a
    random key when it is unset. ``TUNEBOARD_APPROVAL`` (the rule the app keeps) is checked here.
    """
    _check_pg(auth_db, "--auth-db")
    if default_permission not in ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"):
        raise TuneboardError(f"default permission {default_permission!r} is not one of READ, USE, EDIT, MANAGE, "
                             "NO_PERMISSIONS.")
    approval_rule()  # a TUNEBOARD_APPROVAL the app cannot read is refused now, not at the first promotion
    if not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise TuneboardError("set MLFLOW_AUTH_ADMIN_PASSWORD to the password of the server's first admin "
                             f"({admin!r}) before starting a server with sign-in.")
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "basic_auth.ini"
    config.write_text("[mlflow]\n"
                      f"default_permission = {default_permission}\n"
                      f"database_uri = {auth_db}\n"
                      f"admin_username = {admin}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      # each request otherwise re-hashes the password (PBKDF2, ~0.5 s of CPU here): a page
                      # making 20 calls took 10 s. A changed password or a deleted user may stay valid on
                      # another server worker for up to this long.
                      "auth_cache_ttl_seconds = 60\n",
                      encoding="utf-8")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
            or secrets.token_hex(32)}


def start_server(db_uri: str, artifacts: str | Path, *, host: str = "127.0.0.1", port: int = 5000,
                 log: Path | None = None, wait_seconds: float = 120.0, auth_db: str | None = None,
                 **options) -> subprocess.Popen:
    """Start the server in the background and wait until it answers its health check.

    With ``auth_db`` the server runs Tuneboard's app (MLflow's basic-auth app and the approval rule), its users
    kept in that database (PostgreSQL, or SQLite for a trial).
    """
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    env = {**server_environment(), **os.environ}
    if auth_db:
        env.update(auth_environment(auth_db, Path(artifacts).parent / f"auth-{port}"))
        env["PYTHONPATH"] = app_path(env)
        options["app_name"] = APP_NAME
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the server process
    proc = subprocess.Popen(server_command(db_uri, str(artifacts), host=host, port=port, **options),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://{host}:{port}/health"
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TuneboardError(f"the MLflow server stopped at start (exit {proc.returncode})"
                                 + (f"; see {log}" if log else ""))
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TuneboardError(f"the MLflow server did not answer at {url} within {wait_seconds:.0f} s")
