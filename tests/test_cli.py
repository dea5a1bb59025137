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
                          text=True, timeout=1500, check=False)  # demo: 10 runs; minutes on a busy 2-core machine
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_runs_the_grid_beats_the_baseline_and_promotes(tmp_path):
    done = cli(tmp_path, "demo")
    out = done.stdout
    assert "10 run(s) finished, 0 failed" in out
    gain = float(re.search(r"Best fine-tune: \S+, accuracy [0-9.]+, ([0-9.]+) above its pretrained baseline", out)[1])
    assert gain >= 0.1, out  # fine-tuning visibly beats the untrained model
    assert "Best run by accuracy" not in out  # the summary said it once already
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


@pytest.mark.slow  # a training subprocess: not in `make check`
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
    # stdout is a pipe here, as in a CI log: progress lines, no carriage returns, none of the Trainer's raw dicts
    assert "{'" not in out and "\r" not in out
    steps = re.findall(r"^\[1/1\] demo-bert-tiny_train_sample_param_set1: training +(\d+)% step (\d)/4 .*ETA", out,
                       re.MULTILINE)
    assert steps == [("25", "1"), ("50", "2"), ("75", "3"), ("100", "4")], out
    assert "Best fine-tune: demo-bert-tiny_train_sample_param_set1, accuracy" in out
    assert "no pretrained baseline evaluated to compare with" in out

    grid.write_text(grid.read_text().replace("max_steps: 4", "max_step: 4"), encoding="utf-8")
    refused = cli(tmp_path, "run", str(grid), check=False)
    assert refused.returncode == 2
    assert "grid.yaml" in refused.stderr and "hyperparameters[0].max_step: unknown hyperparameter" in refused.stderr

    missing = cli(tmp_path, "run", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode == 2 and "nope.yaml does not exist" in missing.stderr


def test_best_says_plainly_when_fine_tuning_lost_to_the_baseline(tmp_path):
    """A store where the pretrained model beats every fine-tune (runs written with the real MLflow client)."""
    from mlflow.tracking import MlflowClient

    from core.settings import default_tracking_uri

    client = MlflowClient(default_tracking_uri(tmp_path.resolve()))  # the store `cli` points the command at
    experiment = client.create_experiment("/Users/cli-user/Lost")
    for name, run_type, accuracy in (("deberta_pretrained_baseline", "baseline", 0.516),
                                     ("deberta_full_param_set1", "fine_tune", 0.480),
                                     ("deberta_full_param_set2", "fine_tune", 0.455)):
        run = client.create_run(experiment, run_name=name, tags={"run_type": run_type, "base_model_name": "deberta"})
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        if run_type == "fine_tune":
            client.set_tag(run.info.run_id, "model_uri", f"runs:/{run.info.run_id}/model")
        client.set_terminated(run.info.run_id, "FINISHED")
    out = cli(tmp_path, "best", "/Users/cli-user/Lost").stdout
    assert out.startswith("Best run by accuracy: deberta_full_param_set1, accuracy 0.480, 0.036 BELOW its pretrained "
                          "baseline (0.516): fine-tuning made it worse; check that its training loss fell"), out
