"""Team mode of the chaos soak (``bench/chaos_soak.py --team``): the store is Tuneboard's team server on PostgreSQL.

The server is started as ``python -m core.cli server --db postgresql://... --artifacts ... --auth-db
postgresql://...`` starts it (``core.team.start_server`` with ``auth_db``, as ``tests/app_server.py`` does): MLflow's
basic-auth app with the approval rule, runs and users each in a database of their own; the worker, its jobs and the
driver sign in as the server's first admin (a team's service account). Its two victims:

- the MLflow server: kill -9 of its processes (the ``mlflow server`` process and the workers it started, as a
  supervisor's cgroup goes), started again at once on the same port and databases, as a supervisor would; the
  seconds until it answers its health check again are recorded;
- a PostgreSQL backend serving it: kill -9 of one of the server's connections; PostgreSQL then ends every backend of
  its cluster and starts again (crash recovery). The seconds until it takes connections again, and until the server
  answers a call that reads the store, are recorded.

PostgreSQL's crash recovery restarts the whole cluster, so the soak runs a cluster of its own (``initdb`` in a
temporary folder, its own port, run as the ``postgres`` user) rather than the machine's shared one on 127.0.0.1:5432,
where it would cut off everybody else's connections.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from core.paths import DATA_ROOTS, MODEL_ROOTS
from core.team import start_server

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)


class Cluster:
    """A PostgreSQL cluster of the soak's own, on 127.0.0.1 at a free port, trusted locally, removed by ``close``."""

    def __init__(self) -> None:
        if PG_BIN is None:
            raise SystemExit("team mode needs PostgreSQL's programs (make services installs them)")
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data, self.port = self.folder / "data", free_port()
        as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w",
                    "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def uri(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True,
                             connect_timeout=5) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def backends(self, dbs: list[str]) -> list[int]:
        """The pids of the client backends connected to these databases."""
        return [pid for (pid,) in self.execute("SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) "
                                               "AND backend_type = 'client backend'", (dbs,))]

    def ready(self) -> bool:
        try:
            self.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        try:
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class TeamStore:
    """The team server on its own cluster, this process (and the worker it starts) signed in as its admin."""

    def __init__(self, work: Path) -> None:
        self.work, self.cluster = work, Cluster()
        self.dbs = ["mlflow", "mlflow_auth"]
        for db in self.dbs:
            self.cluster.execute(f"CREATE DATABASE {db}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        password = "admin-" + secrets.token_hex(8)
        os.environ.update(MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_TRACKING_USERNAME="admin",
                          MLFLOW_TRACKING_PASSWORD=password, MLFLOW_TRACKING_URI=self.url)
        # a team's workers read only inside the roots (core.paths.confines_jobs): the soak's own folders
        os.environ[DATA_ROOTS] = os.environ[MODEL_ROOTS] = str(work)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = start_server(self.cluster.uri(self.dbs[0]), self.work / "artifacts", port=self.port,
                                 log=self.work / "server.log", auth_db=self.cluster.uri(self.dbs[1]))

    def kill_server(self) -> tuple[int, float]:
        """kill -9 of the server (all its processes), started again at once; (its pid, seconds it was down)."""
        pid = self.proc.pid
        down = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
        self.proc.wait()
        self.start()
        return pid, round(time.monotonic() - down, 1)

    def kill_backend(self, rng, client) -> tuple[int, float, float] | None:
        """kill -9 of one PostgreSQL backend serving the server; (its pid, seconds until PostgreSQL had restarted
        its backends and took connections again, by its log, and until the server answered a call that reads the
        store), None when no backend is connected."""
        pids = self.cluster.backends(self.dbs)
        if not pids:
            return None
        pid = rng.choice(pids)
        log = self.cluster.folder / "postgres.log"
        offset = log.stat().st_size
        down = time.monotonic()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        said = ""
        while "ready to accept connections" not in said and time.monotonic() - down < 300:
            time.sleep(0.1)
            with open(log, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                said = f.read()
        up = time.monotonic()
        if "terminated by signal 9" not in said:
            raise RuntimeError(f"PostgreSQL's log does not say backend {pid} was killed: {said[-500:]!r}")
        client.search_experiments(max_results=1)  # MLflow's client retries while the server's pool reconnects
        return pid, round(up - down, 1), round(time.monotonic() - down, 1)

    def close(self) -> None:
        """Stop the server and remove the cluster, keeping PostgreSQL's log beside the soak's store."""
        with contextlib.suppress(OSError):
            shutil.copy(self.cluster.folder / "postgres.log", self.work / "postgres.log")
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
        finally:
            self.cluster.close()
