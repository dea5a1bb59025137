"""A grid's end, from what its finished jobs measured (issue 21): core.jobs.eta on jobs as the queue lists them."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.grid import RunSpec
from core.jobs.eta import grid_etas
from core.jobs.model import Job, JobStatus
from core.progress import Progress

NOW = 1_000_000.0


def files(tmp_path: Path) -> tuple[Path, Path]:
    train, validation = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "x,a\n" * 100, encoding="utf-8")
    validation.write_text("text,label\n" + "y,b\n" * 40, encoding="utf-8")
    return train, validation


def job(run_id: str, spec: RunSpec, status: JobStatus, *, grid: str = "g1", start: float | None = None,
        end: float | None = None, figures: dict | None = None, eta: float | None = None, queued: float = 0.0) -> Job:
    return Job(run_id=run_id, run_name=spec.run_name, experiment_id="1", status=status, backend="local",
               grid_id=grid, priority=0, queued_at=queued, start_time=start, end_time=end,
               progress=Progress(stage="training", eta_seconds=eta) if eta else None, reason=None, retry_of=None,
               slot=None, kind=spec.kind, spec=spec.to_json(), figures=figures or {})


def tune(train: Path, validation: Path, name: str, epochs: int = 1, model: str = "/m/demo-bert-tiny",
         batch: int = 10) -> RunSpec:
    return RunSpec(kind="fine_tune", experiment_name="e", run_name=name, base_model=model,
                   validation_path=str(validation), output_dir="out",
                   hyperparameters={"num_train_epochs": epochs, "per_device_train_batch_size": batch},
                   dataset_version="train.csv", train_path=str(train), param_set=1)


def test_a_grid_ends_when_its_last_job_does_as_the_slots_will_run_them(tmp_path):
    train, validation = files(tmp_path)
    # finished: 100 samples in 10 s of train_runtime, which holds its one 40-example evaluation (2 s): 10 steps
    # of batch 10 in 8 s, 0.8 s a step; 15 s in all: 5 s outside
    done = job("a", tune(train, validation, "a"), JobStatus.FINISHED, start=NOW - 100, end=NOW - 85,
               figures={"train_runtime": 10.0, "train_samples_per_second": 10.0, "eval_runtime": 2.0,
                        "eval_samples_per_second": 20.0})
    running = job("b", tune(train, validation, "b"), JobStatus.RUNNING, start=NOW - 5)
    queued = [job(c, tune(train, validation, c, epochs=2), JobStatus.SCHEDULED, queued=i)
              for i, c in enumerate("cd")]
    one = grid_etas([done, running, *queued], capacity=1, now=NOW)["g1"]
    # b: 15 s expected, 5 s run -> 10 s left; then c and d one after another: 5 + 20 x 0.8 + 2 x 2 = 25 s each
    assert (one.jobs, one.left, one.running) == (4, 3, 1)
    assert one.ends_at - NOW == pytest.approx(10 + 25 + 25)
    two = grid_etas([done, running, *queued], capacity=2, now=NOW)["g1"]
    assert two.ends_at - NOW == pytest.approx(max(10 + 25, 25))  # c starts now on the free slot, d after b
    assert "3 of 4 jobs left (1 running); it should end at" in one.sentence() and "in 1 min" in one.sentence()


def test_a_running_job_has_at_least_what_its_progress_says_and_a_grid_waits_for_those_ahead(tmp_path):
    train, validation = files(tmp_path)
    done = job("a", tune(train, validation, "a"), JobStatus.FINISHED, start=NOW - 100, end=NOW - 85,
               figures={"train_runtime": 10.0, "train_samples_per_second": 10.0, "eval_runtime": 2.0,
                        "eval_samples_per_second": 20.0})
    slow = job("b", tune(train, validation, "b"), JobStatus.RUNNING, start=NOW - 14, eta=40.0)
    ahead = job("c", tune(train, validation, "c"), JobStatus.SCHEDULED, grid="g1", queued=1)
    later = job("d", tune(train, validation, "d"), JobStatus.SCHEDULED, grid="g2", queued=2)
    etas = grid_etas([done, slow, ahead, later], capacity=1, now=NOW)
    assert etas["g1"].ends_at - NOW == pytest.approx(40 + 15)  # its progress says 40 s more, not 1
    assert etas["g2"].ends_at - NOW == pytest.approx(40 + 15 + 15)  # after g1's queued job


def test_a_grid_with_nothing_finished_to_learn_from_says_so(tmp_path):
    train, validation = files(tmp_path)
    eta = grid_etas([job("a", tune(train, validation, "a"), JobStatus.SCHEDULED)], capacity=None, now=NOW)["g1"]
    assert eta.ends_at is None and "its end is estimated once a job like each of its own has finished" in \
        eta.sentence()
    assert grid_etas([job("a", tune(train, validation, "a"), JobStatus.FINISHED, start=1, end=2)], 1) == {}


def test_a_fine_tune_learns_its_speed_from_runs_with_its_batch_first(tmp_path):
    """On a CPU, samples per second depend on the batch: a batch-20 job is timed by the batch-20 run."""
    train, validation = files(tmp_path)
    figures = {"train_runtime": 10.0, "eval_runtime": 2.0, "eval_samples_per_second": 20.0}
    small = job("a", tune(train, validation, "a"), JobStatus.FINISHED, start=NOW - 100, end=NOW - 85,
                figures={**figures, "train_samples_per_second": 10.0})
    big = job("b", tune(train, validation, "b", batch=20), JobStatus.FINISHED, start=NOW - 80, end=NOW - 70,
              figures={**figures, "train_samples_per_second": 25.0, "train_runtime": 4.0})
    queued = job("c", tune(train, validation, "c", batch=20), JobStatus.SCHEDULED)
    eta = grid_etas([small, big, queued], capacity=1, now=NOW)["g1"]
    # 100 samples at 25/s (4 s) + one evaluation (2 s) + outside, the median of 3 s and 4 s (4 s)
    assert eta.ends_at - NOW == pytest.approx(4 + 2 + 4)


def test_after_its_baselines_a_grid_knows_its_end_from_their_evaluation_speed(tmp_path):
    """Baselines first: once they have run, a fine-tune's training speed is the baseline's evaluation speed over
    how much faster evaluating is than training (another model's fine-tune says how much, else a constant)."""
    from core.training.estimate import EVAL_PER_TRAIN

    train, validation = files(tmp_path)
    baseline = RunSpec(kind="baseline", experiment_name="e", run_name="base", base_model="/m/demo-bert-tiny",
                       validation_path=str(validation), output_dir="out")
    done = job("a", baseline, JobStatus.FINISHED, start=NOW - 100, end=NOW - 95,  # 5 s: 2 evaluating, 3 outside
               figures={"eval_runtime": 2.0, "eval_samples_per_second": 20.0})
    queued = job("b", tune(train, validation, "b"), JobStatus.SCHEDULED)
    eta = grid_etas([done, queued], capacity=1, now=NOW)["g1"]
    # 100 samples at 20 / EVAL_PER_TRAIN per second, one 40-example evaluation at 20/s (2 s), 3 s outside
    assert eta.ends_at - NOW == pytest.approx(3 + 100 / (20.0 / EVAL_PER_TRAIN) + 2)
    other_baseline = RunSpec(kind="baseline", experiment_name="e", run_name="base",
                             base_model="/m/demo-deberta-v3-tiny", validation_path=str(validation), output_dir="out")
    cold = job("d", other_baseline, JobStatus.FINISHED, grid="g0", start=NOW - 120, end=NOW - 115,
               figures={"eval_runtime": 2.0, "eval_samples_per_second": 30.0})
    other = job("c", tune(train, validation, "c", model="/m/demo-deberta-v3-tiny"), JobStatus.FINISHED,
                grid="g0", start=NOW - 90, end=NOW - 70,
                figures={"train_runtime": 10.0, "train_samples_per_second": 10.0, "eval_runtime": 2.0,
                         "eval_samples_per_second": 90.0})
    eta = grid_etas([done, cold, other, queued], capacity=1, now=NOW)["g1"]
    # the other model trains 10 steps in 8 s (0.8 s a step at batch 10), and its baseline evaluated 1.5x as fast as
    # this one's: baselines against baselines (a fine-tune's warm evaluations are faster than a cold first pass).
    # Of its step, the forward and backward passes (3 x 10 examples at its fine-tune's 90/s: 1/3 s) are 1.5x slower
    # here; the rest (0.8 - 1/3 s) is the same. Outside training, the other model's fine-tune's 10 s (saving and
    # logging a model), not this model's baseline's 3 s
    assert eta.ends_at - NOW == pytest.approx(10 + 10 * (0.8 - 1 / 3 + 1 / 3 * 1.5) + 2)


def test_a_model_yet_to_fine_tune_borrows_the_compute_of_a_step_not_its_fixed_cost(tmp_path):
    """Mid-grid the demo DeBERTa's fine-tunes were timed by the demo BERT's step times 2.5x, as its baseline
    evaluated 2.5x slower, while its steps took 0.7-1.5x theirs: a tiny model's CPU step is mostly fixed cost (the
    optimizer, autograd, loading the batch), and only the forward and backward passes scale with the model
    (bench_grid --eta: +40% to +171% of the time left after jobs 3-6)."""
    train, validation = files(tmp_path)

    def baseline(name: str, model: str, per_second: float, start: float) -> Job:
        spec = RunSpec(kind="baseline", experiment_name="e", run_name=name, base_model=model,
                       validation_path=str(validation), output_dir="out")
        return job(name, spec, JobStatus.FINISHED, start=start, end=start + 4 + 40 / per_second,
                   figures={"eval_runtime": 40 / per_second, "eval_samples_per_second": per_second})

    bert = baseline("a", "/m/demo-bert-tiny", 100.0, NOW - 100)
    deberta = baseline("b", "/m/demo-deberta-v3-tiny", 40.0, NOW - 95)  # 2.5x slower: 1 s, and 4 s outside
    # 10 steps of batch 10 in 10 s (train_runtime holds its 0.8 s evaluation): 1 s a step, of which the forward
    # and backward passes are 3 x 10 examples at the fastest its evaluations went (its baseline's 100/s, not its
    # fine-tune's 50/s, evaluated while the machine was busier): 0.3 s
    # (and 6 s outside training: a fine-tune saves and logs a model, which the DeBERTa's baseline's 4 s did not)
    tuned = job("c", tune(train, validation, "c"), JobStatus.FINISHED, start=NOW - 90, end=NOW - 73.2,
                figures={"train_runtime": 10.8, "train_samples_per_second": 100 / 10.8, "eval_runtime": 0.8,
                         "eval_samples_per_second": 50.0})
    queued = job("d", tune(train, validation, "d", model="/m/demo-deberta-v3-tiny"), JobStatus.SCHEDULED)
    eta = grid_etas([bert, deberta, tuned, queued], capacity=1, now=NOW)["g1"]
    assert eta.ends_at - NOW == pytest.approx(6 + 10 * (0.7 + 0.3 * 2.5) + 1)  # 21.5 s, not 4 + 10 x 2.5 + 1


def test_a_step_is_timed_by_all_the_steps_measured_at_its_batch(tmp_path):
    """Two runs at one batch: their seconds over their steps, so a short run timed at a busy moment does not
    outweigh a run with ten times its steps (the upper of two medians took the demo BERT's 100-step run's 0.65 s
    a step over its 500-step run's 0.34)."""
    train, validation = files(tmp_path)
    figures = {"eval_runtime": 2.0, "eval_samples_per_second": 20.0}
    # 100 rows x 10 epochs at batch 10: 100 steps in 30 s (+ 10 evaluations); then 10 steps in 9 s (+ 1)
    long = job("a", tune(train, validation, "a", epochs=10), JobStatus.FINISHED, start=NOW - 200, end=NOW - 145,
               figures={**figures, "train_runtime": 50.0, "train_samples_per_second": 1000 / 50.0})
    short = job("b", tune(train, validation, "b"), JobStatus.FINISHED, start=NOW - 140, end=NOW - 125,
                figures={**figures, "train_runtime": 11.0, "train_samples_per_second": 100 / 11.0})
    queued = job("c", tune(train, validation, "c"), JobStatus.SCHEDULED)
    eta = grid_etas([long, short, queued], capacity=1, now=NOW)["g1"]
    outside = sorted([5.0, 4.0])[1]
    assert eta.ends_at - NOW == pytest.approx(outside + 10 * (30 + 9) / 110 + 2)  # not 10 x 0.9


def test_a_model_with_one_batch_measured_adds_what_another_models_examples_add(tmp_path):
    """The demo DeBERTa's batch-16 runs were timed at its batch-8 step (0.28 s) while they took 0.38-0.45 s: the
    demo BERT, measured at both, says what 8 more examples add to a step (bench_grid --eta: -33% after job 7)."""
    train, validation = files(tmp_path)
    figures = {"eval_runtime": 2.0, "eval_samples_per_second": 20.0}

    def tuned(name: str, model: str, batch: int, training: float, start: float) -> Job:
        return job(name, tune(train, validation, name, model=model, batch=batch), JobStatus.FINISHED, start=start,
                   end=start + training + 5, figures={**figures, "train_runtime": training + 2,
                                                      "train_samples_per_second": 100 / (training + 2)})

    bert = "/m/demo-bert-tiny"
    deberta = "/m/demo-deberta-v3-tiny"
    # the BERT: 10 steps of 10 in 5 s (0.5 s a step), 5 steps of 20 in 4 s (0.8 s): 0.03 s more per example
    # the DeBERTa: 10 steps of 10 in 6 s (0.6 s a step); 3 s outside training, one 2 s evaluation
    done = [tuned("a", bert, 10, 5.0, NOW - 100), tuned("b", bert, 20, 4.0, NOW - 80),
            tuned("c", deberta, 10, 6.0, NOW - 60)]
    queued = job("d", tune(train, validation, "d", model=deberta, batch=20), JobStatus.SCHEDULED)
    eta = grid_etas([*done, queued], capacity=1, now=NOW)["g1"]
    assert eta.ends_at - NOW == pytest.approx(3 + 5 * (0.6 + 10 * 0.03) + 2)  # not 5 x 0.6

def test_a_model_yet_to_fine_tune_makes_as_many_examples_of_a_file_as_another_did(tmp_path):
    """Calls labelled with topics become several pairs each: another model's fine-tune of the same file says
    how many, where a row counted as one example made a model's first fine-tune four times too short."""
    train, validation = files(tmp_path)

    def baseline(name: str, model: str, start: float) -> Job:
        spec = RunSpec(kind="baseline", experiment_name="e", run_name=name, base_model=model,
                       validation_path=str(validation), output_dir="out")
        return job(name, spec, JobStatus.FINISHED, start=start, end=start + 5,
                   figures={"eval_runtime": 2.0, "eval_samples_per_second": 20.0})

    # 100 rows made 400 pairs: 40 steps of batch 10 in 32 s (+ one 2 s evaluation)
    pairs = job("c", tune(train, validation, "c"), JobStatus.FINISHED, start=NOW - 90, end=NOW - 53,
                figures={"train_runtime": 34.0, "train_samples_per_second": 400 / 34.0, "eval_runtime": 2.0,
                         "eval_samples_per_second": 20.0})
    queued = job("d", tune(train, validation, "d", model="/m/demo-deberta-v3-tiny"), JobStatus.SCHEDULED)
    eta = grid_etas([baseline("a", "/m/demo-bert-tiny", NOW - 100), baseline("b", "/m/demo-deberta-v3-tiny",
                                                                                NOW - 95), pairs, queued],
                    capacity=1, now=NOW)["g1"]
    # both baselines evaluated at 20/s: the other model's 0.8 s a step as it is; 3 s outside, one 2 s evaluation
    assert eta.ends_at - NOW == pytest.approx(3 + 40 * 0.8 + 2)  # 40 steps, not 10


def test_a_batch_not_yet_measured_is_timed_by_its_steps_not_by_another_batchs_samples_per_second(tmp_path):
    """Mid-grid, the demo grid's batch-16 set was timed at the batch-8 set's samples per second, twice too long
    (bench_grid --eta: +55% to +80% of the time left): on a CPU a small model's step costs about the same at 8
    and 16, so a batch is timed by its optimizer steps, and once two batches are measured, by a line through them."""
    train, validation = files(tmp_path)
    # 100 rows at batch 8: 12.5 steps in 10 s of train_runtime less one 2 s evaluation: 0.64 s a step
    eight = job("a", tune(train, validation, "a", batch=8), JobStatus.FINISHED, start=NOW - 100, end=NOW - 85,
                figures={"train_runtime": 10.0, "train_samples_per_second": 10.0, "eval_runtime": 2.0,
                         "eval_samples_per_second": 20.0})
    sixteen = job("b", tune(train, validation, "b", batch=16), JobStatus.SCHEDULED)
    eta = grid_etas([eight, sixteen], capacity=1, now=NOW)["g1"]
    assert eta.ends_at - NOW == pytest.approx(5 + 6.25 * 0.64 + 2)  # not 5 + 8 + 2: half the steps
    # a second batch measured: seconds per step on the line through (8, 0.64) and (32, 1.6); at 16: 0.96
    wide = job("c", tune(train, validation, "c", batch=32), JobStatus.FINISHED, start=NOW - 80, end=NOW - 70,
               figures={"train_runtime": 7.0, "train_samples_per_second": 100 / 7.0, "eval_runtime": 2.0,
                        "eval_samples_per_second": 20.0})
    eta = grid_etas([eight, wide, sixteen], capacity=1, now=NOW)["g1"]
    outside = sorted([5.0, 3.0])[1]  # the median of the two runs' time outside training
    assert eta.ends_at - NOW == pytest.approx(outside + 6.25 * 0.96 + 2)
