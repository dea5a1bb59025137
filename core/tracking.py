"""Writing to MLflow from a run's process: in the background, and at the end of a run.

- :class:`BackgroundWriter` (one per process, :data:`writer`): MLflow writes off the training loop;
- :func:`record_failure`: a run ends FAILED with its reason, best effort, however MLflow answers;
- :func:`attach_log`: a job's log kept with its run;
- :func:`log_input`: a run's dataset, logged beside other runs logging the same one.

Streaming Trainer logs into MLflow without blocking the training loop:

The Trainer's ``on_log`` fires every logging step; each call queues the
numbers, and a background thread writes them with ``log_batch`` at most every
``flush_seconds`` (and always at evaluation and at the end), so no training
step waits for a round trip to the tracking store.

We use our own thread rather than MLflow's asynchronous logging: MLflow's
queue polls with a one-second timeout, so ending a run that ever logged
asynchronously waits up to a second, which would be a second of idle GPU
between every two jobs.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from core.naming import ERROR_TAG

log = logging.getLogger(__name__)


class BackgroundWriter:
    """One daemon thread that runs MLflow writes in order; ``flush`` returns as soon as they are done.

    When MLflow cannot be reached, each write blocks while the MLflow client retries (minutes, by default).
    So a backlog cannot grow without end: a write given a ``key`` replaces the one of the same key still
    waiting (the progress tag: only the latest matters), and when a write fails for good the writes
    waiting behind it are dropped, counted in the log, rather than each failing as slowly in turn.
    """

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latest: dict[str, Callable[[], object]] = {}
        self.dropped = 0

    def submit(self, write: Callable[[], object], key: str | None = None) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="tuneboard-mlflow-writer", daemon=True)
                self._thread.start()
            if key is not None:
                waiting = key in self._latest
                self._latest[key] = write
                if waiting:
                    return
                write = key
            self._queue.put(write)

    def flush(self) -> None:
        """Wait until every submitted write has been done (or dropped)."""
        if self._thread is not None:
            self._queue.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if isinstance(item, str):
                    with self._lock:
                        item = self._latest.pop(item)
                item()
            except Exception:
                log.exception("an MLflow write in the background failed")
                self._drop_waiting()
            finally:
                self._queue.task_done()

    def _drop_waiting(self) -> None:
        dropped = 0
        with self._lock:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                self._queue.task_done()
                dropped += 1
            self._latest.clear()
        if dropped:
            self.dropped += dropped
            log.warning("dropped %d MLflow writes waiting behind the one that failed (MLflow unreachable?)", dropped)


writer = BackgroundWriter()


def attach_log(client, run_id: str, path: str | Path, name: str = "job.log") -> bool:
    """Attach a job's log file to its run as ``name``; False (and a line on stderr) when it cannot be.

    Best effort: a full artifact disk or an unreachable store must not change how the job ends.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / name
            shutil.copyfile(path, copy)
            client.log_artifact(run_id, str(copy))
    except Exception as exc:  # noqa: BLE001 - see above
        print(f"could not attach the log of {run_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def log_input(dataset, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input`` that survives another run logging the same dataset at the same moment.

    MLflow's store looks for the experiment's dataset (name and digest) and inserts it when it finds none, in
    one transaction: two jobs of a grid starting together on one dataset version both insert it, and the
    second fails on the datasets table's key ("duplicate key value violates unique constraint", or "UNIQUE
    constraint failed" on SQLite), which failed the whole job. That transaction wrote nothing, and the other
    one has committed the dataset by the time the key refuses: trying again finds it and links this run to it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as exc:
            text = str(exc)
            collided = "datasets" in text and ("unique" in text.lower() or "duplicate key" in text)
            if not collided or attempt == attempts - 1:
                raise
            log.info("another run logged dataset %s at the same moment; linking to it", dataset.name)


def flush() -> None:
    """Wait for every background MLflow write of this process."""
    writer.flush()


def record_failure(run_id: str, exc: BaseException, message: str,
                   before_end: Callable[[str], None] | None = None) -> None:
    """End the run FAILED with its reason, best effort: each write is tried on its own, so one that fails
    too (a full disk, MLflow unreachable) skips no other. ``before_end("FAILED")`` runs just before it ends."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    details = "".join(traceback.format_exception(exc))

    def end() -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run("FAILED")  # leaves no active run behind, even when MLflow refuses
        else:
            client.set_terminated(run_id, "FAILED")

    writes = (flush, lambda: client.set_tag(run_id, ERROR_TAG, message[:4000]),
              lambda: client.set_tag(run_id, "error_type", type(exc).__name__),
              lambda: client.log_text(run_id, details, "error.txt"), (lambda: before_end and before_end("FAILED")), end)
    for write in writes:
        try:
            write()
        except Exception as err:  # noqa: BLE001 - recording the failure failed as well: keep going
            log.warning("could not record the failure in MLflow: %s: %s", type(err).__name__, err)
