"""Packing decisions against memory figures: how many fine-tunes share one GPU."""

from __future__ import annotations

import pytest

from core import packing

GIB = 2**30
BASE = packing.Shape(parameters=184_000_000, hidden=768, layers=12, heads=12, disentangled=True)  # DeBERTa-v3-base
H100, A10 = 80 * GIB, 24 * GIB


def how_many(need: int, total: int, limit: int = 8) -> int:
    running: list[int] = []
    while packing.fits(need, running, total, limit=limit):
        running.append(need)
    return len(running)


def test_estimate_for_deberta_v3_base():
    b32 = packing.estimate_bytes(BASE, 32, 256)
    b128 = packing.estimate_bytes(BASE, 128, 256)
    assert 8 * GIB < b32 < 14 * GIB  # 2.9 GiB of weights and AdamW states, ~7 GiB of activations
    assert 28 * GIB < b128 < 40 * GIB
    assert packing.estimate_bytes(BASE, 32, 256, half_precision=False) > b32
    assert how_many(b32, H100) == 7 and how_many(b32, H100, limit=4) == 4
    assert how_many(b128, H100) == 2
    assert how_many(b32, A10) == 2
    assert how_many(b128, A10) == 1  # an empty GPU always takes a job, even one that may not fit


def test_measured_peak_wins_and_scales_with_tokens():
    measured = (6 * GIB, 32 * 256)  # an earlier run of the same base model peaked at 6 GiB at batch 32 x 256
    same = packing.from_measured(*measured, 32 * 256, BASE)
    assert same < packing.estimate_bytes(BASE, 32, 256)
    assert packing.from_measured(*measured, 64 * 256, BASE) > same
    hyper = {"per_device_train_batch_size": 32, "max_length": 256}
    assert packing.job_bytes(hyper, "/no/such/model", measured) == packing.from_measured(*measured, 32 * 256, None)
    assert packing.job_bytes(hyper, "/no/such/model") is None  # unknown: it will only run on an empty GPU


def test_who_may_share():
    need = 10 * GIB
    assert packing.fits(None, [], H100)  # an empty GPU takes anything
    assert not packing.fits(None, [need], H100)
    assert not packing.fits(need, [None], H100)
    assert not packing.fits(need, [need], H100, alone=True)  # requeued after running out of memory
    assert not packing.fits(need, [need], H100, running_alone=True)
    assert packing.fits(need, [need], H100)
    assert not packing.fits(need, [need], None)  # GPU memory unknown: one job per GPU


def test_cap_from_environment(monkeypatch):
    monkeypatch.setenv("TUNEBOARD_JOBS_PER_GPU", "2")
    assert packing.cap() == 2
    assert not packing.fits(GIB, [GIB, GIB], H100)
    monkeypatch.setenv("TUNEBOARD_JOBS_PER_GPU", "lots")
    assert packing.cap() == 4


def test_model_shape_counts_parameters_from_safetensors(bert_model):
    from transformers import AutoModelForSequenceClassification

    shape = packing.model_shape(bert_model)
    model = AutoModelForSequenceClassification.from_pretrained(bert_model)
    assert shape.parameters == pytest.approx(sum(p.numel() for p in model.parameters()), rel=0.02)
    assert (shape.hidden, shape.layers, shape.disentangled) == (64, 2, False)


def test_worker_packs_by_memory_and_a_requeued_job_waits_for_an_empty_gpu(store, tmp_path, bert_model):
    """The worker's own slot choice on a pretend 2-slot GPU (no job process is started), and a packed job
    that ran out of memory going back to the queue marked to run alone."""
    from conftest import copy_data

    from core.grid import GridSpec
    from core.jobs import JobQueue, JobStatus
    from core.jobs.runner import _queue_alone
    from core.worker import Slot, Worker

    copy_data(tmp_path / "data")
    queue = JobQueue(store)
    spec = GridSpec(base_name="Pack", data_src="Demo", dataset_versions=("train_sample.csv",),
                    hyperparameters=({"n_epochs": 1}, {"n_epochs": 2}), base_model_versions=(bert_model,),
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "data" / "{data_version}"),
                    validation_file=str(tmp_path / "data" / "test.csv"), evaluate_pretrained_model=False,
                    user_id="tester")
    first, second = queue.submit(spec, start=False)
    worker = Worker(store, slots=[Slot("gpu0.0", "0"), Slot("gpu0.1", "0")], spares=False)
    worker.gpu_bytes = {"0": 80 * GIB}
    need = packing.job_bytes({"per_device_train_batch_size": 16, "max_length": 128}, bert_model)
    assert need is not None and need < GIB  # the tiny model: weights, a small batch, the CUDA context

    busy = worker._slot_for(queue.client.get_run(first.run_id), list(worker.slots))
    busy.job_id = first.run_id  # as if started
    taken = worker._slot_for(queue.client.get_run(second.run_id), [s for s in worker.slots if s is not busy])
    assert taken is not None and taken.gpu == "0"  # both fit: packed two to the GPU

    queue.client.update_run(second.run_id, status="RUNNING")
    queue.client.set_tag(second.run_id, packing.SHARED_TAG, "2")
    _queue_alone(second.run_id, "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    again = queue.client.get_run(second.run_id)
    assert again.info.status == JobStatus.SCHEDULED.value and packing.RUN_ALONE_TAG in again.data.tags
    assert "ran out of GPU memory while sharing the GPU" in again.data.tags[packing.RUN_ALONE_TAG]
    free = [s for s in worker.slots if s is not busy]
    assert worker._slot_for(again, free) is None  # waits while the GPU has another job
    busy.job_id, busy.need = None, None
    assert worker._slot_for(again, list(worker.slots)) is not None  # and starts once it is empty

    # an earlier run's measured peak, once there is one, replaces the estimate
    name = again.data.tags["base_model_name"]
    assert worker._measured_peak(name) is None
    queue.client.log_metric(first.run_id, "gpu_memory_peak_mb", 300.0)
    peak, tokens = worker._measured_peak(name)
    assert peak == 300 * 2**20 and tokens == 16 * 128
