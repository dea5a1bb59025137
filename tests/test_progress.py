"""What a person watching a grid sees: one progress bar per run, and a summary that says plainly whether
fine-tuning beat the pretrained baseline."""

from __future__ import annotations

import io

import pytest

from core.experiment_manager import ExperimentSummary, baseline_verdict
from core.grid import RunSpec
from core.progress import Progress, ProgressBar, duration_text, progress_text
from core.training.run import RunResult


def training(step: int, total: int = 20, loss: float | None = 0.6733, eta: float | None = 12.0) -> Progress:
    return Progress(stage="training", step=step, total_steps=total, epoch=step / 10, loss=loss,
                    samples_per_second=118.0, eta_seconds=eta)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_line_per_stage_and_per_tenth_never_a_carriage_return():
    out = io.StringIO()  # a pipe, a CI log, a notebook: not a terminal
    bar = ProgressBar("[2/5] bert_full_param_set1", out)
    bar.stage("loading model")
    bar.stage("training")
    for step in range(21):
        bar.update(training(step))
    bar.stage("evaluating")
    bar.close("[2/5] bert_full_param_set1: finished (accuracy 0.812)")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    progress = [line for line in lines if "step" in line]
    assert len(progress) == 10  # 10%, 20%, ... 100%: never one per step
    assert progress[0] == ("[2/5] bert_full_param_set1: training 10% step 2/20 epoch 0.20 loss 0.6733 118 samples/s "
                           "ETA 12 s")
    assert progress[-1].startswith("[2/5] bert_full_param_set1: training 100% step 20/20")
    assert lines[0] == "[2/5] bert_full_param_set1: loading model"
    assert lines[-2:] == ["[2/5] bert_full_param_set1: evaluating",
                          "[2/5] bert_full_param_set1: finished (accuracy 0.812)"]


def test_on_a_terminal_one_bar_redrawn_in_place_then_replaced_by_the_result(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    out = Terminal()
    label = "[1/8] deberta-v3-base-zeroshot-v2_full_dataset_with_a_long_name_param_set12"
    bar = ProgressBar(label, out)
    bar.stage("training")
    for step in range(2001):
        bar.update(training(step, total=2000, eta=3725.0))
    bar.close(f"{label}: finished (accuracy 0.900)")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith(": finished (accuracy 0.900)\n")
    draws = [d.removeprefix("\x1b[K") for d in text.split("\r") if d]
    assert len(draws) < 100  # redrawn at most every REDRAW_SECONDS, not 2000 times
    assert all(len(d) <= 99 for d in draws[:-1]), "a bar wider than the terminal would wrap and scroll"
    assert any("step 0/2000" in d and "ETA 1 h 02 min" in d for d in draws)
    last_bar = draws[-2]
    assert "[####################] 100% step 2000/2000 loss 0.6733" in last_bar
    # the name is shortened in the middle, never the numbers
    assert last_bar.startswith("[1/8] deb") and "…" in last_bar and last_bar.endswith("ETA 1 h 02 min")

    monkeypatch.setenv("COLUMNS", "60")  # narrower still: the bar itself gives way before the numbers
    bar.stage("training")
    narrow = out.getvalue().rsplit("\r", 1)[-1].removeprefix("\x1b[K")
    assert len(narrow) <= 59 and "[#" not in narrow and narrow.endswith("loss 0.6733 ETA 1 h 02 min")


def test_progress_text_says_what_is_known():
    assert progress_text(training(5, loss=None, eta=None)) == "25% step 5/20 epoch 0.50 118 samples/s"
    assert progress_text(Progress(stage="loading model")) == ""
    assert [duration_text(s) for s in (4.4, 185, 7440)] == ["4 s", "3 min 05 s", "2 h 04 min"]


@pytest.mark.parametrize(("metric", "value", "baseline", "expected"), [
    ("accuracy", 0.480, 0.516, ("accuracy 0.480, 0.036 BELOW its pretrained baseline (0.516): fine-tuning made it "
                                "worse; check that its training loss fell")),
    ("accuracy", 0.5001, 0.5, "accuracy 0.500, the same as its pretrained baseline (0.500): fine-tuning did not help"),
    ("accuracy", 0.912, 0.500, "accuracy 0.912, 0.412 above its pretrained baseline (0.500)"),
    ("eval_loss", 0.70, 0.66, "eval_loss 0.700, 0.040 ABOVE its pretrained baseline (0.660): fine-tuning made it"),
    ("eval_loss", 0.30, 0.66, "eval_loss 0.300, 0.360 below its pretrained baseline (0.660)"),
    ("f1", 0.7, None, "f1 0.700 (no pretrained baseline evaluated to compare with)"),
])
def test_the_verdict_on_the_baseline_is_plain(metric, value, baseline, expected):
    assert baseline_verdict(metric, value, baseline).startswith(expected)


def _spec(kind: str, name: str, model: str = "/m/deberta-v3-base") -> RunSpec:
    return RunSpec(kind=kind, experiment_name="/Users/t/E", run_name=name, base_model=model,
                   validation_path="/d/test.csv", output_dir="/o")


def test_the_summary_says_when_the_best_fine_tune_is_worse_than_its_baseline():
    summary = ExperimentSummary("/Users/t/E", "1")
    for spec, accuracy in ((_spec("baseline", "deberta_pretrained_baseline"), 0.516),
                           (_spec("fine_tune", "deberta_full_param_set1"), 0.480),
                           (_spec("fine_tune", "deberta_full_param_set2"), 0.455),
                           (_spec("baseline", "bert_pretrained_baseline", "/m/bert"), 0.9)):
        summary.results.append(RunResult(f"id-{spec.run_name}", spec.run_name, "FINISHED", {"accuracy": accuracy}))
        summary.specs.append(spec)
    summary.results.append(RunResult("id-x", "bert_full_param_set1", "FAILED", {}, "out of memory"))
    summary.specs.append(_spec("fine_tune", "bert_full_param_set1", "/m/bert"))
    text = str(summary)
    assert ("Best fine-tune: deberta_full_param_set1, accuracy 0.480, 0.036 BELOW its pretrained baseline (0.516): "
            "fine-tuning made it worse") in text
    assert text.splitlines()[0] == "Experiment /Users/t/E: 4 run(s) finished, 1 failed."
