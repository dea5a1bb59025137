"""One store of finished runs for the whole test session, trained once by the real pipeline (issue 17).

Several modules only need finished runs to read: a baseline and fine-tunes with their predictions tables, a
registered model in production, a scoring run. Training those per module cost minutes each; this module builds
them once into a ``TUNEBOARD_HOME`` (``build``), shares it between pytest-xdist workers (``ensure``: a file lock,
a READY marker written last) and gives a test that writes a private copy of it (``copy_store``).

Everything is real: SQLite MLflow store, the demo models, ExperimentManager and the HF Trainer, the registry,
``core.scoring.job.score``. Nothing here is a test; ``tests/conftest.py`` holds the fixtures.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

READY = "READY"  # written last, holding the store's description: its presence means the store is whole
HOME = "home"
LOCK = "lock"
MODEL = "Score_Topic"  # registered from the best small fine-tune, version 1 in production
DB = "mlflow.db"


@dataclass(frozen=True)
class SharedStore:
    """Where the store lives and what it holds (run ids survive a copy: the database is copied whole)."""

    home: Path
    examples: str  # experiment: a baseline and two fine-tunes on the full demo data that disagree somewhere
    baseline: str
    tunes: tuple[str, str]
    foreign: str  # in ``examples``: a run logged by plain MLflow (metrics only, no table, no model)
    other_experiment: str  # one fine-tune evaluated on another validation file (a third of test.csv)
    other: str
    small: str  # experiment: a baseline and three short fine-tunes of train_sample (plumbing, not learning)
    small_baseline: str
    small_tunes: tuple[str, str, str]
    small_foreign: str  # in ``small``: a run logged by plain MLflow (a param and metrics)
    scoring_run: str  # a finished ``score`` run of models:/Score_Topic@production
    model: str = MODEL
    fingerprint: str = ""  # of the database and the file listing, taken when the store was built

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def bert(self) -> str:
        return str(self.home / "demo-models" / "demo-bert-tiny")

    def settings(self):
        """The store's Settings without touching the environment (for stop_worker and the like)."""
        from core.settings import Settings, default_tracking_uri

        uri = default_tracking_uri(self.home)
        return Settings(home=self.home, tracking_uri=uri, registry_uri=uri, data_dir=self.data_dir, user="tester")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "home": str(self.home)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SharedStore:
        raw = json.loads(text)
        return cls(**{**raw, "home": Path(raw["home"]), "tunes": tuple(raw["tunes"]),
                      "small_tunes": tuple(raw["small_tunes"])})

    def copied_to(self, home: Path) -> SharedStore:
        """A private copy at ``home`` (see ``copy_store``), described like this one."""
        return replace(self, home=copy_store(self.home, home))


# -- building ---------------------------------------------------------------------------------------------------
def build(home: Path) -> SharedStore:
    """Train, register and score into ``home`` (a fresh folder) with the real pipeline; what it holds:

    - ``Examples``: the demo BERT's baseline and two fine-tunes on the full demo data, validated on test.csv,
      with a run logged by plain MLflow (metrics only);
    - ``OtherFile``: a fine-tune validated on another file (a third of test.csv's rows);
    - ``Small``: a baseline and three ten-step fine-tunes on train_sample.csv, a plain-MLflow run (a param too);
      the best fine-tune registered as ``Score_Topic`` version 1, in production (an NLI model);
    - ``Scoring - Score_Topic``: one finished scoring run of eight pairs.

    Every fine-tune logs its model and predictions table; the data files live in ``home/data``.
    """
    import mlflow
    import pandas as pd
    import pytest
    from conftest import copy_data, use_store

    from core.demo import ensure_demo
    from core.experiment_manager import ExperimentManager
    from core.registry.model_transition import ModelTransition
    from core.scoring.job import ScoreSpec, score

    home = home.resolve()
    data = copy_data(home / "data")  # inside home: a copy of the store gets its own data folder too
    pd.read_csv(data / "test.csv").iloc[::3].to_csv(data / "test_other.csv", index=False)  # another file
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, home)
        mp.setenv("TUNEBOARD_DATA_DIR", str(data))
        bert = str(ensure_demo()["demo-bert-tiny"])  # both demo models in home: the Compose page offers them

        def grid(base_name: str, dataset: str, sets: list[dict], validation: str, baseline: bool):
            manager = ExperimentManager(
                base_name=base_name, data_src="Demo", dataset_versions=[dataset], hyperparameters=sets,
                base_model_versions=[bert], output_dir=str(home / "out" / base_name),
                train_file=str(data / "{data_version}"), validation_file=str(data / validation),
                evalute_pretrained_model=baseline, user_id="tester")
            summary = manager.run_experiments(show_progress=False)
            assert not summary.failed, [r.error for r in summary.failed]
            return manager.experiment_name, [r.run_id for r in summary.results]

        def logged_elsewhere(experiment: str, params: dict[str, str]) -> str:
            mlflow.set_experiment(experiment)  # a run logged by plain MLflow, as other tools do
            with mlflow.start_run(run_name="logged-elsewhere") as run:
                if params:
                    mlflow.log_params(params)
                mlflow.log_metrics({"accuracy": 0.3, "f1": 0.2})
            return run.info.run_id

        try:
            # the browser test's two sets: they learn the demo task, differently (test_examples: they disagree)
            learning = [{"n_epochs": 3, "learning_rate": 5e-4, "train_batch_size": 8, "seed": 1},
                        {"n_epochs": 1, "learning_rate": 2e-3, "train_batch_size": 16, "seed": 2}]
            examples, (baseline, *tunes) = grid("Examples", "full_dataset.csv", learning, "test.csv", True)
            # plumbing only from here on (pages, registry, scoring): ten steps each
            other_experiment, (other,) = grid("OtherFile", "train_sample.csv",
                                              [{"n_epochs": 1, "max_steps": 10, "learning_rate": 1e-3, "seed": 3}],
                                              "test_other.csv", False)
            small, (small_baseline, *small_tunes) = grid(
                "Small", "train_sample.csv", [{"n_epochs": 1, "max_steps": 10, "learning_rate": rate}
                                              for rate in (1e-3, 5e-4, 2e-4)], "test.csv", True)
            foreign = logged_elsewhere(examples, {})
            small_foreign = logged_elsewhere(small, {"lr": "0.01"})
            ModelTransition(MODEL).transition_model("Production", small, "accuracy", reason="shared store",
                                                    user="tester")
            calls = home / "inputs" / "calls.csv"
            calls.parent.mkdir()
            pd.read_csv(data / "test.csv")[["premise", "hypothesis"]].head(8).to_csv(calls, index=False)
            scored = score(ScoreSpec(f"models:/{MODEL}@production", str(calls)))
            assert scored.status == "FINISHED", scored.error
        finally:
            while mlflow.active_run():
                mlflow.end_run()
    store = SharedStore(home=home, examples=examples, baseline=baseline, tunes=tuple(tunes), foreign=foreign,
                        other_experiment=other_experiment, other=other, small=small, small_baseline=small_baseline,
                        small_tunes=tuple(small_tunes), small_foreign=small_foreign, scoring_run=scored.run_id)
    return replace(store, fingerprint=fingerprint(home))


def ensure(root: Path, make: Callable[[Path], SharedStore] = build) -> SharedStore:
    """The store under ``root/home``, made by ``make`` once for every process that asks (xdist workers).

    The first process to take the lock builds while the others wait on it; READY is written last, so a builder
    that died half-way (its lock released by the kernel) leaves no READY and the next process builds afresh.
    """
    root.mkdir(parents=True, exist_ok=True)
    ready = root / READY
    with open(root / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process builds
        try:
            if not ready.is_file():
                home = root / HOME
                if home.exists():  # a half store from a builder that died: never taken as ready
                    shutil.rmtree(home)
                store = make(home)
                partial = root / f".{READY}.part"
                partial.write_text(store.to_json(), encoding="utf-8")
                partial.replace(ready)  # atomic: READY is whole or absent
            return SharedStore.from_json(ready.read_text(encoding="utf-8"))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- copying ----------------------------------------------------------------------------------------------------
def copy_store(src_home: Path, dst_home: Path) -> Path:
    """Copy the store at ``src_home`` to ``dst_home`` (which must not exist) and make the copy independent.

    The database holds absolute paths of the original home (artifact locations and URIs, model version sources,
    logged models, tags such as output_dir, the job queue's id): every occurrence in every text value of every
    table is rewritten to the new home, so the copy reads and writes only inside itself.
    """
    from core.models.sources import CACHE_FOLDER

    src, dst = Path(src_home).resolve(), Path(dst_home).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    # the database through SQLite's backup API (a consistent snapshot); a worker's lock and state are its own;
    # the model cache is keyed by the original's registry URI (core.models.sources): never a hit in the copy
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(f"{DB}*", "worker.lock", "worker.json", CACHE_FOLDER))
    source, target = sqlite3.connect(src / DB), sqlite3.connect(dst / DB)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    rewrite_paths(dst / DB, str(src), str(dst))
    return dst


def text_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) for every column of every table, read from sqlite_master: no list of MLflow's tables."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'")]
    return [(table, row[1]) for table in tables for row in conn.execute(f'PRAGMA table_info("{table}")')]


def rewrite_paths(db: Path, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in every text value of the database; returns the number of values changed.

    Types are checked per value (``typeof``), not per declared column type: SQLite stores text anywhere. The
    percent-encoded ``file://`` form is rewritten too, for homes whose path has characters a URI escapes.
    """
    pairs = {old: new, Path(old).as_uri(): Path(new).as_uri()}
    changed = 0
    conn = sqlite3.connect(db)
    try:
        with conn:
            for table, column in text_columns(conn):
                for before, after in pairs.items():
                    cursor = conn.execute(
                        f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                        f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (before, after, before))
                    changed += cursor.rowcount
    finally:
        conn.close()
    return changed


def find_text(db: Path, text: str) -> dict[str, int]:
    """``table.column`` -> how many text values contain ``text`` (only where some do)."""
    found = {}
    conn = sqlite3.connect(db)
    try:
        for table, column in text_columns(conn):
            (count,) = conn.execute(f'SELECT count(*) FROM "{table}" WHERE typeof("{column}") = \'text\' '
                                    f'AND instr("{column}", ?) > 0', (text,)).fetchone()
            if count:
                found[f"{table}.{column}"] = count
    finally:
        conn.close()
    return found


def fingerprint(home: Path) -> str:
    """A digest of the database's rows and of the file listing (name and size): equal means nothing wrote."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(f"file:{home / DB}?mode=ro", uri=True)
    try:
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        for table in tables:
            for row in sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"')):
                digest.update(f"{table}:{row}\n".encode())
    finally:
        conn.close()
    for folder, dirs, files in os.walk(home):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.name.startswith(DB):
                continue  # the database is digested by its rows above (a reader may leave a journal behind)
            digest.update(f"{path.relative_to(home)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


if __name__ == "__main__":  # build one by hand to look at it: python tests/shared_store.py FOLDER
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import conftest  # noqa: F401 - the test environment (offline, one thread, repo on sys.path)

    print(ensure(Path(sys.argv[1]).resolve()).to_json())
