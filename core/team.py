"""Team mode: one MLflow tracking server on PostgreSQL that everybody's dashboard, CLI and workers use.

    python -m core.cli server --db postgresql://USER@HOST:5432/DB --artifacts /shared/mlflow-artifacts
    export MLFLOW_TRACKING_URI=http://HOST:5000     # on every machine; nothing else changes

Artifacts (models, logs, confusion matrices) go through the server
(``--serve-artifacts`` with ``--artifacts-destination``), so clients need no
access to the artifact store themselves.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.errors import TuneboardError


def server_command(db_uri: str, artifacts: str, *, host: str = "127.0.0.1", port: int = 5000,
                   workers: int = 2, app_name: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for a PostgreSQL-backed server that serves artifacts."""
    if not db_uri.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise TuneboardError(f"--db must be a PostgreSQL URI such as postgresql://user@host:5432/mlflow, got "
                             f"{db_uri!r}.")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db_uri,
               "--artifacts-destination", artifacts, "--serve-artifacts", "--host", host, "--port", str(port),
               "--workers", str(workers)]
    if app_name:
        command += ["--app-name", app_name]
    return command


def start_server(db_uri: str, artifacts: str | Path, *, host: str = "127.0.0.1", port: int = 5000,
                 log: Path | None = None, wait_seconds: float = 120.0, **options) -> subprocess.Popen:
    """Start the server in the background and wait until it answers its health check."""
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the server process
    proc = subprocess.Popen(server_command(db_uri, str(artifacts), host=host, port=port, **options),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
