"""Streaming Trainer logs into MLflow without blocking the training loop.

The Trainer's ``on_log`` fires every logging step; each call queues the
numbers and hands them to MLflow's asynchronous ``log_batch`` at most every
``flush_seconds`` (and always at evaluation and at the end), so no training
step waits for a round trip to the tracking store.
"""

from __future__ import annotations

import math
import time

from transformers import TrainerCallback

SKIP = {"total_flos"}


class MlflowMetricsCallback(TrainerCallback):
    """Log loss, learning rate and eval metrics per step to one MLflow run, asynchronously."""

    def __init__(self, run_id: str, flush_seconds: float = 2.0):
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._client = MlflowClient()
        self._pending: list = []
        self._last_flush = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        for key, value in (logs or {}).items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._pending.append(Metric(key, float(value), now_ms, state.global_step))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def on_evaluate(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()

    def flush(self) -> None:
        # MLflow caps one batch at 1000 metrics
        while self._pending:
            chunk, self._pending = self._pending[:1000], self._pending[1000:]
            self._client.log_batch(self.run_id, metrics=chunk, synchronous=False)
        self._last_flush = time.monotonic()
