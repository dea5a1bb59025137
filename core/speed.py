"""GPU speed without changing what the user chose: bucketed padding, compilation, host-side defaults, costs.

None of this changes a hyperparameter. Batches keep the composition and order the Trainer draws (its own
sampler); each is padded only up to one of a few fixed lengths (bucket edges), so a compiled model sees a
handful of shapes instead of one per batch. Padding is masked, so the loss is the same.

Switches (environment, so an operator can flip them without code changes):

- ``TUNEBOARD_COMPILE``: ``default`` (the default on CUDA), ``reduce-overhead`` (CUDA graphs),
  ``max-autotune-no-cudagraphs``, or ``off`` (the default on CPU, where compiling does not pay).
  A user's own ``torch_compile`` / ``torch_compile_mode`` hyperparameters win.
- ``TUNEBOARD_COMPILE_MIN_STEPS`` (default 3000): runs with fewer optimizer steps are not compiled on the
  default setting. Measured on an H100 (DeBERTa-v3-base shape, Nov 2026): compiling cost about 110 s cold
  and 40 s from the inductor cache, and saved about 27 ms a step at batch 32 (361 -> 522 samples/s steady)
  and 110 ms at batch 128 (458 -> 754): it pays back after roughly 400-4,000 steps.
- ``TUNEBOARD_BUCKET_STEP``: bucket width in tokens (default 64 when compiling, else 0: pad each batch to its
  longest, a multiple of 8 on CUDA).
- ``TUNEBOARD_COMPILE_DYNAMIC`` (default 1): compile with symbolic batch and sequence sizes (see
  :func:`prepare_compile`).
- ``TUNEBOARD_DATALOADER_WORKERS`` (default 2 on CUDA, 0 on CPU).

When compilation fails, the run trains eagerly instead and carries the tag ``compile`` = ``failed: ...``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from core.packing import SHARED_TAG  # noqa: F401 - one of this module's tags, set by the worker

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
COMPILE_TAG = "compile"
BUCKETS_TAG = "bucket_edges"


def bucket_edges(max_length: int, step: int) -> list[int]:
    """The padded lengths a batch may take: multiples of ``step`` up to ``max_length`` (always the last edge)."""
    if step <= 0:
        return []
    edges = list(range(step, max_length, step))
    return [*edges, max_length]


class BucketCollator:
    """Pad a batch, in the order given, to the smallest bucket edge that holds its longest example.

    ``edges`` empty: pad to the longest, rounded up to ``multiple`` when set (what DataCollatorWithPadding
    does), so the CPU path keeps dynamic padding. Works on tokenized features (lists of ints) with NumPy,
    which is faster than ``tokenizer.pad``.
    """

    def __init__(self, tokenizer, edges: Sequence[int] = (), multiple: int | None = None):
        self.edges = sorted(edges)
        self.multiple = multiple
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.pad_values = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0, "special_tokens_mask": 1,
                           "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0) or 0}

    def length_for(self, longest: int) -> int:
        for edge in self.edges:
            if edge >= longest:
                return edge
        if self.multiple:
            return -(-longest // self.multiple) * self.multiple
        return longest

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import torch

        batch: dict[str, Any] = {}
        sequences = [k for k, v in features[0].items() if isinstance(v, (list, tuple, np.ndarray))]
        width = self.length_for(max(len(f[sequences[0]]) for f in features)) if sequences else 0
        for key in sequences:
            out = np.full((len(features), width), self.pad_values.get(key, 0), dtype=np.int64)
            for row, feature in enumerate(features):
                values = feature[key]
                if self.left:
                    out[row, width - len(values):] = values
                else:
                    out[row, :len(values)] = values
            batch[key] = torch.from_numpy(out)
        for key in features[0]:
            if key not in sequences:
                values = [f[key] for f in features]
                batch["labels" if key == "label" else key] = torch.tensor(values)
        return batch


@dataclasses.dataclass(frozen=True)
class Plan:
    """What this run does for speed: compile mode (None: eager), bucket edges, extra TrainingArguments."""

    compile_mode: str | None
    edges: list[int]
    arguments: dict[str, Any]

    def tags(self) -> dict[str, str]:
        return {COMPILE_TAG: self.compile_mode or "off", BUCKETS_TAG: ",".join(map(str, self.edges)) or "none"}


def plan(chosen: dict[str, Any], *, max_length: int, total_steps: int, cuda: bool,
         fields: set[str] | None = None) -> Plan:
    """The speed settings for a run whose user chose ``chosen`` (TrainingArguments values).

    ``fields`` are the TrainingArguments fields this transformers has; settings it lacks are left out.
    """
    if fields is None:
        from transformers import TrainingArguments

        fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    arguments: dict[str, Any] = {}
    workers = int(os.environ.get("TUNEBOARD_DATALOADER_WORKERS", "2" if cuda else "0"))
    arguments["dataloader_num_workers"] = workers
    arguments["dataloader_pin_memory"] = cuda
    workers = int(chosen.get("dataloader_num_workers", workers))  # the user's number wins over ours
    if workers > 0 and "dataloader_persistent_workers" in fields:
        arguments["dataloader_persistent_workers"] = True
    if "per_device_eval_batch_size" not in chosen:  # evaluation only: a larger batch changes no result
        batch = int(chosen.get("per_device_train_batch_size", 8))
        arguments["per_device_eval_batch_size"] = max(32, min(128, 2 * batch))

    mode = compile_mode(chosen, total_steps=total_steps, cuda=cuda)
    users = "torch_compile" in chosen or "torch_compile_mode" in chosen
    if mode is not None and not users:
        if "torch_compile" not in fields:
            mode = None  # this transformers cannot compile through the Trainer
        else:
            arguments["torch_compile"] = True
            if "torch_compile_mode" in fields:
                arguments["torch_compile_mode"] = mode
    step = int(os.environ.get("TUNEBOARD_BUCKET_STEP", "64" if mode is not None else "0"))
    return Plan(mode, bucket_edges(max_length, step), arguments)


def compile_mode(chosen: dict[str, Any], *, total_steps: int, cuda: bool) -> str | None:
    """The torch.compile mode for this run, or None for eager."""
    if "torch_compile" in chosen or "torch_compile_mode" in chosen:  # the user's choice
        if chosen.get("torch_compile") or chosen.get("torch_compile_mode"):
            return chosen.get("torch_compile_mode") or "default"
        return None
    raw = os.environ.get("TUNEBOARD_COMPILE", "auto").strip().lower()
    if raw in ("off", "0", "no", "none", "eager"):
        return None
    if raw == "auto":
        min_steps = int(os.environ.get("TUNEBOARD_COMPILE_MIN_STEPS", "3000"))
        return "default" if cuda and total_steps >= min_steps else None
    if raw not in COMPILE_MODES:
        log.warning("TUNEBOARD_COMPILE=%r is not one of off, auto, %s; not compiling", raw, ", ".join(COMPILE_MODES))
        return None
    return raw


def prepare_compile() -> None:
    """Dynamo settings for compiling a fine-tune: shapes symbolic from the first batch (one graph for every
    bucket instead of one compile per bucket, and one the inductor's disk cache can share between processes;
    ``TUNEBOARD_COMPILE_DYNAMIC=0`` compiles each bucket apart), and room for the few graphs this takes."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6; set whichever exists
        if hasattr(config, name):
            setattr(config, name, max(64, getattr(config, name)))
    config.assume_static_by_default = os.environ.get("TUNEBOARD_COMPILE_DYNAMIC", "1") == "0"


def is_compile_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile itself (tracing, or a backend compiler), not from the run."""
    try:
        from torch._dynamo import exc as dynamo_exc
    except ImportError:
        return False
    kinds = tuple(k for k in (getattr(dynamo_exc, "BackendCompilerFailed", None),
                              getattr(dynamo_exc, "InternalTorchDynamoError", None),
                              getattr(dynamo_exc, "Unsupported", None)) if k is not None)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kinds) or type(exc).__module__.startswith(("torch._inductor", "triton")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class CostCallback(TrainerCallback):
    """Measure a run's training cost without a host sync per step (host clocks only).

    After training, ``figures`` holds ``train_samples_per_second_steady`` (after the first tenth of the
    steps, so compilation and warm-up are left out) and, on CUDA, ``gpu_memory_peak_mb``.
    """

    def __init__(self):
        self.warm_step = 0
        self.warm_time: float | None = None
        self.figures: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.warm_step = max(1, state.max_steps // 10)
        self.warm_time = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warm_step:
            self.warm_time = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.figures = cost_figures(args, state, self.warm_step, self.warm_time)


def cost_figures(args, state, warm_step: int, warm_time: float | None) -> dict[str, float]:
    """Steady training throughput and peak GPU memory, from host clocks and the allocator's counters."""
    import torch

    figures: dict[str, float] = {}
    if warm_time is not None and state.global_step > warm_step:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # once, at the end of training
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        seconds = time.perf_counter() - warm_time
        figures["train_samples_per_second_steady"] = round((state.global_step - warm_step) * per_step / seconds, 2)
    if torch.cuda.is_available():
        figures["gpu_memory_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return figures
