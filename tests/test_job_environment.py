"""The environment a job's process starts with (``core.jobs.model.JOB_ENV``), as the local worker gives it."""

from __future__ import annotations

import subprocess
import sys

# What makes MLflow leave its telemetry off by itself (mlflow.telemetry.utils._is_ci_env_or_testing): pytest sets
# the first, CI machines some others; a user's machine sets none
CI_MARKERS = frozenset({"PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
                        "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
                        "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
                        "RUNBOT_WORKER_ID"})
TELEMETRY = "import mlflow.telemetry.client as t; print(t.get_telemetry_client() is not None)"


def telemetry_on(env: dict[str, str]) -> bool:
    """Whether MLflow starts its telemetry client in a process with this environment."""
    out = subprocess.run([sys.executable, "-c", TELEMETRY], env=env, capture_output=True, text=True, timeout=180,
                         check=True)
    return out.stdout.strip() == "True"


def test_a_jobs_process_starts_mlflow_without_its_telemetry_thread(store):
    """MLflow's telemetry (on by default on a user's machine) fetches its config in a thread of its own at the
    process's first MLflow call; offline, where Tuneboard runs, the fetch fails and that thread removes
    ``_MLFLOW_TELEMETRY_SESSION_ID`` from ``os.environ`` while the main thread may be reading it (requests reads
    the proxies from it on each call to a tracking server). A team chaos soak's job failed at its start so
    "API request to .../runs/get failed with exception '_MLFLOW_TELEMETRY_SESSION_ID'" (a KeyError from
    iterating os.environ). The worker starts each job's process (and its warm spares) with telemetry off."""
    from core.jobs.local import Slot, Worker

    (slot,) = Worker(store, slots=[Slot("cpu0", None)], spares=False).slots
    env = {k: v for k, v in slot.env.items() if k not in CI_MARKERS}
    assert not telemetry_on(env)
    without = {k: v for k, v in env.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    assert telemetry_on(without)  # what the job would have had: the test's premise


def test_every_process_that_imports_tuneboard_starts_mlflow_without_its_telemetry_thread():
    """The dashboard, the CLI, the worker and the team server import ``core`` before MLflow, and so does a user's
    script that follows README: MLflow's telemetry thread (the race above) is off there too, unless the user
    asked for it by setting MLFLOW_DISABLE_TELEMETRY themselves."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in CI_MARKERS and k not in ("MLFLOW_DISABLE_TELEMETRY",
                                                                                    "DO_NOT_TRACK")}
    probe = "import core; " + TELEMETRY
    ask = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180,
                         check=True)
    assert ask.stdout.strip() == "False"
    assert telemetry_on(env)  # MLflow alone, in the same environment: the test's premise
    chosen = subprocess.run([sys.executable, "-c", probe], env={**env, "MLFLOW_DISABLE_TELEMETRY": "false"},
                            capture_output=True, text=True, timeout=180, check=True)
    assert chosen.stdout.strip() == "True"  # the user's own setting is kept
