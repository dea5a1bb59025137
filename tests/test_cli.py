"""The command line, as a user runs it: real subprocesses on a temporary store."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import DATA, ROOT, child_env


def cli(home, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = child_env(TUNEBOARD_HOME=str(home), TUNEBOARD_USER="cli-user")
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.mark.slow
def test_demo_runs_the_grid_beats_the_baseline_and_promotes(tmp_path):
    done = cli(tmp_path, "demo")
    out = done.stdout
    assert "10 run(s) finished, 0 failed" in out
    gain = float(re.search(r"([+-][0-9.]+) over its pretrained baseline", out).group(1))
    assert gain >= 0.1, out  # fine-tuning visibly beats the untrained model
    assert "Demo_Consumer_Topic version 1 is now in production" in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    experiment = re.search(r"Experiment (/Users/cli-user/\S+):", out).group(1)

    by_param = cli(tmp_path, "best", experiment, "--by-param", "learning_rate").stdout
    assert "learning_rate = 0.0005" in by_param and "learning_rate = 0.002" in by_param
    history = cli(tmp_path, "history", "Demo_Consumer_Topic").stdout
    assert "cli-user promoted version 1 to production" in history
    refused = cli(tmp_path, "rollback", "Demo_Consumer_Topic", check=False)
    assert refused.returncode == 2 and "no earlier version to roll back to" in refused.stderr
    unknown = cli(tmp_path, "best", experiment, "--metric", "bleu", check=False)
    assert unknown.returncode == 2 and "Metrics logged:" in unknown.stderr and "accuracy" in unknown.stderr


def test_a_grid_file_runs_and_bad_ones_are_refused(tmp_path, bert_model):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""
base_name: Cli
data_src: Demo
user_id: cli-user
dataset_versions: [train_sample.csv]
base_model_versions: ["{bert_model}"]
hyperparameters:
  - {{n_epochs: 1, max_steps: 4, learning_rate: 0.001}}
train_file: "{DATA}/{{data_version}}"
validation_file: "{DATA}/test.csv"
output_dir: "{tmp_path}/out"
evalute_pretrained_model: false
""", encoding="utf-8")
    out = cli(tmp_path, "run", str(grid)).stdout
    assert "demo-bert-tiny_train_sample_param_set1: finished" in out and "1 run(s) finished, 0 failed" in out

    grid.write_text(grid.read_text().replace("max_steps: 4", "max_step: 4"), encoding="utf-8")
    refused = cli(tmp_path, "run", str(grid), check=False)
    assert refused.returncode == 2
    assert "grid.yaml" in refused.stderr and "hyperparameters[0].max_step: unknown hyperparameter" in refused.stderr

    missing = cli(tmp_path, "run", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode == 2 and "nope.yaml does not exist" in missing.stderr
