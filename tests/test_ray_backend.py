"""The Ray backend against a real local Ray head on 127.0.0.1 (CPU only), started here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import copy_data, free_port
from test_jobs import LONG, SHORT, grid, wait_for

from core.jobs import JobQueue, JobStatus
from core.jobs.ray import RayBackend, submission_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_head")]  # one worker builds its fixture
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def ray_head():
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dashboard = free_port(), free_port()
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2",
                    "--disable-usage-stats", f"--temp-dir={temp}"], check=True, capture_output=True, timeout=180)
    yield f"http://127.0.0.1:{dashboard}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, check=False)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_queue(store, ray_head, tmp_path, monkeypatch):
    monkeypatch.setenv("JOB_BACKEND", "ray")
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    monkeypatch.setenv("TUNEBOARD_RAY_PYTHON", sys.executable)
    copy_data(tmp_path / "data")
    return JobQueue(store)


def test_a_demo_job_runs_to_finished_on_ray(ray_queue, bert_model, tmp_path):
    assert ray_queue.backend_name == "ray"
    (job,) = ray_queue.submit(grid(bert_model, tmp_path, SHORT, name="Ray"))
    assert job.status == JobStatus.SCHEDULED and job.backend == "ray"
    wait_for(lambda: ray_queue.get(job.run_id).status == JobStatus.FINISHED, timeout=180, what="FINISHED on Ray")
    done = ray_queue.get(job.run_id)
    assert done.progress.stage == "finished" and done.progress.total_steps == 3
    run = ray_queue.client.get_run(job.run_id)
    assert 0 <= run.data.metrics["accuracy"] <= 1 and run.data.tags["model_uri"].startswith("models:/")
    assert "FINISHED" in ray_queue.log_tail(job.run_id)
    wait_for(lambda: ray_queue.backend.status(done) == "SUCCEEDED", timeout=60, what="Ray to report SUCCEEDED")


def test_a_running_ray_job_is_stopped_and_ends_killed(ray_queue, bert_model, tmp_path):
    (job,) = ray_queue.submit(grid(bert_model, tmp_path, LONG, name="RayStop"))
    wait_for(lambda: (p := ray_queue.get(job.run_id).progress) and p.stage == "training" and p.step > 0,
             timeout=180, what="the Ray job to train")
    stopped = ray_queue.cancel(job.run_id, user="carol")
    assert stopped.status == JobStatus.KILLED and "cancelled by carol" in stopped.reason
    backend: RayBackend = ray_queue.backend
    wait_for(lambda: backend.status(stopped) == "STOPPED", timeout=60, what="Ray to report STOPPED")
    assert backend.client.get_job_info(submission_id(job.run_id)).entrypoint.endswith(f"core.train_job {job.run_id}")
