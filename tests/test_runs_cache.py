"""core.runs_cache: the incremental loader returns exactly what a full core.runs.load_frame returns.

Real SQLite stores (the ``store`` fixture); runs are written with MlflowClient as jobs and other tools write
them: created, logged into, ended, deleted, restored. No training. Every check compares the loader's frame with
a full read of the same store (same rows, columns, values, order), and counts the runs each refresh read.
"""

from __future__ import annotations

import math
import threading
import time

import pandas as pd
import pytest

from core import runs as runs_mod
from core.runs_cache import MARGIN_MS, RunsLoader

HOUR_MS = 3_600_000


@pytest.fixture
def client(store):
    return runs_mod.client()


def make_run(client, experiment_id: str, name: str, *, metrics: dict | None = None, tags: dict | None = None,
             params: dict | None = None, status: str | None = "FINISHED", start: int | None = None,
             end: int | None = None) -> str:
    """A run as a job or another tool leaves it; ``status`` None leaves it RUNNING."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    run = client.create_run(experiment_id, run_name=name, start_time=start)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in (metrics or {}).items()],
                     params=[Param(k, str(v)) for k, v in (params or {}).items()],
                     tags=[RunTag(k, v) for k, v in (tags or {}).items()])
    if status:
        client.set_terminated(run.info.run_id, status, end_time=end)
    return run.info.run_id


def history(client, experiment_id: str, n: int) -> list[str]:
    """``n`` finished fine-tunes that ran over the past days, one an hour (their times far apart)."""
    base = int(time.time() * 1000) - (n + 2) * HOUR_MS
    return [make_run(client, experiment_id, f"old{i}", metrics={"accuracy": i / n, "f1": 0.5},
                     params={"learning_rate": 1e-5 * (i % 3 + 1)},
                     tags={"run_type": "fine_tune", "model_uri": f"models:/m-old{i}"},
                     start=base + i * HOUR_MS, end=base + i * HOUR_MS + HOUR_MS // 2) for i in range(n)]


def same_as_full(loader: RunsLoader, client, ids: list[str]) -> int:
    """The loader's frame equals a full read's; returns the frame's version."""
    frame, version, _ = loader.load(client, ids)
    expected = runs_mod.load_frame(client, ids)
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    return version


def test_incremental_refresh_matches_full_read_through_a_runs_life(client):
    from mlflow.entities import LoggedModelStatus

    exp = client.create_experiment("life")
    history(client, exp, 6)
    # never a full read after the first: every step below is incremental; every deleted run read each time
    loader = RunsLoader(full_every=math.inf, deleted_every=0)
    v = same_as_full(loader, client, [exp])

    # added: a queued job, a running one, a foreign script's run that started and ended between two refreshes
    queued = make_run(client, exp, "queued", tags={"run_type": "fine_tune"}, status=None)
    client.update_run(queued, status="SCHEDULED")
    running = make_run(client, exp, "running", metrics={"loss": 0.9}, tags={"run_type": "fine_tune"}, status=None)
    foreign = make_run(client, exp, "script", metrics={"eval_accuracy": 0.8}, params={"lr": 3e-5})
    model = client.create_logged_model(exp, name="model", source_run_id=foreign)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before
    frame, _, ended = loader.load(client, [exp])
    assert frame.set_index("run_id").loc[foreign, "model_uri"] == f"models:/{model.model_id}"

    # changed while active: metrics, tags, params, status; the comparisons' inputs (ended runs) did not change
    client.log_metric(running, "loss", float("nan"))
    client.set_tag(running, "progress", "step 3 of 10")
    client.log_param(running, "seed", "42")
    client.update_run(queued, status="RUNNING")
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before and loader.load(client, [exp]).ended_version == ended
    # then ended, one with no end time at all
    client.log_metric(running, "accuracy", 0.93)
    client.set_tag(running, "model_uri", "models:/m-running")
    client.set_terminated(running, "FINISHED")
    client.update_run(queued, status="FAILED")  # ends with no end time: read again by id, not by end time
    assert client.get_run(queued).info.end_time is None
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before and loader.load(client, [exp]).ended_version == v

    # deleted and restored: a finished run of the history and the one that just finished
    old = client.search_runs([exp], "attributes.run_name = 'old2'")[0].info.run_id
    client.delete_run(old)
    client.delete_run(running)
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before
    client.restore_run(old)
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before
    # reading only the runs deleted since (between reads of all, DELETED_EVERY): a deletion shows at once
    loader.experiment((), exp).deleted_every = math.inf
    client.delete_run(old)
    same_as_full(loader, client, [exp])
    client.restore_run(old)
    assert old not in set(loader.load(client, [exp]).frame["run_id"])  # a restore waits for the read of all
    loader.experiment((), exp).deleted_every = 0
    v, before = same_as_full(loader, client, [exp]), v
    assert v > before

    # a run resumed after it ended (mlflow.start_run(run_id=...) sets it RUNNING again) and ended again
    client.update_run(old, status="RUNNING")
    client.log_metric(old, "accuracy", 0.99)
    client.set_terminated(old, "FINISHED")
    same_as_full(loader, client, [exp])

    # nothing changed: same version, same frame object
    frame, v, _ = loader.load(client, [exp])
    again, v2, _ = loader.load(client, [exp])
    assert (v2, again is frame) == (v, True)
    assert loader.experiment((), exp).full_reads == 1


def test_a_job_whose_submit_was_still_writing_it_is_read_again_once_queued(client):
    """core.jobs writes a job in steps: created, SCHEDULED, and only then tagged with its queue. A refresh
    between the steps must not leave the job without its queue tag (the Jobs page lists jobs by that tag)."""
    exp = client.create_experiment("submitting")
    loader = RunsLoader(full_every=math.inf)
    same_as_full(loader, client, [exp])
    job = make_run(client, exp, "job", tags={"job_submitting": "local-q"}, status=None)
    client.update_run(job, status="SCHEDULED")
    same_as_full(loader, client, [exp])  # the refresh reads it half written: no queue tag yet
    client.set_tag(job, "job_queue", "local-q")
    client.set_tag(job, "job_submitting", "done")
    same_as_full(loader, client, [exp])
    assert loader.load(client, [exp]).frame.set_index("run_id").loc[job, "tags.job_queue"] == "local-q"
    # once written, a queued run is no longer read again on each refresh
    before = loader.runs_read
    loader.invalidate()
    same_as_full(loader, client, [exp])
    assert loader.runs_read == before


def test_refresh_with_nothing_changed_reads_no_finished_run(client):
    exp = client.create_experiment("quiet")
    history(client, exp, 40)
    loader = RunsLoader(full_every=math.inf)
    same_as_full(loader, client, [exp])
    cache = loader.experiment((), exp)
    read = cache.runs_read
    assert read == 40  # the first load reads them all, once
    loader.load(client, [exp])
    assert cache.runs_read == read  # nothing changed: no run read again (the queries return none)

    make_run(client, exp, "just finished", metrics={"accuracy": 0.7}, tags={"run_type": "fine_tune"})
    read = cache.runs_read
    same_as_full(loader, client, [exp])
    assert cache.runs_read - read == 1  # the new run only
    read = cache.runs_read
    loader.load(client, [exp], max_age=60)  # refreshed under a minute ago: MLflow not asked
    assert cache.runs_read == read

    # a queue of 30 jobs waiting: read once when queued, again only when they start or end
    queued = []
    for i in range(30):
        queued.append(make_run(client, exp, f"queued{i}", tags={"run_type": "fine_tune"}, status=None))
        client.update_run(queued[-1], status="SCHEDULED")
    same_as_full(loader, client, [exp])
    read = cache.runs_read
    same_as_full(loader, client, [exp])
    assert cache.runs_read == read
    client.update_run(queued[0], status="RUNNING")
    client.set_terminated(queued[1], "KILLED")
    read = cache.runs_read
    same_as_full(loader, client, [exp])
    assert cache.runs_read - read == 2


def test_change_after_end_is_read_on_invalidate_or_full_read(client):
    """Decided and documented in core/runs_cache.py: MLflow keeps no update time, so a finished run changed
    without being resumed shows when the changer says so (invalidate) or at the next full read."""
    exp = client.create_experiment("late")
    ids = history(client, exp, 5)
    loader = RunsLoader(full_every=math.inf)
    same_as_full(loader, client, [exp])
    client.set_tag(ids[0], "job_retried_by", "abc")  # what a retry does to the old job
    assert "tags.job_retried_by" not in loader.load(client, [exp]).frame.columns  # not seen by an incremental refresh
    loader.invalidate([ids[0]])
    same_as_full(loader, client, [exp])

    client.set_tag(ids[1], "note", "edited in MLflow's UI")
    periodic = RunsLoader(full_every=0)  # every refresh a full read
    same_as_full(periodic, client, [exp])
    client.set_tag(ids[2], "note", "again")
    same_as_full(periodic, client, [exp])
    loader.invalidate(full=True)
    same_as_full(loader, client, [exp])


def test_several_experiments_and_users_and_margin(client):
    a, b = client.create_experiment("a"), client.create_experiment("b")
    history(client, a, 3)
    history(client, b, 3)
    loader = RunsLoader(full_every=math.inf)
    same_as_full(loader, client, [a, b])
    # a run whose end time is behind the newest end seen (another writer's clock), within the margin
    newest = max(r.info.end_time for r in client.search_runs([b]))
    make_run(client, b, "late clock", metrics={"accuracy": 0.1}, start=newest - MARGIN_MS // 2,
             end=newest - MARGIN_MS // 4)
    same_as_full(loader, client, [b, a])
    client.rename_experiment(a, "a renamed")
    same_as_full(loader, client, [a, b])
    same_as_full(loader, client, [a])
    # each user key holds its own copy: one identity's view is never served to another
    mine = loader.load(client, [a], key=("uri", "ann")).frame
    theirs = loader.load(client, [a], key=("uri", "bob")).frame
    assert mine is not theirs and loader.experiment(("uri", "ann"), a) is not loader.experiment(("uri", "bob"), a)


def test_sessions_in_threads_share_one_refresh(client):
    exp = client.create_experiment("threads")
    history(client, exp, 20)
    loader = RunsLoader(full_every=math.inf)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer():
        for i in range(10):
            make_run(client, exp, f"new{i}", metrics={"accuracy": i / 10})
        stop.set()

    def session():
        try:
            while not stop.is_set():
                frame = loader.load(client, [exp], max_age=0.05).frame
                assert frame["run_id"].is_unique
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(6)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    same_as_full(loader, client, [exp])
