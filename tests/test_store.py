"""The embedded store is created once, whoever opens a new home first (core.settings.create_store_once)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ROOT, child_env, log_one_dataset_at_once

pytestmark = pytest.mark.slow  # six Python processes importing MLflow

OPEN_AT_ONCE = """
import os, sys, time
from pathlib import Path
go = Path(sys.argv[1])
from core import runs  # MLflow imported before the start line, so the processes open the store together
Path(sys.argv[2]).touch()
while not go.exists():
    time.sleep(0.005)
runs.client().search_experiments(max_results=1)
"""


def test_processes_opening_a_new_home_together_all_get_the_store(tmp_path):
    home, go = tmp_path / "home", tmp_path / "go"
    env = child_env(TUNEBOARD_HOME=str(home))
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(go), str(tmp_path / f"ready-{i}")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling six processes' imports: nothing to block on
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err[-600:] for _, err in results if err]
    assert (home / ".store-ready").is_file() and (home / "mlflow.db").is_file()


def test_a_worker_that_cannot_start_is_reported_at_once_with_its_log(tmp_path, monkeypatch):
    """ensure_worker waits while a new worker starts, and says so as soon as it exited instead."""
    from core.jobs.local import ensure_worker
    from core.settings import Settings

    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/no-such-folder/mlflow.db")  # cannot be created
    start = time.monotonic()
    said = r"the worker exited \(code 1\) while starting: FileNotFoundError: .*/proc/no-such-folder"
    with pytest.raises(RuntimeError, match=said):
        ensure_worker(Settings.from_env())
    assert time.monotonic() - start < 120  # not the whole wait


def test_the_experiment_pickers_leave_out_tuneboards_own_records(store):
    """A decision-record experiment is not offered as a source of runs (the Registry once opened on it)."""
    from core import runs
    from core.naming import BOOKKEEPING_TAG
    from core.settings import ensure_experiment

    client = runs.client()
    ensure_experiment("Grid")
    records = ensure_experiment("Promotions - Model")
    client.set_experiment_tag(records, BOOKKEEPING_TAG, "decision records")
    assert [e.name for e in runs.experiments(client)] == ["Grid"]


def test_runs_logging_one_dataset_at_once_all_link_to_it(store):
    # a grid's jobs starting together on one dataset version: MLflow's insert of the dataset collided and
    # failed the job ("UNIQUE constraint failed: datasets...") in 11 of 32 such runs before core.tracking retried
    assert log_one_dataset_at_once(store.tracking_uri) == []


def test_one_experiment_created_from_four_places_at_once_is_one_experiment(store):
    import threading

    from core.settings import ensure_experiment

    got: list[str] = []
    for n in range(6):  # four submits of one new grid name at the same moment: MLflow looks, then inserts
        barrier = threading.Barrier(4)

        def create(barrier: threading.Barrier, name: str) -> None:
            barrier.wait()
            try:
                got.append(ensure_experiment(name, store))
            except Exception as exc:  # noqa: BLE001 - what failed is the result
                got.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=create, args=(barrier, f"At_once_{n}")) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got[-4:])) == 1 and got[-1].isdigit(), got[-4:]
