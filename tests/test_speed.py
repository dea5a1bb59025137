"""GPU speed machinery, checked on CPU: bucketed padding, compilation and its fallback, cost figures."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from core import speed
from tests.conftest import DATA

HYPER = {"num_train_epochs": 1, "learning_rate": 5e-4, "per_device_train_batch_size": 8, "max_length": 64,
         "max_steps": 12, "seed": 7,
         "logging_steps": 2}


def _run(tmp_path, model: str, name: str):
    from core.grid import RunSpec
    from core.training.run import execute

    spec = RunSpec(kind="fine_tune", experiment_name="/Users/tester/speed", run_name=name, base_model=model,
                   validation_path=str(DATA / "test.csv"), output_dir=str(tmp_path / name),
                   hyperparameters=HYPER, dataset_version="v1", train_path=str(DATA / "train_sample.csv"))
    result = execute(spec)
    assert result.status == "FINISHED", result.error
    run = MlflowClient().get_run(result.run_id)
    return run, [m.value for m in MlflowClient().get_metric_history(result.run_id, "loss")]


@pytest.fixture(scope="module")
def no_dropout_model(bert_model, tmp_path_factory) -> str:
    """The tiny model without dropout: padding is masked, so bucketed and dynamic padding must then agree
    (with dropout, a different padded shape draws different dropout masks)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("models") / "bert-no-dropout"
    model = AutoModelForSequenceClassification.from_pretrained(bert_model, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(bert_model).save_pretrained(path)
    return str(path)


def test_bucket_edges():
    assert speed.bucket_edges(256, 64) == [64, 128, 192, 256]
    assert speed.bucket_edges(100, 64) == [64, 100]
    assert speed.bucket_edges(256, 0) == []


def test_collator_keeps_order_and_pads_to_the_next_edge(bert_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert_model)
    features = [{"input_ids": [5] * n, "attention_mask": [1] * n, "token_type_ids": [0] * n, "labels": i}
                for i, n in enumerate((3, 40, 17))]
    batch = speed.BucketCollator(tokenizer, [32, 64, 128])(features)
    assert batch["input_ids"].shape == (3, 64)
    assert batch["labels"].tolist() == [0, 1, 2]  # the order it was given
    assert batch["attention_mask"].sum(1).tolist() == [3, 40, 17]
    assert int(batch["input_ids"][0, 3]) == tokenizer.pad_token_id
    assert speed.BucketCollator(tokenizer, [], 8)(features)["input_ids"].shape == (3, 40)
    assert speed.BucketCollator(tokenizer)(features)["input_ids"].shape == (3, 40)


def test_plan_keeps_user_choices(monkeypatch):
    monkeypatch.delenv("TUNEBOARD_COMPILE", raising=False)
    fields = {"torch_compile", "torch_compile_mode", "dataloader_persistent_workers"}
    cpu = speed.plan({}, max_length=128, total_steps=1000, cuda=False, fields=fields)
    assert cpu.compile_mode is None and cpu.edges == [] and cpu.arguments["dataloader_num_workers"] == 0
    gpu = speed.plan({"per_device_train_batch_size": 32}, max_length=256, total_steps=5000, cuda=True, fields=fields)
    assert gpu.compile_mode == "default" and gpu.edges == [64, 128, 192, 256]
    assert gpu.arguments["per_device_eval_batch_size"] == 64 and gpu.arguments["dataloader_persistent_workers"]
    short = speed.plan({}, max_length=256, total_steps=1000, cuda=True, fields=fields)
    assert short.compile_mode is None and short.edges == []  # compiling would not pay
    mine = speed.plan({"per_device_eval_batch_size": 4, "torch_compile": False, "dataloader_num_workers": 0},
                      max_length=256, total_steps=5000, cuda=True, fields=fields)
    assert mine.compile_mode is None and "per_device_eval_batch_size" not in mine.arguments
    assert "dataloader_persistent_workers" not in mine.arguments  # would be refused with no workers
    monkeypatch.setenv("TUNEBOARD_COMPILE", "reduce-overhead")
    assert speed.plan({}, max_length=64, total_steps=1, cuda=True, fields=fields).compile_mode == "reduce-overhead"
    old = speed.plan({}, max_length=64, total_steps=1, cuda=True, fields={"torch_compile_mode"})
    assert old.compile_mode is None  # a transformers without the field: eager, not an error


def test_bucketed_padding_trains_to_the_same_loss(store, tmp_path, no_dropout_model, monkeypatch):
    monkeypatch.setenv("TUNEBOARD_COMPILE", "off")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "0")
    plain, plain_loss = _run(tmp_path, no_dropout_model, "dynamic")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "32")
    bucketed, bucketed_loss = _run(tmp_path, no_dropout_model, "bucketed")
    assert bucketed.data.tags[speed.BUCKETS_TAG] == "32,64" and plain.data.tags[speed.BUCKETS_TAG] == "none"
    assert bucketed.data.tags[speed.COMPILE_TAG] == "off"
    assert len(plain_loss) == len(bucketed_loss) >= 3
    assert bucketed_loss == pytest.approx(plain_loss, rel=2e-3)
    assert bucketed.data.metrics["train_loss"] == pytest.approx(plain.data.metrics["train_loss"], rel=2e-3)
    assert bucketed.data.metrics["train_samples_per_second_steady"] > 0


def test_failed_compilation_falls_back_to_eager_and_says_so(store, tmp_path, no_dropout_model, monkeypatch):
    """A real compile failure: inductor's C++ compiler is missing (as on a machine without a toolchain)."""
    import torch

    torch._dynamo.reset()
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setenv("TUNEBOARD_COMPILE", "default")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "32")
    run, loss = _run(tmp_path, no_dropout_model, "fallback")
    assert run.data.tags[speed.COMPILE_TAG].startswith("failed, trained eagerly: ")
    monkeypatch.setenv("TUNEBOARD_COMPILE", "off")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "0")
    torch._dynamo.reset()
    _, eager_loss = _run(tmp_path, no_dropout_model, "eager")
    assert loss[-len(eager_loss):] == pytest.approx(eager_loss, rel=2e-3)


@pytest.mark.slow
def test_compiled_path_trains_to_the_same_loss(store, tmp_path, no_dropout_model, monkeypatch):
    import torch

    torch._dynamo.reset()
    monkeypatch.setenv("TUNEBOARD_COMPILE", "off")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "0")
    _, eager_loss = _run(tmp_path, no_dropout_model, "eager")
    monkeypatch.setenv("TUNEBOARD_COMPILE", "default")
    monkeypatch.setenv("TUNEBOARD_BUCKET_STEP", "32")
    run, loss = _run(tmp_path, no_dropout_model, "compiled")
    assert run.data.tags[speed.COMPILE_TAG] == "default"
    assert loss == pytest.approx(eager_loss, rel=1e-2)
