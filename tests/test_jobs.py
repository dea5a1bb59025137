"""Background jobs on the local worker: real worker processes, real training processes, real MLflow.

Tests wait on conditions (a job's state in MLflow, a process gone), never on fixed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, copy_data

from core.grid import GridSpec
from core.jobs import CANCEL, PID, PROGRESS, RETRIED_BY, RETRY_OF, SPEC, STARTED_AT, JobQueue, JobStatus
from core.progress import Progress
from core.worker import ensure_worker, stop_worker, worker_info

pytestmark = pytest.mark.slow

LONG = {"n_epochs": 1, "max_steps": 100_000, "logging_steps": 5}  # runs until cancelled or killed
SHORT = {"n_epochs": 1, "max_steps": 3}


def wait_for(predicate, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def grid(model: str, tmp_path, *param_sets: dict, datasets=("train_sample.csv",), name: str = "Jobs") -> GridSpec:
    return GridSpec(base_name=name, data_src="Demo", dataset_versions=tuple(datasets), hyperparameters=param_sets,
                    base_model_versions=(model,), output_dir=str(tmp_path / "out"),
                    train_file=str(tmp_path / "data" / "{data_version}"),
                    validation_file=str(tmp_path / "data" / "test.csv"), evaluate_pretrained_model=False,
                    user_id="tester")


@pytest.fixture
def queue(store, tmp_path):
    copy_data(tmp_path / "data")
    q = JobQueue(store)
    yield q
    stop_worker(store)


def status(q: JobQueue, run_id: str) -> JobStatus:
    return q.get(run_id).status


def run_worker_until_idle(extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.worker", "--until-idle", "--no-spares"], cwd=ROOT,
                          env={**os.environ, **(extra_env or {})}, capture_output=True, text=True, timeout=600,
                          check=False)


def test_submit_queues_every_run_with_its_spec_and_the_worker_runs_them(queue, store, bert_model, tmp_path):
    jobs = queue.submit(grid(bert_model, tmp_path, SHORT, {**SHORT, "learning_rate": 1e-3}), start=False)
    assert [j.run_name for j in jobs] == ["demo-bert-tiny_train_sample_param_set1",
                                          "demo-bert-tiny_train_sample_param_set2"]
    assert {j.status for j in queue.jobs(grid_id=jobs[0].grid_id)} == {JobStatus.SCHEDULED}
    run = queue.client.get_run(jobs[1].run_id)
    assert run.data.params["learning_rate"] == "0.001" and run.data.tags["param_set"] == "param_set2"
    assert run.data.tags["grid_id"] == jobs[0].grid_id and '"learning_rate": 0.001' in run.data.tags[SPEC]
    assert "run_spec.json" in {a.path for a in queue.client.list_artifacts(jobs[1].run_id)}

    done = run_worker_until_idle()
    assert done.returncode == 0, done.stdout + done.stderr
    finished = queue.jobs(grid_id=jobs[0].grid_id)
    assert [j.status for j in finished] == [JobStatus.FINISHED] * 2
    assert finished[0].progress.stage == "finished" and finished[0].progress.total_steps == 3
    assert "job.log" in {a.path for a in queue.client.list_artifacts(jobs[0].run_id)}
    log = queue.log_tail(jobs[0].run_id)
    assert "FINISHED" in log and "training 100% step 3/3" in log and "{'" not in log  # progress, no raw dicts
    whole = (store.home / "jobs" / f"{jobs[0].run_id}.log").read_text()
    for chatter in ("model card", "license information", "can be interpreted in multiple ways", "Loading weights"):
        assert chatter not in whole, chatter  # nothing a person reading the log should have to decode
    # FIFO: the first queued ran first
    assert float(finished[0].start_time) < float(finished[1].start_time)


def test_a_run_that_reads_finished_already_holds_its_log(queue, bert_model, tmp_path):
    """The job's process attaches its log before it ends its run: no worker here could attach it later."""
    import mlflow

    (job,) = queue.submit(grid(bert_model, tmp_path, SHORT), start=False)
    log = tmp_path / "job-process.log"
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "core.train_job", job.run_id, "--log", str(log)], cwd=ROOT,
                              env=os.environ, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert done.returncode == 0, log.read_text()[-3000:]
    assert queue.client.get_run(job.run_id).info.status == "FINISHED"
    attached = mlflow.artifacts.download_artifacts(run_id=job.run_id, artifact_path="job.log", dst_path=str(tmp_path))
    text = Path(attached).read_text(encoding="utf-8")
    assert f"job {job.run_id}: " in text and "logging model" in text


def test_priority_jumps_the_queue(queue, bert_model, tmp_path):
    low = queue.submit(grid(bert_model, tmp_path, SHORT, name="Low"), start=False)
    high = queue.submit(grid(bert_model, tmp_path, SHORT, name="High"), priority=5, start=False)
    assert run_worker_until_idle().returncode == 0
    assert queue.get(high[0].run_id).start_time < queue.get(low[0].run_id).start_time


def test_cancel_a_queued_job_and_it_never_starts(queue, bert_model, tmp_path):
    first, second = queue.submit(grid(bert_model, tmp_path, SHORT, {**SHORT, "seed": 7}), start=False)
    cancelled = queue.cancel(second.run_id, user="alice")
    assert cancelled.status == JobStatus.KILLED and "cancelled by alice before it started" in cancelled.reason
    assert queue.cancel(second.run_id).status == JobStatus.KILLED  # idempotent
    assert run_worker_until_idle().returncode == 0
    assert status(queue, first.run_id) == JobStatus.FINISHED
    run = queue.client.get_run(second.run_id)
    assert run.info.status == "KILLED" and STARTED_AT not in run.data.tags


def test_cancel_a_running_job_stops_it_within_seconds(queue, bert_model, tmp_path):
    (job,) = queue.submit(grid(bert_model, tmp_path, LONG))
    wait_for(lambda: (p := queue.get(job.run_id).progress) and p.stage == "training" and p.step > 0,
             what="the job to be training")
    running = queue.get(job.run_id)
    assert running.status == JobStatus.RUNNING and running.progress.total_steps == 100_000
    assert running.progress.samples_per_second > 0 and running.progress.eta_seconds > 0
    assert "training" in queue.log_tail(job.run_id)
    pid = int(queue.client.get_run(job.run_id).data.tags[PID].split("@")[0])
    started = time.monotonic()
    queue.cancel(job.run_id, user="bob")
    wait_for(lambda: status(queue, job.run_id) == JobStatus.KILLED, timeout=15, what="KILLED")
    assert time.monotonic() - started < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "cancelled by bob while it was running" in queue.get(job.run_id).reason
    assert "job.log" in {a.path for a in queue.client.list_artifacts(job.run_id)}  # attached before it ended


def test_kill_9_of_the_worker_fails_the_running_job_and_the_queue_resumes(queue, store, bert_model, tmp_path):
    long_job, short_job = queue.submit(grid(bert_model, tmp_path, LONG, SHORT))
    wait_for(lambda: (p := queue.get(long_job.run_id).progress) and p.step > 0, what="the long job to train")
    worker_pid = worker_info(store)["pid"]
    child_pid = int(queue.client.get_run(long_job.run_id).data.tags[PID].split("@")[0])
    os.kill(worker_pid, signal.SIGKILL)
    # the training process dies with its worker; the queued job stays queued
    wait_for(lambda: not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the training process to die with the worker")
    assert status(queue, short_job.run_id) == JobStatus.SCHEDULED
    assert queue.client.get_run(long_job.run_id).info.status == "RUNNING"  # nobody has told MLflow yet
    ensure_worker(store)  # the restarted worker reaps the orphan and resumes the queue
    wait_for(lambda: status(queue, long_job.run_id) == JobStatus.FAILED, timeout=30, what="the orphan reaped")
    assert "the worker stopped while this job was running" in queue.get(long_job.run_id).reason
    wait_for(lambda: status(queue, short_job.run_id) == JobStatus.FINISHED, what="the queue to resume")


def test_the_pages_listing_through_the_runs_loader_matches_a_full_read_through_the_queues_life(
        queue, bert_model, tmp_path):
    """The Jobs page lists the queue through the server's runs loader (only what moved is read again): at every
    step of the queue's life it lists what a full read of the queue lists."""
    from core.runs_cache import RunsLoader

    loader = RunsLoader()

    def comparable(jobs: list) -> list:  # a running job's progress moves between any two reads
        return [replace(j, progress=None) if j.status == JobStatus.RUNNING else j for j in jobs]

    def same() -> list:
        """The two listings agree. The worker may move a job between the two reads, so they are read again
        (a few times, within seconds); a loader that missed a change would keep disagreeing."""
        for _ in range(20):
            through_loader, full = comparable(queue.jobs(loader=loader)), comparable(queue.jobs())
            if through_loader == full:
                return full
            time.sleep(0.25)
        assert through_loader == full

    assert same() == []
    short, cancelled = queue.submit(grid(bert_model, tmp_path, SHORT, {**SHORT, "seed": 7}), start=False)
    (long,) = queue.submit(grid(bert_model, tmp_path, LONG, name="Long"), priority=5)
    same()
    queue.cancel(cancelled.run_id)
    assert {j.run_id: j.status for j in same()}[cancelled.run_id] == JobStatus.KILLED
    wait_for(lambda: (p := queue.get(long.run_id).progress) and p.step > 0, what="the long job training")
    listed = {j.run_id: j for j in same()}
    assert listed[long.run_id].status == JobStatus.RUNNING and listed[long.run_id].slot
    queue.cancel(long.run_id)
    wait_for(lambda: status(queue, long.run_id) == JobStatus.KILLED, timeout=15, what="KILLED")
    again = queue.retry(cancelled.run_id, start=False)
    listed = {j.run_id: j for j in same()}
    assert listed[long.run_id].status == JobStatus.KILLED and listed[again.run_id].retry_of == cancelled.run_id
    wait_for(lambda: all(status(queue, j.run_id).is_terminal() for j in (short, again)), timeout=300,
             what="the short jobs to end")
    assert {j.run_id: j.status for j in same()}[again.run_id] == JobStatus.FINISHED


def test_listing_with_no_worker_ends_runs_left_running(queue, store, bert_model, tmp_path):
    (job,) = queue.submit(grid(bert_model, tmp_path, LONG))
    wait_for(lambda: (p := queue.get(job.run_id).progress) and p.step > 0, what="training")
    os.kill(worker_info(store)["pid"], signal.SIGKILL)
    wait_for(lambda: worker_info(store) is None, timeout=10, what="the worker to be gone")
    listed = {j.run_id: j for j in queue.jobs()}
    assert listed[job.run_id].status == JobStatus.FAILED


def test_a_broken_dataset_fails_its_job_with_a_reason_and_the_next_job_succeeds(queue, bert_model, tmp_path):
    broken, good = queue.submit(grid(bert_model, tmp_path, SHORT, datasets=("full_dataset.csv", "train_sample.csv")),
                                start=False)
    (tmp_path / "data" / "full_dataset.csv").write_bytes(b"premise,hypothesis,label\n\xff\xfe,b,entailment\n")
    assert run_worker_until_idle().returncode == 0
    failed = queue.get(broken.run_id)
    assert failed.status == JobStatus.FAILED
    assert "full_dataset.csv, line 2: byte 25 is not valid UTF-8" in failed.reason
    assert status(queue, good.run_id) == JobStatus.FINISHED
    for job in (broken, good):  # an ended run holds its log, whoever ended it
        assert "job.log" in {a.path for a in queue.client.list_artifacts(job.run_id)}


def test_retry_queues_a_linked_run_with_the_same_spec(queue, bert_model, tmp_path):
    (job,) = queue.submit(grid(bert_model, tmp_path, SHORT), start=False)
    queue.cancel(job.run_id)
    again = queue.retry(job.run_id, start=False)
    assert again.run_id != job.run_id and again.run_name == job.run_name and again.status == JobStatus.SCHEDULED
    assert queue.client.get_run(again.run_id).data.tags[RETRY_OF] == job.run_id
    assert queue.client.get_run(job.run_id).data.tags[RETRIED_BY] == again.run_id
    assert queue.client.get_run(again.run_id).data.tags[SPEC] == queue.client.get_run(job.run_id).data.tags[SPEC]
    with pytest.raises(Exception, match="only an ended job can be retried"):
        queue.retry(again.run_id)
    assert run_worker_until_idle().returncode == 0
    assert status(queue, again.run_id) == JobStatus.FINISHED and status(queue, job.run_id) == JobStatus.KILLED


def test_two_workers_racing_run_each_job_exactly_once(queue, store, bert_model, tmp_path):
    jobs = queue.submit(grid(bert_model, tmp_path, SHORT, {**SHORT, "seed": 1}, {**SHORT, "seed": 2}), start=False)
    command = [sys.executable, "-m", "core.worker", "--until-idle", "--no-spares"]
    racers = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in racers]
    codes = sorted(p.returncode for p in racers)
    assert codes == [0, 3], outputs  # one owned the queue, the other said so and stood down
    assert any("another worker" in out and "already owns this queue" in out for out in outputs)
    for job in jobs:
        assert status(queue, job.run_id) == JobStatus.FINISHED
        log = (store.home / "jobs" / f"{job.run_id}.log").read_text()
        assert len(re.findall(rf"job {job.run_id}: \S+ \(", log)) == 1  # started once
    assert CANCEL not in queue.client.get_run(jobs[0].run_id).data.tags


def test_a_kind_the_tests_define_runs_on_the_real_worker_with_cancel_and_retry(store, monkeypatch, tmp_path):
    """The queue, the worker and the job's process know the kind only through TUNEBOARD_JOB_KINDS."""
    import mlflow

    from core.jobs import kinds
    from tests.echo_kind import EchoSpec

    monkeypatch.setenv(kinds.EXTRA_VARIABLE, "tests.echo_kind")  # the one line that lists it
    monkeypatch.setenv("TUNEBOARD_WARM_SPARES", "0")
    queue = JobQueue(store)
    try:
        (first,) = queue.submit(EchoSpec("hello"))
        assert first.kind == "echo" and kinds.label(first.kind) == "say it back"
        wait_for(lambda: status(queue, first.run_id).is_terminal(), what="the echo job to end")
        done = queue.get(first.run_id)
        assert done.status == JobStatus.FINISHED, done.reason
        assert done.progress.stage == "finished" and done.progress.step == 4
        said = mlflow.artifacts.download_artifacts(run_id=first.run_id, artifact_path="echo.txt",
                                                   dst_path=str(tmp_path / "said"))
        assert Path(said).read_text(encoding="utf-8") == "hello"
        assert f"job {first.run_id}: FINISHED, said 'hello'" in queue.log_tail(first.run_id)

        (slow,) = queue.submit(EchoSpec("slowly", seconds=600, steps=600))
        wait_for(lambda: (p := queue.get(slow.run_id).progress) and p.step > 0, what="the slow echo to work")
        assert queue.cancel(slow.run_id, user="carol").status in (JobStatus.RUNNING, JobStatus.KILLED)
        wait_for(lambda: status(queue, slow.run_id) == JobStatus.KILLED, timeout=15, what="KILLED")
        assert "cancelled by carol while it was running" in queue.get(slow.run_id).reason

        again = queue.retry(first.run_id)
        assert queue.client.get_run(again.run_id).data.tags[RETRY_OF] == first.run_id
        wait_for(lambda: status(queue, again.run_id).is_terminal(), what="the retried echo to end")
        assert status(queue, again.run_id) == JobStatus.FINISHED and again.run_name == "echo hello"
    finally:
        stop_worker(store)


def test_a_job_that_reads_ended_already_holds_its_last_progress(store, monkeypatch):
    """The last progress ("finished") was written after the run ended, so a reader could see FINISHED with the
    job still "writing result" (a fresh-clone CI run failed on it): it is written while the run is open."""
    import mlflow

    from core.jobs import kinds
    from core.jobs.runner import run_job
    from tests.echo_kind import EchoSpec

    monkeypatch.setenv(kinds.EXTRA_VARIABLE, "tests.echo_kind")
    queue = JobQueue(store)
    (job,) = queue.submit(EchoSpec("at the end", seconds=0.0, steps=2), start=False)
    seen, end_run = [], mlflow.end_run

    def end_run_and_look(status: str = "FINISHED") -> None:
        seen.append(Progress.from_json(queue.client.get_run(job.run_id).data.tags[PROGRESS]).stage)
        end_run(status)

    monkeypatch.setattr(mlflow, "end_run", end_run_and_look)
    assert run_job(job.run_id) == 0
    assert seen == ["finished"]  # what the run held at the moment it ended
    assert queue.get(job.run_id).progress.stage == "finished"


def test_a_job_of_a_kind_nobody_lists_is_refused_in_words(store):
    from core.errors import TuneboardError
    from tests.echo_kind import EchoSpec

    with pytest.raises(TuneboardError, match="no kind of job takes a EchoSpec"):
        JobQueue(store).submit(EchoSpec("unlisted"))


def test_cpu_jobs_fork_from_a_server_warmed_while_no_cpu_job_runs(store, tmp_path, monkeypatch):
    """A spare's imports beside a CPU job's training took a core from it (tiny-BERT at 20-33 samples/s instead
    of 190 on two cores): the CPU slots' fork server warms up only while no CPU job runs, a GPU slot's spare does
    not wait; a job forked from the server runs in its own process group and its end reaches the worker."""
    from core.jobs import kinds
    from core.jobs.local import Slot, Worker
    from tests.echo_kind import EchoSpec

    worker = Worker(store, slots=[Slot("cpu0", None), Slot("cpu1", None), Slot("gpu0", "0")], spares=True)
    (store.home / "jobs").mkdir(parents=True, exist_ok=True)  # as the worker's acquire() makes it
    try:
        worker.slots[0].job_id = "a-running-job"  # as if started
        worker.keep_spares()
        assert worker.forks is None and worker.slots[2].spare is not None
        worker.slots[0].job_id = None  # it ended
        worker.keep_spares()
        assert worker.forks is not None and worker.forks.alive()
        assert worker.forks.ready.wait(240), (store.home / "jobs" / "fork-server.log").read_text()

        log = tmp_path / "forked.log"
        job = worker.forks.start("no-such-run", log)  # a real fork; its job fails: MLflow knows no such run
        assert os.getpgid(job.pid) == job.pid and psutil.Process(job.pid).ppid() == worker.forks.proc.pid
        assert job.wait(120) == 1 and "no-such-run" in log.read_text()

        # the server dies (kill -9) while a job is queued: it starts again before the job, which waits for it
        # (the next jobs would otherwise start cold, the server coming back only once the queue was empty)
        monkeypatch.setenv(kinds.EXTRA_VARIABLE, "tests.echo_kind")
        (queued,) = JobQueue(store).submit(EchoSpec("after the server died"), start=False)
        dead = worker.forks
        os.kill(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(30)
        worker.slots[2].job_id = "a-gpu-job"  # busy: the echo job would fit there
        assert worker.launch_ready() == (0, -1)  # held: the CPU slots wait for the new server's warm-up
        assert worker.forks is not dead and worker.forks.warming()
        assert status(JobQueue(store), queued.run_id) == JobStatus.SCHEDULED
    finally:
        for slot in worker.slots:
            if slot.spare is not None:
                slot.spare.stdin.close()  # a spare let go leaves once its imports are done
                slot.spare.kill()
                slot.spare.wait(30)
        if worker.forks is not None:
            worker.forks.close()
    assert not worker.forks.alive()
