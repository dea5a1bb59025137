"""How many fine-tunes share one GPU: a memory estimate per job, or the measured peak of an earlier run.

The worker starts a queued job on a GPU only while the jobs on it fit in its memory (``fits``);
``TUNEBOARD_JOBS_PER_GPU`` caps how many share one GPU (default 4). A job that ran out of memory while
it shared a GPU is queued again with the tag ``run_alone`` and then starts only on an empty GPU.

The estimate (bytes): fp32 weights, gradients and AdamW states (16 per parameter), plus activations of
one batch, after Korthikanti et al. (2022): per layer ``s*b*(34*h + 5*a*s)`` bytes in 16-bit precision, the
attention term tripled for DeBERTa's disentangled attention (content-to-position and position-to-content
scores), doubled in fp32; plus the CUDA context. It errs high: a measured peak, when there is one, wins.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_ALONE_TAG = "run_alone"
SHARED_TAG = "gpu_jobs_sharing"  # set by the worker: the most jobs that shared the run's GPU while it ran
CONTEXT_BYTES = 700 * 2**20  # CUDA context and cuBLAS workspace of one process, outside the allocator's peak
HEADROOM = 0.9  # of a GPU's memory that packed jobs may plan to use
# A scoring job (core.scoring.job): inference only, no gradients or optimizer states. A base-sized DeBERTa in bf16
# at batch 32 x 256 tokens needs well under this, beside its CUDA context; it packs beside training jobs.
SCORE_BYTES = 2 * 2**30 + CONTEXT_BYTES
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class Shape:
    """What the memory of a fine-tune depends on."""

    parameters: int
    hidden: int
    layers: int
    heads: int
    disentangled: bool  # DeBERTa's attention: three score matrices instead of one


def model_shape(model_dir: str | Path) -> Shape | None:
    """The shape of a local model folder (its config.json and safetensors headers); None when unreadable."""
    folder = Path(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    parameters = 0
    for weights in folder.glob("*.safetensors"):
        try:
            with weights.open("rb") as f:
                header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        except (OSError, ValueError, struct.error):
            return None
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                parameters += count
    if not parameters:
        return None
    return Shape(parameters, int(config.get("hidden_size", 768)), int(config.get("num_hidden_layers", 12)),
                 int(config.get("num_attention_heads", 12)), config.get("model_type", "").startswith("deberta"))


def estimate_bytes(shape: Shape, batch: int, max_length: int, half_precision: bool = True) -> int:
    """Peak GPU memory of one fine-tune (the allocator's peak plus the CUDA context), erring high."""
    s, b, h, a = max_length, batch, shape.hidden, shape.heads
    attention = 5 * a * s * (3 if shape.disentangled else 1)
    activations = s * b * (34 * h + attention) * shape.layers * (1 if half_precision else 2)
    return 16 * shape.parameters + activations + CONTEXT_BYTES


def from_measured(peak_bytes: float, measured_tokens: int, tokens: int, shape: Shape | None) -> int:
    """Scale an earlier run's measured peak (same base model) to this run's batch x max_length."""
    static = 16 * shape.parameters if shape else 0
    dynamic = max(0.0, peak_bytes - static) * tokens / max(1, measured_tokens)
    return int(static + dynamic * 1.1 + CONTEXT_BYTES)


def job_bytes(hyperparameters: dict[str, Any], base_model: str, measured: tuple[float, int] | None = None,
              cuda_half: bool = True) -> int | None:
    """The memory a job needs: from ``measured`` (peak bytes, batch x max_length of an earlier run of the same
    base model) when given, else the estimate; None when the model folder cannot be read."""
    batch = int(hyperparameters.get("per_device_train_batch_size", 16))
    max_length = int(hyperparameters.get("max_length", 128))
    shape = model_shape(base_model)
    if measured is not None:
        return from_measured(measured[0], measured[1], batch * max_length, shape)
    if shape is None:
        return None
    half = cuda_half and bool(hyperparameters.get("bf16", True) or hyperparameters.get("fp16", False))
    return estimate_bytes(shape, batch, max_length, half)


def cap() -> int:
    """``TUNEBOARD_JOBS_PER_GPU``: at most this many jobs on one GPU (default 4)."""
    try:
        return max(1, int(os.environ.get("TUNEBOARD_JOBS_PER_GPU", "4")))
    except ValueError:
        return 4


def fits(need: int | None, running: list[int | None], total_bytes: int | None, *, alone: bool = False,
         running_alone: bool = False, limit: int | None = None) -> bool:
    """Whether a job needing ``need`` bytes may start on a GPU of ``total_bytes`` running jobs needing ``running``.

    An empty GPU always takes the job. Otherwise: not when either side must run alone, not past the cap,
    not when a need is unknown, and only while the sum stays within ``HEADROOM`` of the GPU's memory.
    """
    if not running:
        return True
    if alone or running_alone or len(running) >= (limit or cap()):
        return False
    if need is None or total_bytes is None or any(r is None for r in running):
        return False
    return need + sum(running) <= HEADROOM * total_bytes
