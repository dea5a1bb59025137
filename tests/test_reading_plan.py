"""What a grid will read, before launch (core.training.reading), and the estimate that counts it."""

from __future__ import annotations

import csv

import pytest

from core.demo import make_calls, make_long_calls
from core.grid import GridSpec
from core.training import estimate, reading


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _grid(tmp_path, model, train_rows, validation_rows, pairs=None, **hyper):
    _write(tmp_path / "train.csv", train_rows)
    _write(tmp_path / "val.csv", validation_rows)
    return GridSpec(base_name="R", data_src="D", dataset_versions=("train.csv",),
                    hyperparameters=({"n_epochs": 2, **hyper},), base_model_versions=(str(model),),
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
                    validation_file=str(tmp_path / "val.csv"), user_id="u", evaluate_pretrained_model=True,
                    columns={"text": "transcript", "label": "topic"}, topic_pairs={"negatives": 2, **(pairs or {})})


def test_long_calls_are_counted_in_windows_rows_and_passes(tmp_path, demo_models):
    model = demo_models["demo-bert-tiny"]
    grid = _grid(tmp_path, model, make_long_calls(6, 1, "T", min_words=300, max_words=400),
                 make_long_calls(4, 2, "V", min_words=300, max_words=400), {"train_window": None}, max_length=128)
    read = reading.read_grid(grid, tokenizer_of=reading.tokenizer_of)
    validation = read.for_file("demo-bert-tiny", "val.csv")
    train = read.for_file("demo-bert-tiny", "train.csv")
    assert validation.texts == 4 and train.texts == 6
    assert validation.tokens_median > 300 and validation.windows_max > 2 and validation.windows_mean > 2
    assert validation.budget < 128 and validation.max_length == 128
    # topic pairs: each call's true topics and two others; one window each per epoch (top_windows 1), and every
    # window of those pairs scored to choose it
    pairs = sum(len(r["topic"].split("; ")) + 2 for r in make_long_calls(6, 1, "T", min_words=300, max_words=400))
    assert train.rows == pairs and train.choosing == pytest.approx(pairs * train.windows_mean, rel=0.5)
    assert read.topic_passes("val.csv") == validation.windows * read.topics
    # the estimate grows with what is read: long calls cost more than short ones of the same count
    (tmp_path / "short").mkdir()
    short = _grid(tmp_path / "short", model, make_calls(6, 1, "T"), make_calls(4, 2, "V"), max_length=128)
    short_read = reading.read_grid(short, tokenizer_of=reading.tokenizer_of)
    assert short_read.for_file("demo-bert-tiny", "val.csv").windows_max == 1
    long_time = estimate.estimate(grid, lambda name: 100.0, reading=read).seconds
    short_time = estimate.estimate(short, lambda name: 100.0, reading=short_read).seconds
    assert long_time > short_time + 1


def test_shorter_training_windows_and_hard_negatives_are_counted(tmp_path, demo_models):
    model = demo_models["demo-bert-tiny"]
    calls = make_long_calls(6, 1, "T", min_words=300, max_words=400)
    plain = reading.read_grid(_grid(tmp_path, model, calls, calls[:3], {"train_window": None}, max_length=128),
                              tokenizer_of=reading.tokenizer_of)
    short = reading.read_grid(_grid(tmp_path, model, calls, calls[:3], {"train_window": 32, "hard_negatives": 1},
                                    max_length=128), tokenizer_of=reading.tokenizer_of)
    before, after = plain.for_file("demo-bert-tiny", "train.csv"), short.for_file("demo-bert-tiny", "train.csv")
    true = sum(len(r["topic"].split("; ")) for r in calls)
    # each negative pair trains on one window more; choosing scores every one of the shorter windows
    assert before.rows == true + 12 and after.rows == true + 24
    assert after.choosing > 2 * before.choosing
    # the validation file is read as before: evaluation reads windows of max_length
    assert short.for_file("demo-bert-tiny", "val.csv") == plain.for_file("demo-bert-tiny", "val.csv")
    # truncate: the first window of max_length only, in training too (one window a pair: nothing to choose)
    cut = reading.read_grid(_grid(tmp_path, model, calls, calls[:3], {"train_window": 32}, max_length=128,
                                  truncate=True), tokenizer_of=reading.tokenizer_of).for_file("demo-bert-tiny",
                                                                                             "train.csv")
    assert cut.rows == true + 12 and cut.choosing == 0


def test_reading_follows_the_first_sets_max_length_and_overlap(tmp_path, demo_models):
    model = demo_models["demo-bert-tiny"]
    rows = make_long_calls(3, 5, "T", min_words=300, max_words=300)
    wide = reading.read_grid(_grid(tmp_path, model, rows, rows, max_length=128), tokenizer_of=reading.tokenizer_of)
    narrow = reading.read_grid(_grid(tmp_path, model, rows, rows, max_length=64, window_overlap=0),
                               tokenizer_of=reading.tokenizer_of)
    assert narrow.for_file("demo-bert-tiny", "val.csv").windows > wide.for_file("demo-bert-tiny", "val.csv").windows


def test_the_speed_guessed_before_a_run_is_the_tiny_models_only_for_them(tmp_path):
    """The calls demo's encoder is named demo-... too, but it is a real model: it gets the other models' guess."""
    (tmp_path / "train.csv").write_text("text,label\na,x\n", encoding="utf-8")
    grid = GridSpec(base_name="R", data_src="D", dataset_versions=("train.csv",), hyperparameters=({"n_epochs": 1},),
                    base_model_versions=(str(tmp_path / "demo-bert-tiny"), str(tmp_path / "demo-minilm-nli")),
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
                    validation_file=str(tmp_path / "train.csv"), user_id="u")
    basis = estimate.estimate(grid, lambda name: None, rows_of=lambda path: 1).basis
    assert f"demo-bert-tiny: {estimate.GUESS_DEMO:.0f} samples/s" in basis
    assert f"demo-minilm-nli: {estimate.GUESS_OTHER:.0f} samples/s" in basis
