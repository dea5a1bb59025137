"""The session's shared store (tests/shared_store.py): a copy is independent of it, and it is built once by one
process while the others wait, never taken half-built."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import point_at
from shared_store import DB, MODEL, SharedStore, ensure, find_text, fingerprint
from test_jobs import wait_for

pytestmark = [pytest.mark.xdist_group("shared_store")]  # one worker for every module on the shared store
TESTS = Path(__file__).resolve().parent


def local(uri: str) -> Path:
    """The folder a ``file://`` URI (or a plain path) names."""
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


@pytest.mark.slow
def test_a_copy_reads_and_writes_only_inside_itself(shared_store, tmp_path, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from core import examples as ex
    from core import runs as runs_mod
    from core.models import sources as models
    from core.registry.model_transition import ModelTransition

    copy = shared_store.copied_to(tmp_path / "home")
    # the database names the copy's home wherever it named the original's (artifact locations and URIs, the
    # registry's storage, logged models, params and tags such as output_dir), and the original's nowhere
    assert find_text(copy.home / DB, str(shared_store.home)) == {}
    assert find_text(copy.home / DB, str(copy.home)) == find_text(shared_store.home / DB, str(shared_store.home))

    point_at(monkeypatch, copy)
    client = runs_mod.client()
    for name in (copy.examples, copy.other_experiment, copy.small):
        experiment = client.get_experiment_by_name(name)
        assert local(experiment.artifact_location).is_relative_to(copy.home), name
        for run in client.search_runs([experiment.experiment_id]):
            assert local(run.info.artifact_uri).is_relative_to(copy.home), run.info.run_name
    assert local(client.get_model_version_download_uri(MODEL, "1")).is_relative_to(copy.home)
    assert models.local_folder(f"models:/{MODEL}@production").is_relative_to(copy.home)  # downloaded into it
    table = ex.read_predictions(client, copy.baseline)  # an artifact the copy holds, read from the copy
    assert table is not None and len(table) == 400

    # write: a metric on a copied run, a new run with an artifact, a new version promoted
    client.log_metric(copy.tunes[0], "written_in_the_copy", 1.0)
    mlflow.set_experiment(copy.examples)
    with mlflow.start_run(run_name="copy-only") as run:
        mlflow.log_text("only in the copy", "note.txt")
    assert (local(run.info.artifact_uri) / "note.txt").read_text() == "only in the copy"
    assert local(run.info.artifact_uri).is_relative_to(copy.home)
    transition = ModelTransition(MODEL)
    [registered] = transition.versions()
    other = next(r for r in copy.small_tunes if r != registered.run_id)
    version = transition.register_run(client.get_run(other))
    transition.promote(version.version, "Production", reason="copy only", user="tester")
    assert str(transition.current("Production").version) == "2"

    # the original saw none of it
    assert fingerprint(shared_store.home) == shared_store.fingerprint
    original = MlflowClient(shared_store.settings().tracking_uri, shared_store.settings().registry_uri)
    assert "written_in_the_copy" not in original.get_run(shared_store.tunes[0]).data.metrics
    with pytest.raises(MlflowException):
        original.get_run(run.info.run_id)
    assert [str(v.version) for v in original.search_model_versions(f"name = '{MODEL}'")] == ["1"]
    assert str(original.get_model_version_by_alias(MODEL, "production").version) == "1"


# -- the build protocol, with real processes and a real lock (a stand-in builder: the protocol, not MLflow) ----
BUILDER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_shared_store import stand_in
from shared_store import ensure
root, go = Path(sys.argv[1]), Path(sys.argv[2])

def make(home):
    home.mkdir(parents=True)
    (home / "half").write_text("")  # half a store, until the test says go
    (root / "building").write_text(str(os.getpid()))
    while not go.exists():  # the test says when to finish
        time.sleep(0.05)
    return stand_in(home)

ensure(root, make)
"""


def stand_in(home: Path) -> SharedStore:
    """A store description over a folder holding one file: what ``ensure`` needs of a build."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "whole").write_text("")
    return SharedStore(home=home, examples="e", baseline="b", tunes=("t1", "t2"), foreign="f", other_experiment="o",
                       other="x", small="s", small_baseline="sb", small_tunes=("s1", "s2", "s3"), small_foreign="sf",
                       scoring_run="r")


def start_builder(root: Path, go: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BUILDER.format(tests=str(TESTS)), str(root), str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: (root / "building").is_file() or proc.poll() is not None, 60, "the builder to start building")
    assert proc.poll() is None, proc.stdout.read().decode()
    return proc


def test_a_builder_killed_half_way_leaves_no_store_and_the_next_process_builds_afresh(tmp_path):
    root = tmp_path / "shared-store"
    proc = start_builder(root, tmp_path / "never")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert (root / "home" / "half").is_file() and not (root / "READY").exists()

    built = []

    def build(home: Path) -> SharedStore:
        built.append(home)
        return stand_in(home)

    store = ensure(root, build)
    assert built == [root / "home"] and store.home == root / "home"
    assert not (root / "home" / "half").exists() and (root / "home" / "whole").is_file()  # afresh, not on top
    assert ensure(root, lambda home: pytest.fail("a ready store was built again")) == store


def test_a_builder_that_fails_leaves_no_store(tmp_path):
    root = tmp_path / "shared-store"

    def fail(home: Path) -> SharedStore:
        home.mkdir(parents=True)
        (home / "half").write_text("")
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        ensure(root, fail)
    assert not (root / "READY").exists()
    store = ensure(root, stand_in)
    assert not (root / "home" / "half").exists() and store.small_tunes == ("s1", "s2", "s3")


def test_while_one_process_builds_the_others_wait_and_reuse_its_store(tmp_path):
    root, go = tmp_path / "shared-store", tmp_path / "go"
    proc = start_builder(root, go)
    with open(root / "lock", "a") as lock, pytest.raises(BlockingIOError):  # the build holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(ensure(root, lambda home: pytest.fail("built twice"))))
    waiter.start()
    go.write_text("")  # the builder finishes; the waiter takes the store it wrote, without building
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    waiter.join(60)
    assert not waiter.is_alive() and len(got) == 1
    assert got[0] == SharedStore.from_json((root / "READY").read_text()) and got[0].home == root / "home"
    assert (root / "home" / "whole").is_file()
