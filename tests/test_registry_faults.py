"""kill -9 of the process that registers and promotes, at each point of a promotion.

A real CLI process (the same ModelTransition code the dashboard runs) is held at a known point by the
fault-injection seam (core.faults, passed in by the CLI) and killed with SIGKILL. After each kill the registry must
be readable and honest: the alias (the truth) names the version in production, ``problems()`` says in
words what was left half-done, and ``repair()`` (or simply promoting again) finishes it, leaving exactly
one version in Production and an audit event for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import ROOT, child_env, point_at

from core.registry.model_transition import ModelTransition

if TYPE_CHECKING:
    from shared_store import SharedStore

    from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store
MODEL = "Crash_Model"


@pytest.fixture
def registry(private_store: SharedStore, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Settings, Path, list]:
    """The module's copy of the session's store (tests/shared_store.py): its small experiment holds three
    fine-tunes of the demo BERT with logged models (and the baseline); registering writes, hence the copy."""
    settings = point_at(monkeypatch, private_store)
    from core import runs as runs_mod

    client = runs_mod.client()
    exp = client.get_experiment_by_name(private_store.small)
    run_list = runs_mod.search_all(client, [exp.experiment_id], order_by=["attributes.start_time ASC"])
    return private_store.small, settings, private_store.home.parent, [r for r in run_list if runs_mod.has_model(r)]


def promote_and_kill(settings, tmp, stage: str, *args: str) -> None:
    """Run `core.cli promote MODEL ARGS` until it reaches ``stage``, then kill -9 it there."""
    hold = tmp / f"hold-{stage.replace(' ', '-')}"
    hold.write_text("")
    env = child_env(TUNEBOARD_HOME=str(settings.home), TUNEBOARD_USER="crasher",
                    TUNEBOARD_TEST_HOLD_AT=stage, TUNEBOARD_TEST_HOLD_FILE=str(hold))
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "promote", MODEL, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not hold.read_text().strip():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, f"the promotion never reached {stage!r}"
        time.sleep(0.1)
    pid, reached = hold.read_text().split(" ", 1)
    assert int(pid) == proc.pid and reached.strip() == stage
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    hold.unlink()


def in_production(transition: ModelTransition) -> list[str]:
    return [str(v.version) for v in transition.versions() if v.current_stage == "Production"]


def test_kill_at_each_point_of_a_promotion_leaves_a_registry_that_says_so_and_repairs(registry):
    experiment, settings, tmp, run_list = registry
    from core.registry.model_selector import ModelSelector

    best_run = ModelSelector(experiment, "accuracy").get_best_model()  # what `promote --experiment` picks
    worst, middle = [r for r in run_list if r.info.run_id != best_run.info.run_id][:2]
    transition = ModelTransition(MODEL)
    v_worst = str(transition.register_run(worst).version)
    transition.promote(v_worst, "Production", reason="start")
    assert transition.problems() == []

    # 1. killed right after registering a new version: a version exists, nothing else changed
    promote_and_kill(settings, tmp, "registered", "--experiment", experiment, "--metric", "accuracy")
    assert len(transition.versions()) == 2
    assert str(transition.current("Production").version) == v_worst and in_production(transition) == [v_worst]
    assert transition.problems() == []
    # promoting again finishes it, and reuses the version the killed process registered
    v_best = str(transition.transition_model("Production", experiment, "accuracy").version)
    assert transition.versions()[-1].run_id == best_run.info.run_id and len(transition.versions()) == 2
    assert in_production(transition) == [v_best] and transition.problems() == []

    # 2. killed between pointing the alias and moving the stages: the alias is the truth, problems() says so
    v_mid = str(transition.register_run(middle).version)
    promote_and_kill(settings, tmp, "alias set", "--version", v_mid)
    assert str(transition.current("Production").version) == v_mid
    found = transition.problems()
    assert any("holds the alias 'production' but its stage" in p for p in found), found
    assert any(f"no audit event records version {v_mid}" in p for p in found), found
    assert transition.repair(user="fixer") == found
    assert transition.problems() == [] and in_production(transition) == [v_mid]
    event = transition.audit_trail()[-1]
    assert (event.version, event.user, event.reason) == (v_mid, "fixer", "completed an interrupted promotion")

    # 3. killed after the stages moved but before the audit event: only the audit is missing
    promote_and_kill(settings, tmp, "settled", "--version", v_worst)
    assert in_production(transition) == [v_worst] and str(transition.current("Production").version) == v_worst
    assert transition.problems() == [f"no audit event records version {v_worst} going to 'production'"]
    transition.repair(user="fixer")
    assert transition.problems() == [] and transition.audit_trail()[-1].version == v_worst
