"""Faults: crashes lose nothing. Real workers, real training processes, real MLflow stores, real kill -9.

A job is stopped at a known stage with the test seam of ``core.faults`` (the entry points pass it in)
(``TUNEBOARD_TEST_HOLD_AT`` / ``TUNEBOARD_TEST_HOLD_FILE``): the process reaching the stage writes its pid
into the hold file and waits until the test deletes it. Then something is killed, and the test checks
that every submitted job reaches a terminal state with a reason, that no run stays RUNNING more than
30 s once a worker is back (measured), that each job ran once, and that no process is left behind.

Waits poll a condition with a timeout; no fixed sleeps. The time-to-recover figures are printed (-s).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, TeamServer, copy_data
from test_jobs import grid, wait_for

from core.jobs import PID, QUEUE, STARTED_AT, SUBMITTING, JobQueue, JobStatus
from core.worker import ensure_worker, stop_worker, worker_info

pytestmark = pytest.mark.slow

TINY = {"n_epochs": 1, "max_steps": 2}
RECOVER_LIMIT = 30.0  # seconds a run may stay RUNNING once a worker is back
TRAINER_STAGES = {"loading": "loading model", "training": "training", "logging": "logging model"}


def say(message: str) -> None:
    print(f"[faults] {message}", flush=True)


class Hold:
    """Arms the hold hook for processes started from now on; ``held`` waits for one and returns its pid."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch):
        self.path, self.mp = path, monkeypatch

    def arm(self, stage: str) -> None:
        self.path.write_text("")
        self.mp.setenv("TUNEBOARD_TEST_HOLD_AT", stage)
        self.mp.setenv("TUNEBOARD_TEST_HOLD_FILE", str(self.path))

    def held(self, timeout: float = 90.0) -> int:
        text = wait_for(lambda: self.path.exists() and self.path.read_text().strip(), timeout,
                        f"a process to hold at {os.environ.get('TUNEBOARD_TEST_HOLD_AT')}")
        return int(text.split()[0])

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def small_data(folder: Path) -> Path:
    """The demo data, with a validation file of 40 rows (both labels): evaluation is most of a tiny job."""
    import csv

    copy_data(folder)
    with open(folder / "test.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    keep = [r for label in sorted({r[2] for r in rows}) for r in [r for r in rows if r[2] == label][:20]]
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *keep])
    return folder


def ours(home: Path) -> list[psutil.Process]:
    """Our processes (``python -m core.*``: worker, training processes, spares, submitters) of this test's home,
    alive; not a server the test (re)started, which inherits the same environment."""
    found = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if not any(arg.startswith("core.") for arg in cmdline[1:3]):
            continue
        try:
            if proc.environ().get("TUNEBOARD_HOME") == str(home):
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_and_check_nothing_left(settings) -> None:
    """Stop the worker; then no process of this test may be left (spares and training processes included)."""
    stop_worker(settings)
    try:
        wait_for(lambda: not ours(settings.home), 15, "our processes to end")
    except AssertionError:
        raise AssertionError(f"left behind: {[p.cmdline() for p in ours(settings.home)]}") from None


def executions(home: Path, run_id: str) -> int:
    """How many times a training process started this job (each start prints ``job RUN_ID: NAME (kind)``)."""
    log = home / "jobs" / f"{run_id}.log"
    return len(re.findall(rf"job {run_id}: \S+ \(", log.read_text())) if log.exists() else 0


def trainer_pid(q: JobQueue, run_id: str) -> int:
    return int(q.client.get_run(run_id).data.tags[PID].split("@")[0])


def wait_terminal(q: JobQueue, run_ids, timeout: float = 120.0) -> float:
    """Wait until every run has ended; return the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: all(q.get(r).status.is_terminal() for r in run_ids), timeout, "the jobs to end")
    return time.monotonic() - started


def not_orphaned_for(q: JobQueue, run_id: str, pid: int | None) -> float:
    """Seconds until the run is no longer RUNNING on behalf of the dead process ``pid`` (None: no process)."""
    started = time.monotonic()

    def settled():
        run = q.client.get_run(run_id)
        if run.info.status != "RUNNING":
            return True
        tag = run.data.tags.get(PID)
        return tag is not None and (pid is None or int(tag.split("@")[0]) != pid)

    wait_for(settled, RECOVER_LIMIT + 10, "the orphaned run to be ended or queued again")
    return time.monotonic() - started


@pytest.fixture
def faults(store, tmp_path, monkeypatch, bert_model):
    small_data(tmp_path / "data")
    monkeypatch.setenv("TUNEBOARD_SUBMIT_GRACE_SECONDS", "3")  # for the workers these tests start
    hold = Hold(tmp_path / "hold", monkeypatch)
    yield JobQueue(store), hold, store, bert_model
    hold.release()
    stop_worker(store)
    for proc in ours(store.home):  # a failed test must not leave its processes to the next one
        proc.kill()


# -- A. kill -9 of the worker ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["queued", "loading", "training", "logging"])
def test_kill_9_of_the_worker_at_each_stage_loses_no_job(faults, tmp_path, monkeypatch, stage):
    """"queued": the worker has claimed the job (RUNNING) but not started its process; the others hold the job's
    training process at that stage. A second job waits in the queue throughout."""
    q, hold, settings, model = faults
    if stage != "queued":  # the killed worker's spare dies unused, and the restarted one runs a single job
        monkeypatch.setenv("TUNEBOARD_WARM_SPARES", "0")
    hold.arm("claimed" if stage == "queued" else TRAINER_STAGES[stage])
    victim, follower = q.submit(grid(model, tmp_path, TINY, {**TINY, "seed": 2}, name=f"Worker{stage}"))
    held = hold.held()
    worker_pid = worker_info(settings)["pid"]
    victim_pid = None
    if stage == "queued":
        assert held == worker_pid  # the worker took the job and has not started its process
    else:
        victim_pid = trainer_pid(q, victim.run_id)
        assert held == victim_pid and q.get(victim.run_id).progress.stage == TRAINER_STAGES[stage]

    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: gone(worker_pid) and (victim_pid is None or gone(victim_pid)), 15,
             "the worker and its training process to die")
    hold.release()
    assert q.get(follower.run_id).status == JobStatus.SCHEDULED  # still queued
    assert q.client.get_run(victim.run_id).info.status == "RUNNING"  # nobody has told MLflow yet

    ensure_worker(settings)
    settled = not_orphaned_for(q, victim.run_id, victim_pid)
    took = wait_terminal(q, [victim.run_id, follower.run_id])
    say(f"A {stage}: orphan settled {settled:.1f} s after the worker was back; all jobs ended after {took:.1f} s")
    assert settled < RECOVER_LIMIT

    done = q.get(victim.run_id)
    if stage == "queued":  # it had never started: queued again and run, once
        assert done.status == JobStatus.FINISHED, done.reason
    else:
        assert done.status == JobStatus.FAILED
        assert "the worker stopped while this job was running" in done.reason
    assert q.get(follower.run_id).status == JobStatus.FINISHED
    assert executions(settings.home, victim.run_id) == 1 and executions(settings.home, follower.run_id) == 1
    stop_and_check_nothing_left(settings)


# -- B. kill -9 of the training process --------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["loading", "training", "logging"])
def test_kill_9_of_the_training_process_fails_its_job_and_the_queue_goes_on(faults, tmp_path, stage):
    q, hold, settings, model = faults
    hold.arm(TRAINER_STAGES[stage])
    victim, follower = q.submit(grid(model, tmp_path, TINY, {**TINY, "seed": 2}, name=f"Trainer{stage}"))
    pid = hold.held()
    worker_pid = worker_info(settings)["pid"]
    assert pid == trainer_pid(q, victim.run_id)

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    hold.release()
    wait_for(lambda: q.get(victim.run_id).status.is_terminal(), RECOVER_LIMIT, "the killed job to end")
    ended = time.monotonic() - killed
    took = wait_terminal(q, [follower.run_id])
    done = q.get(victim.run_id)
    say(f"B {stage}: the killed job ended {ended:.1f} s after the kill; the next job ended {took:.1f} s later. "
        f"Reason: {done.reason}")
    assert done.status == JobStatus.FAILED and "killed by signal 9" in done.reason
    assert done.progress.stage == TRAINER_STAGES[stage]
    assert gone(pid)
    assert q.get(follower.run_id).status == JobStatus.FINISHED
    assert worker_info(settings)["pid"] == worker_pid  # the worker went on
    assert executions(settings.home, victim.run_id) == 1 and executions(settings.home, follower.run_id) == 1
    assert [j.run_id for j in q.jobs(statuses={JobStatus.SCHEDULED, JobStatus.RUNNING})] == []  # no retry
    stop_and_check_nothing_left(settings)


# -- C. kill -9 of the app while it submits a grid ---------------------------------------------------------------------
def test_kill_9_of_the_app_while_it_submits_leaves_no_run_alive(faults, tmp_path, monkeypatch):
    q, hold, settings, model = faults
    monkeypatch.setenv("TUNEBOARD_WARM_SPARES", "0")  # one job: a spare would never be used
    spec = grid(model, tmp_path, TINY, {**TINY, "seed": 2}, {**TINY, "seed": 3}, name="Submit")
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(spec.to_dict()))
    hold.arm("submitting#2")  # the first run is a complete job; the second is created, not yet a job
    app = subprocess.Popen([sys.executable, "-m", "core.cli", "submit", str(grid_file)], cwd=ROOT, env=os.environ,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert hold.held() == app.pid
    app.kill()
    app.wait()
    hold.release()

    experiment = q.client.get_experiment_by_name(spec.experiment_name)
    runs = sorted(q.client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)
    assert len(runs) == 2
    complete, half = runs
    assert complete.info.status == "SCHEDULED" and complete.data.tags[QUEUE]
    assert half.info.status == "RUNNING" and QUEUE not in half.data.tags  # MLflow creates runs RUNNING
    assert [j.run_id for j in q.jobs()] == [complete.info.run_id]  # not a job: no executor would take it

    ensure_worker(settings)  # as the app's next start would
    back = time.monotonic()
    wait_for(lambda: q.get(half.info.run_id).status.is_terminal(), RECOVER_LIMIT + 10, "the half-written run to end")
    ended = time.monotonic() - back
    took = wait_terminal(q, [complete.info.run_id])
    say(f"C: the half-written run ended {ended:.1f} s after the worker was back; the complete job ended after "
        f"{took:.1f} s")
    assert ended < RECOVER_LIMIT

    cut = q.client.get_run(half.info.run_id)
    assert cut.info.status == "FAILED" and "submission was cut off" in cut.data.tags["error"]
    assert cut.data.tags[SUBMITTING] != "done" and STARTED_AT not in cut.data.tags
    assert executions(settings.home, half.info.run_id) == 0  # never ran
    assert q.get(complete.info.run_id).status == JobStatus.FINISHED
    assert executions(settings.home, complete.info.run_id) == 1
    stop_and_check_nothing_left(settings)


# -- D. the MLflow server and PostgreSQL restarting under a running job ------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The shared team server fixture, with one server process: it is restarted here, and starts faster so."""
    team_server = TeamServer(tmp_path_factory.mktemp("team"), workers=1)
    try:
        team_server.start()
        yield team_server
    finally:
        team_server.close()


@pytest.fixture
def team_faults(server, tmp_path, monkeypatch, bert_model, allowed_roots):  # team workers read inside the roots
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNEBOARD_USER", "team-user")
    small_data(tmp_path / "data")
    from core.settings import Settings

    settings = Settings.from_env()
    hold = Hold(tmp_path / "hold", monkeypatch)
    yield JobQueue(settings), hold, settings, bert_model
    hold.release()
    if server.proc.poll() is not None:
        server.start()
    stop_worker(settings)
    for proc in ours(settings.home):
        proc.kill()


def pg(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", action, *(
        ["-m", "fast"] if action != "start" else [])], check=True, capture_output=True, timeout=60)


def pg_is_up() -> bool:
    return subprocess.run(["pg_ctlcluster", "15", "main", "status"], capture_output=True, check=False).returncode == 0


def log_has(settings, run_id: str, text: str) -> bool:
    log = settings.home / "jobs" / f"{run_id}.log"
    return log.exists() and text in log.read_text()


@pytest.mark.xdist_group("faults_server")  # one worker starts the module's server
@pytest.mark.parametrize("fault", ["mlflow-server", "postgresql"])
def test_a_restart_under_a_running_job_ends_it_finished(team_faults, server, tmp_path, monkeypatch, fault):
    """The server is killed -9 (or PostgreSQL stopped) mid-training, the job trains on and its writes fail while
    it is down, then it is started again: the client's retries carry the job through to FINISHED."""
    q, hold, settings, model = team_faults
    monkeypatch.setenv("TUNEBOARD_WARM_SPARES", "0")  # one job: a spare would never be used
    hold.arm("training")
    sets = {"n_epochs": 1, "max_steps": 6, "logging_steps": 1}
    (job,) = q.submit(grid(model, tmp_path, sets, name=f"Restart{fault}"))
    pid = hold.held()
    worker_pid = worker_info(settings)["pid"]
    try:
        if fault == "mlflow-server":
            server.kill()
        else:
            pg("stop")
        down = time.monotonic()
        hold.release()  # it trains on while MLflow is down: its writes fail and are retried
        wait_for(lambda: log_has(settings, job.run_id, "evaluating"), 60, "the job to train on while MLflow is down")
    finally:
        if fault == "mlflow-server":
            server.start()
        elif not pg_is_up():
            pg("start")
    back = time.monotonic()
    wait_terminal(q, [job.run_id], 180)
    recovered = time.monotonic() - back
    say(f"D {fault}: down {back - down:.1f} s; the job ended {recovered:.1f} s after it was back")

    done = q.get(job.run_id)
    assert done.status == JobStatus.FINISHED, done.reason
    run = q.client.get_run(job.run_id)
    assert run.data.tags.get("model_uri") and "accuracy" in run.data.metrics
    # the loss of every step reached MLflow: the background writes during the outage were retried, not lost
    assert {m.step for m in q.client.get_metric_history(job.run_id, "loss")} == set(range(1, 7))
    assert recovered < RECOVER_LIMIT
    assert gone(pid) and worker_info(settings)["pid"] == worker_pid
    assert executions(settings.home, job.run_id) == 1
    stop_and_check_nothing_left(settings)


@pytest.mark.xdist_group("faults_server")  # one worker starts the module's server
def test_mlflow_down_longer_than_its_retries_fails_the_job_plainly_and_the_worker_survives(
        team_faults, server, tmp_path, monkeypatch):
    """With no client retries left (as after minutes of outage), the job fails; the worker keeps going."""
    q, hold, settings, model = team_faults
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # for the worker and its training processes
    hold.arm("training")
    job, follower = q.submit(grid(model, tmp_path, TINY, {**TINY, "seed": 2}, name="LongOutage"))
    pid = hold.held()
    worker_pid = worker_info(settings)["pid"]
    try:
        server.kill()
        hold.release()
        wait_for(lambda: gone(pid), 60, "the training process to give up")
        wait_for(lambda: "trying again" in (settings.home / "worker.log").read_text(), 30,
                 "the worker to notice MLflow is down")
        assert worker_info(settings)["pid"] == worker_pid  # alive
    finally:
        server.start()
    back = time.monotonic()
    wait_for(lambda: q.get(job.run_id).status.is_terminal(), RECOVER_LIMIT, "the job's end to be recorded")
    recovered = time.monotonic() - back
    took = wait_terminal(q, [follower.run_id])
    done = q.get(job.run_id)
    say(f"D long outage: the failed job was recorded {recovered:.1f} s after MLflow was back; the next job ended "
        f"{took:.1f} s later. Reason: {done.reason}")
    assert done.status == JobStatus.FAILED
    assert "could not be reached" in done.reason and server.url in done.reason, done.reason
    assert q.get(follower.run_id).status == JobStatus.FINISHED
    assert worker_info(settings)["pid"] == worker_pid
    assert executions(settings.home, job.run_id) == 1 and executions(settings.home, follower.run_id) == 1
    stop_and_check_nothing_left(settings)


# -- E. a full artifact disk -------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_artifact_disk(store):
    """The embedded store's artifact folder on a 256 KiB tmpfs: small files fit, a model does not."""
    folder = store.artifacts_dir
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        stop_worker(store)
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_artifact_disk_fails_the_job_plainly_and_the_worker_goes_on(faults, tiny_artifact_disk, tmp_path):
    q, _, settings, model = faults
    first, second = q.submit(grid(model, tmp_path, TINY, {**TINY, "seed": 2}, name="FullDisk"))
    worker_pid = worker_info(settings)["pid"]
    took = wait_terminal(q, [first.run_id, second.run_id])
    for job in (first, second):
        done = q.get(job.run_id)
        say(f"E: {done.run_name} {done.status.value}: {done.reason}")
        assert done.status == JobStatus.FAILED
        assert done.reason.startswith("the disk is full: no space left on device writing "), done.reason
        assert f"the file system at {tiny_artifact_disk}: 256.0 KiB" in done.reason, done.reason
        assert executions(settings.home, job.run_id) == 1  # not retried
    assert worker_info(settings)["pid"] == worker_pid
    assert [j.run_id for j in q.jobs(statuses={JobStatus.SCHEDULED, JobStatus.RUNNING})] == []

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_artifact_disk)], check=True)  # space freed
    again = q.retry(first.run_id)
    retried = wait_terminal(q, [again.run_id])
    say(f"E: both jobs failed on the full disk within {took:.1f} s; the retry after freeing space took {retried:.1f} s")
    assert q.get(again.run_id).status == JobStatus.FINISHED
    assert worker_info(settings)["pid"] == worker_pid
    stop_and_check_nothing_left(settings)
