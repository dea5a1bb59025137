"""Shared fixtures: a temporary MLflow store per test, demo models and a store of finished runs built once per
session.

Everything is real: SQLite MLflow stores in temporary folders, models built
with ``save_pretrained``, training through the HF Trainer. Nothing reaches a
model hub.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from shared_store import SharedStore

    from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# One intra-op thread in every torch process the tests start (this one, training subprocesses, the worker's jobs,
# which keep an OMP_NUM_THREADS they are given): two xdist workers on two cores never oversubscribe them.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_threads] = "1"

DATA = ROOT / "data"


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**overrides: str) -> dict:
    """The environment for a subprocess on its own store: mlflow.set_tracking_uri / set_registry_uri
    write MLFLOW_* variables into os.environ, so an earlier test's store would leak into the child."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    return {**env, "HF_HUB_OFFLINE": "1", **overrides}


def copy_data(folder: Path) -> Path:
    """A private copy of the demo data files (tests may break or add files in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("full_dataset.csv", "train_sample.csv", "test.csv"):
        shutil.copy(DATA / name, folder / name)
    return folder


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains real models, or starts a browser, a server or a worker")


# The slowest modules first (seconds of test time, `make test` on the 2-core machine, Dec 2026), so the two
# xdist workers do not end on one long module while the other waits; the rest keep their order.
HEAVY_FIRST = {"test_cli": 110, "test_seed_workflow": 70, "test_browser": 70, "test_faults": 200, "test_jobs": 160,
               "test_trust_boundary": 55, "test_team_mode": 40, "test_scoring": 40, "test_foreign_runs": 30,
               "test_ray_backend": 30, "test_auth": 25, "test_speed": 25, "test_examples": 25}


def pytest_collection_modifyitems(config, items):
    order = sorted(HEAVY_FIRST, key=lambda m: -HEAVY_FIRST[m])
    rank = {m: i for i, m in enumerate(order)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: a module keeps its order


@pytest.fixture
def allowed_roots(tmp_path_factory, monkeypatch):
    """Roots turned on, allowing pytest's temporary folders (and the repo's data/), where the tests' files live.

    For tests where reads are confined though nothing names the roots: a team's workers (a tracking server
    confines every job, core.paths). Set in os.environ, so workers the test starts (child_env) get them too.
    Everywhere else the tests run as the API and CLI do, with no roots: the user's process reads its files.
    """
    from core.paths import DATA_ROOTS, MODEL_ROOTS

    base = str(tmp_path_factory.getbasetemp())
    monkeypatch.setenv(DATA_ROOTS, os.pathsep.join([base, str(DATA)]))
    monkeypatch.setenv(MODEL_ROOTS, base)


def log_one_dataset_at_once(tracking_uri: str, rounds: int = 6, runs: int = 4) -> list[str]:
    """Runs of one experiment log the same dataset at the same moment (threads held at a barrier), as a grid's
    jobs starting together do, through ``core.tracking.log_input``; returns what failed. Each run must end up
    linked to the one dataset."""
    import threading

    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from core import tracking

    client = MlflowClient(tracking_uri)
    frame = pd.DataFrame({"text": ["a call", "another call"], "label": ["loan", "card"]})
    failed: list[str] = []
    for n in range(rounds):
        experiment = client.create_experiment(f"datasets_at_once_{n}")
        run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]
        barrier = threading.Barrier(runs)

        def log(run_id: str, barrier: threading.Barrier) -> None:
            dataset = mlflow.data.from_pandas(frame, source="train_sample.csv", name="train_sample",
                                              targets="label", digest="0123456789abcdef")
            try:
                with mlflow.start_run(run_id=run_id):  # the active run is the thread's own
                    barrier.wait(timeout=60)
                    tracking.log_input(dataset, "training")
            except Exception as exc:  # noqa: BLE001 - what failed is the result
                barrier.abort()  # the others go on rather than wait for this one
                failed.append(f"{type(exc).__name__}: {str(exc)[:300]}")

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment_id=experiment)  # an earlier test's active experiment refuses these runs
        threads = [threading.Thread(target=log, args=(r, barrier)) for r in run_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not failed:
            linked = [[i.dataset.name for i in client.get_run(r).inputs.dataset_inputs] for r in run_ids]
            assert linked == [["train_sample"]] * runs, linked
    return failed


def use_store(mp: pytest.MonkeyPatch, home: Path):
    """Point the library at a fresh embedded store under ``home``."""
    from core.settings import Settings

    mp.setenv("TUNEBOARD_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mp.setenv("TUNEBOARD_USER", "tester")
    return Settings.from_env()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for one test; yields its Settings."""
    import mlflow

    settings = use_store(monkeypatch, tmp_path / "home")
    yield settings
    while mlflow.active_run():
        mlflow.end_run()


def point_at(mp: pytest.MonkeyPatch, store: SharedStore) -> Settings:
    """Point the library (and the workers it starts) at a shared store, or a copy of it, and its data folder."""
    settings = use_store(mp, store.home)
    mp.setenv("TUNEBOARD_DATA_DIR", str(store.data_dir))
    return settings


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStore]:
    """The session's store of finished runs (tests/shared_store.py), built once for every xdist worker.

    It lives in the folder all workers of this session share; the first worker builds it under a file lock, the
    others wait on the lock and reuse it. Read it only (``point_at``); a test that writes uses ``private_store``.
    At the end, the store must be as it was built: a test that wrote to it fails here.
    """
    from shared_store import ensure, fingerprint

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-store"
    store = ensure(root)
    yield store
    assert fingerprint(store.home) == store.fingerprint, \
        f"a test wrote to the shared store {store.home}: tests that write must use private_store"


@pytest.fixture(scope="module")
def private_store(shared_store: SharedStore, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[SharedStore]:
    """The module's own copy of the shared store (ids unchanged, paths inside the copy), for tests that write."""
    from core.worker import stop_worker

    name = request.module.__name__.rpartition(".")[2]
    store = shared_store.copied_to(tmp_path_factory.mktemp(f"{name}-store") / "home")
    yield store
    stop_worker(store.settings())  # a worker a test started on the copy


@pytest.fixture(scope="session")
def short_calls(tmp_path_factory) -> Path:
    """A folder with ``calls_train.csv`` (400) and ``calls_test.csv`` (100): short labelled calls, as the demo's
    data files were before they became as long as real calls; for tests of the pipeline that need many calls
    and must stay fast (long calls have tests of their own, with few calls)."""
    import csv

    from core.demo import make_calls

    folder = tmp_path_factory.mktemp("short-calls")
    for name, rows in {"calls_train.csv": make_calls(400, seed=3, prefix="T"),
                       "calls_test.csv": make_calls(100, seed=4, prefix="V")}.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
            writer.writeheader()
            writer.writerows(rows)
    return folder


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, Path]:
    """Both demo base models, built once for the whole session."""
    from core.demo import DEMO_MODELS, build_model

    root = tmp_path_factory.mktemp("demo-models")
    return {name: build_model(root / name, kind) for name, kind in zip(DEMO_MODELS, ("bert", "deberta-v2"),
                                                                        strict=True)}


@pytest.fixture(scope="session")
def bert_model(demo_models) -> str:
    return str(demo_models["demo-bert-tiny"])


# -- team mode: a real `mlflow server` on the machine's PostgreSQL ---------------------------------------------------
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


class TeamServer:
    """A real ``mlflow server`` on a PostgreSQL database of its own on 127.0.0.1:5432, serving artifacts.

    The database is created here and dropped by ``close``. ``kill`` (kill -9 of the server and its workers) and
    ``start`` again reuse the same port and database. Unpacks as ``url, folder``.
    """

    def __init__(self, folder: Path, workers: int = 2):
        import uuid

        self.folder, self.workers = folder, workers
        self.db = f"tuneboard_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        pg_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {self.db}")

    def __iter__(self):
        return iter((self.url, self.folder))

    def start(self) -> None:
        from core.team import start_server

        self.proc = start_server(f"postgresql://postgres@127.0.0.1:5432/{self.db}", self.folder / "served-artifacts",
                                 port=self.port, log=self.folder / "server.log", workers=self.workers)

    def kill(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        pg_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One MLflow server on its own PostgreSQL database per test module (a TeamServer)."""
    team_server = TeamServer(tmp_path_factory.mktemp("team"))
    try:
        team_server.start()
        yield team_server
    finally:
        team_server.close()
