"""Batched class probabilities from a loaded Hugging Face classifier, on the job's device.

One call scores a whole list of texts (or text pairs, for an NLI model):

1. the model goes to ``device`` (CUDA when there is one, else the CPU), in eval mode;
2. rows are sorted by length so that each batch pads to about its own longest row, not the file's;
3. each batch is tokenized (truncated to ``max_length``), run under ``torch.inference_mode()`` (bf16
   autocast on a GPU that has it, fp16 otherwise; bf16 on a CPU with native bf16: :func:`cpu_bf16`), and
   turned into probabilities with a float32 softmax; the next batch is tokenized while the GPU runs the
   current one (the GPU waited on the tokenizer before: ``bench/bench_score.py``);
4. the rows are put back in the caller's order; ``on_progress(done, total)`` after each batch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import numpy as np

from core.errors import TuneboardError

Progress = Callable[[int, int], None]


def default_device() -> str:
    """``cuda`` when a GPU is visible to torch, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def length_limit(model, tokenizer, max_length: int) -> int:
    """``max_length``, capped where the model cannot take more tokens.

    The tokenizer's ``model_max_length`` when it is a real limit (it is a huge sentinel when unset), and the
    position table of a model with absolute positions (BERT: past it, the forward fails). DeBERTa-v3 has
    relative positions only (``position_biased_input`` false) and is not capped by its table.
    """
    limit = int(max_length)
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < 1_000_000:
        limit = min(limit, declared)
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0 and getattr(config, "position_biased_input", True):
        limit = min(limit, positions)
    return max(limit, 8)


def predict_proba(model, tokenizer, texts: list[str], pairs: list[str] | None = None, *, batch_size: int = 32,
                  max_length: int = 256, device: str | None = None,
                  on_progress: Progress | None = None) -> np.ndarray:
    """Class probabilities, one row per text (n x num_labels, float32, rows in the order given).

    ``pairs``, when given, is the second text of each row (an NLI model's hypothesis), as long as ``texts``.
    Texts longer than ``max_length`` tokens (capped by what the model takes, :func:`length_limit`) are
    truncated, the longer text of a pair first. Sorting by length is by characters: a close proxy for
    tokens that needs no second tokenization of the whole input.
    """
    import torch

    texts = list(texts)
    if pairs is not None:
        pairs = list(pairs)
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs: give one second text per text.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    device = device or default_device()
    num_labels = int(model.config.num_labels)
    total = len(texts)
    out = np.zeros((total, num_labels), dtype=np.float32)
    if total == 0:
        return out

    model.to(device)
    model.eval()
    limit = length_limit(model, tokenizer, max_length)
    order = _by_length(texts, pairs)
    autocast = _autocast(device)
    done = 0

    def encode(start: int):
        rows = order[start:start + batch_size]
        first = [texts[i] for i in rows]
        second = [pairs[i] for i in rows] if pairs is not None else None
        return rows, tokenizer(first, second, padding=True, truncation=True, max_length=limit, return_tensors="pt")

    with torch.inference_mode():
        following = encode(0)
        for start in range(0, total, batch_size):
            rows, batch = following
            inputs = {k: v.to(device) for k, v in batch.items()}
            with autocast:
                logits = model(**inputs).logits
            probs = logits.float().softmax(dim=-1)
            if start + batch_size < total:  # on a GPU, the CPU tokenizes the next batch while this one runs
                following = encode(start + batch_size)
            out[rows] = probs.cpu().numpy()
            done += len(rows)
            if on_progress is not None:
                on_progress(done, total)
    return out


def _by_length(texts: Sequence[str], pairs: Sequence[str] | None) -> np.ndarray:
    """Row indices, shortest first (stable, so equal lengths keep their order)."""
    lengths = [len(t) for t in texts]
    if pairs is not None:
        lengths = [n + len(p) for n, p in zip(lengths, pairs, strict=True)]
    return np.argsort(np.asarray(lengths), kind="stable")


CPU_BF16 = "TUNEBOARD_CPU_BF16"  # auto (default) / on / off


def cpu_bf16() -> bool:
    """Whether reading on the CPU runs under bf16 autocast: ``TUNEBOARD_CPU_BF16`` ``on`` / ``off``, or ``auto``
    (the default): where oneDNN has native bf16 (AVX512-BF16 or AMX), where it halves the time a call takes to
    read with the same tags (``bench/bench_long_calls.py``: 0.57 s a call for all-MiniLM-L6-v2, 700 words x 10
    topics, largest score difference 0.013); elsewhere bf16 is emulated and slower, so fp32."""
    setting = os.environ.get(CPU_BF16, "auto").strip().lower() or "auto"
    if setting in ("on", "1", "true", "yes"):
        return True
    if setting in ("off", "0", "false", "no"):
        return False
    if setting != "auto":
        raise TuneboardError(f"{CPU_BF16}={setting!r} is not a setting: use auto, on or off.")
    return _native_cpu_bf16()


@functools.cache
def _native_cpu_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _autocast(device: str):
    """bf16 autocast on a GPU that supports it, fp16 on an older one; on the CPU bf16 where :func:`cpu_bf16`
    says so, else nothing."""
    import contextlib

    import torch

    if not str(device).startswith("cuda"):
        if str(device).startswith("cpu") and cpu_bf16():
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)
