"""The runs frame kept per experiment, refreshed by reading again only the runs that may have changed.

``core.runs.load_frame`` reads every run of the experiments (about 1.7 s for 2,000 runs on SQLite). A page that
polls needs that frame every couple of seconds while one run in a hundred moves. An :class:`ExperimentRuns`
keeps one experiment's rows (exactly as ``load_frame`` builds them) and a refresh asks MLflow only for:

1. the deleted runs (``ViewType.DELETED_ONLY``): those newly there leave the frame; every ``DELETED_EVERY``
   seconds all of them, and those gone from there were restored (or purged) and are read again by id (step 5);
2. the RUNNING runs: what trains logs all the time;
3. the SCHEDULED runs not seen yet: a queued run changes when it starts (step 2) or ends (step 4), so the known
   ones are left out of the query (``attributes.run_id NOT IN (...)``), except those a job submit was still
   writing at the last read (``core.jobs`` tags a job's queue last);
4. the runs that ended since: ``attributes.end_time`` after the newest end seen, less ``MARGIN_MS`` (writers'
   clocks differ a little, and a run's end time is taken before its write commits), less those read since;
5. the runs that started after the newest start seen and are neither RUNNING nor SCHEDULED (created and ended
   between two refreshes with no end time); and, by id, the runs that were RUNNING at the last read and are in
   none of the above (ended with ``MlflowClient.update_run(status=...)``, which sets no end time), the restored
   ones, and those :meth:`RunsLoader.invalidate` names.

Every run read again gets its row rebuilt (its model found through ``core.runs.find_models``). The version goes
up only when a row, the set of runs or the experiment's name changed, so pages key what they build on it; the
"ended version" only when an ended run did (the comparisons' inputs: a running job's progress leaves it).

What a refresh cannot see, as MLflow records no update time: a run changed after it ended without being
resumed (a tag or metric logged later through the client, a model linked to it later, a note set in MLflow's
UI), a queued run changed while it waits or ended with ``update_run``, and runs written with start and end times
in the past (imports). They show at the next full read, at most ``FULL_EVERY`` seconds after the last one, or at
once after :meth:`RunsLoader.invalidate` (the pages call it after their own changes, see ``pages/common.py``).
A run resumed with ``mlflow.start_run(run_id=...)`` is RUNNING again and ends with a new end time: seen. A run
without a start time leaves the order to the store's way of sorting nulls: such experiments are read in full.

Thread safety: the Streamlit server runs its sessions as threads of one process; each experiment's refresh
holds that experiment's lock, and a session that waited for another's refresh uses its result.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from core import runs as runs_mod

FULL_EVERY = 300.0  # seconds between full reads (what a refresh cannot see shows within this); = LISTING_TTL
MARGIN_MS = 5_000  # runs that ended up to this long before the newest end seen are looked for again
DELETED_EVERY = 30.0  # seconds between reads of every deleted run (restores show within this); else new ones only
TERMINAL = ("FINISHED", "FAILED", "KILLED")
SUBMITTING = "tags.job_submitting"  # core.jobs.SUBMITTING: the queue id while a submit writes the run, then "done"
_IN_CHUNK = 500  # run ids per ``attributes.run_id IN (...)`` filter
_MAX_EXCLUDED = 5_000  # run ids at most in one ``NOT IN (...)``; beyond, they are read again instead


class Snapshot(NamedTuple):
    """What a load returns: the frame, a number that changes whenever the frame does, and one that changes only
    when an ended run (FINISHED, FAILED, KILLED) was added, changed or removed: what comparisons are built on."""

    frame: object
    version: int
    ended_version: int


class ExperimentRuns:
    """One experiment's runs, as :func:`core.runs.load_frame` reads them, kept up to date by :meth:`refresh`."""

    def __init__(self, experiment_id: str, full_every: float = FULL_EVERY, margin_ms: int = MARGIN_MS,
                 deleted_every: float = DELETED_EVERY):
        self.experiment_id = experiment_id
        self.full_every, self.margin_ms, self.deleted_every = full_every, margin_ms, deleted_every
        self.last_deleted = -math.inf  # time.monotonic() of the last read of every deleted run
        self.lock = threading.Lock()
        self.rows: dict[str, dict] = {}  # run_id -> its row of runs_frame
        self.times: dict[str, tuple[int | None, int | None]] = {}  # run_id -> (start, end) in ms, as MLflow has them
        self.deleted: set[str] = set()
        self.name: str | None = None
        self.version = self.ended_version = 0  # from the loader's counter, when anything (an ended run) changed
        self.runs_read = 0  # run entities read from the store, in all (tests count it)
        self.full_reads = 0
        self.last_full = -math.inf  # time.monotonic() of the last full read
        self.last_refresh = -math.inf
        self._stale: set[str] = set()  # ids to read again at the next refresh (RunsLoader.invalidate)
        self._due = self._full_due = False  # refresh at the next load whatever max_age says; in full
        self._read_order: list[str] = []  # run ids in the order of the last full read
        self._ordered: list[dict] | None = None

    # -- reading -------------------------------------------------------------------------------------------------
    def refresh(self, mlflow_client, versions: Iterator[int], max_age: float = 0.0) -> tuple[int, int, list, str]:
        """Bring the rows up to date (unless the last refresh is under ``max_age`` seconds old); return
        (version, ended version, rows in ``load_frame``'s order, experiment name). ``versions`` numbers changes."""
        with self.lock:
            now = time.monotonic()
            if now - self.last_refresh >= max_age or self._due:
                if self._full_due or now - self.last_full >= self.full_every or not self.exact_order():
                    changed, ended = self._full(mlflow_client)
                    self.last_full = now
                else:
                    changed, ended = self._incremental(mlflow_client)
                name = mlflow_client.get_experiment(self.experiment_id).name
                if changed or ended or name != self.name:
                    self.version, self._ordered = next(versions), None
                    if ended or name != self.name:
                        self.ended_version = self.version
                    self.name = name
                self._due = False
                self.last_refresh = time.monotonic()
            if self._ordered is None:
                if self.exact_order():  # MLflow's own order: start time, newest first, then run id
                    order = sorted(self.rows, key=lambda i: (-self.times[i][0], i))
                else:  # the store sorts a missing start time its own way: keep the order of the full read
                    order = self._read_order
                self._ordered = [self.rows[i] for i in order]
            return self.version, self.ended_version, self._ordered, self.name

    def exact_order(self) -> bool:
        """Whether sorting the rows gives the store's order (every run has a start time)."""
        return all(start is not None for start, _ in self.times.values())

    def _full(self, mlflow_client) -> tuple[bool, bool]:
        from mlflow.entities import ViewType

        found = runs_mod.search_all(mlflow_client, [self.experiment_id])
        deleted = runs_mod.search_all(mlflow_client, [self.experiment_id], view_type=ViewType.DELETED_ONLY)
        self.runs_read += len(found) + len(deleted)
        self.full_reads += 1
        self.deleted = {r.info.run_id for r in deleted}
        self.last_deleted = time.monotonic()
        self._read_order = [r.info.run_id for r in found]
        self._stale.clear()
        self._full_due = False
        gone = self.rows.keys() - set(self._read_order)
        return self._take(mlflow_client, found, gone)

    def _incremental(self, mlflow_client) -> tuple[bool, bool]:
        from mlflow.entities import ViewType

        ids = [self.experiment_id]
        if time.monotonic() - self.last_deleted >= self.deleted_every:  # all of them: a restored one is missing
            self.last_deleted = time.monotonic()
            read = runs_mod.search_all(mlflow_client, ids, view_type=ViewType.DELETED_ONLY)
            deleted = {r.info.run_id for r in read}
        else:  # only those deleted since (reading every deleted run each time costs ~1 ms a run)
            read = runs_mod.search_all(mlflow_client, ids, _excluding("", sorted(self.deleted)),
                                       view_type=ViewType.DELETED_ONLY)
            deleted = self.deleted | {r.info.run_id for r in read}
        self.runs_read += len(read)
        restored, self.deleted = self.deleted - deleted, deleted
        status = {i: row["status"] for i, row in self.rows.items()}
        ends = {i: end for i, (_, end) in self.times.items() if end and status[i] in TERMINAL}
        since = max(ends.values(), default=0) - self.margin_ms
        newest_start = max((start for start, _ in self.times.values()), default=-1)
        found = {}
        ended_only = "attributes.status != 'RUNNING' and attributes.status != 'SCHEDULED'"
        for filter_string in (
                "attributes.status = 'RUNNING'",  # what trains changes all the time: read again each time
                # queued runs change when they start or end (the queries above and below): only new ones, and
                # those a submit was still writing at the last read (core.jobs tags the queue last)
                _excluding("attributes.status = 'SCHEDULED'", [i for i, s in status.items() if s == "SCHEDULED"
                                                               and self.rows[i].get(SUBMITTING, "done") == "done"]),
                # ended since the last read; those ended within the margin and read since are not read again
                _excluding(f"attributes.end_time > {since}", [i for i, end in ends.items() if end > since]),
                # created and ended between two reads, with no end time
                f"attributes.start_time > {newest_start} and {ended_only}"):
            found.update((r.info.run_id, r) for r in runs_mod.search_all(mlflow_client, ids, filter_string))
        running = {i for i, s in status.items() if s == "RUNNING"}
        missing = sorted((running | restored | self._stale) - found.keys() - deleted)
        for i in range(0, len(missing), _IN_CHUNK):
            quoted = ", ".join(f"'{run_id}'" for run_id in missing[i:i + _IN_CHUNK])
            found.update((r.info.run_id, r) for r in runs_mod.search_all(mlflow_client, ids,
                                                                          f"attributes.run_id IN ({quoted})"))
        self.runs_read += len(found)
        self._stale.clear()
        # deleted, or read by id and not found (purged): gone
        gone = {i for i in deleted if i in self.rows} | {i for i in missing if i not in found and i in self.rows}
        return self._take(mlflow_client, found.values(), gone)

    def _take(self, mlflow_client, runs: Iterable, gone: Iterable[str]) -> tuple[bool, bool]:
        """Drop the ``gone`` runs, rebuild the rows of ``runs``; (whether anything changed, whether an ended run
        did)."""
        changed = ended = False
        for run_id in gone:
            row = self.rows.pop(run_id)
            self.times.pop(run_id, None)
            changed, ended = True, ended or row["status"] in TERMINAL
        runs = list(runs)
        models = runs_mod.find_models(mlflow_client, runs_mod.model_holders(runs))
        for run in runs:
            run_id = run.info.run_id
            row, old = runs_mod.run_row(run, models.get(run_id)), self.rows.get(run_id)
            if not _same(old, row):
                self.rows[run_id] = row
                changed = True
                ended = ended or row["status"] in TERMINAL or (old is not None and old["status"] in TERMINAL)
            self.times[run_id] = (run.info.start_time, run.info.end_time)
        return changed, ended


def _excluding(filter_string: str, run_ids: Sequence[str]) -> str:
    """``filter_string`` for runs other than ``run_ids`` (all of them again when there are too many to name)."""
    if not run_ids or len(run_ids) > _MAX_EXCLUDED:
        return filter_string
    excluded = "attributes.run_id NOT IN (" + ", ".join(f"'{i}'" for i in run_ids) + ")"
    return f"{filter_string} and {excluded}" if filter_string else excluded


def _same(old: dict | None, new: dict) -> bool:
    """Rows equal, NaN and NaT equal to themselves (a metric can be NaN)."""
    if old is None or old.keys() != new.keys():
        return False
    for key, value in new.items():
        other = old[key]
        if other is value:
            continue
        if isinstance(value, float) and isinstance(other, float) and math.isnan(value) and math.isnan(other):
            continue
        if type(other) is not type(value) or other != value:
            return False
    return True


class RunsLoader:
    """Process-wide: one :class:`ExperimentRuns` per (store and user key, experiment), and the frames built from
    them. ``key`` separates what one identity may see from another's (the pages pass the store URI and user)."""

    MAX_EXPERIMENTS = 256

    def __init__(self, full_every: float = FULL_EVERY, margin_ms: int = MARGIN_MS,
                 deleted_every: float = DELETED_EVERY):
        self.full_every, self.margin_ms, self.deleted_every = full_every, margin_ms, deleted_every
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._experiments: dict[tuple, ExperimentRuns] = {}
        self._frames: dict[tuple, tuple[tuple, object]] = {}  # (key, ids) -> (versions, frame)
        self._frame_locks: dict[tuple, threading.Lock] = {}

    def experiment(self, key: tuple, experiment_id: str) -> ExperimentRuns:
        with self._lock:
            found = self._experiments.get((key, experiment_id))
            if found is None:
                if len(self._experiments) >= self.MAX_EXPERIMENTS:  # a long-lived server: forget, read again
                    self._experiments.clear()
                    self._frames.clear()
                found = self._experiments[(key, experiment_id)] = ExperimentRuns(
                    experiment_id, self.full_every, self.margin_ms, self.deleted_every)
            return found

    def load(self, mlflow_client, experiment_ids: Sequence[str], key: tuple = (), max_age: float = 0.0) -> Snapshot:
        """What ``core.runs.load_frame(mlflow_client, experiment_ids)`` returns, with its versions (for these
        experiments; see :class:`Snapshot`). Experiments refreshed within ``max_age`` seconds are not asked
        again. The frame is shared: derive new frames from it, never change it in place."""
        import pandas as pd

        ids = tuple(sorted(set(experiment_ids)))
        caches = [self.experiment(key, i) for i in ids]
        parts = [cache.refresh(mlflow_client, self._counter, max_age) for cache in caches]
        if len(caches) > 1 and not all(cache.exact_order() for cache in caches):
            # runs without a start time in one of them: only the store knows where they go among the others
            version = next(self._counter)
            return Snapshot(runs_mod.load_frame(mlflow_client, ids), version, version)
        versions = tuple(part[0] for part in parts)
        ended = max((part[1] for part in parts), default=0)
        with self._lock:
            lock = self._frame_locks.setdefault((key, ids), threading.Lock())
        with lock:
            kept = self._frames.get((key, ids))
            if kept is not None and kept[0] == versions:
                return Snapshot(kept[1], max(versions, default=0), ended)
            rows = [row for part in parts for row in part[2]]
            if len(parts) > 1:
                rows.sort(key=lambda row: (-row["start_time"].value, row["run_id"]))
            frame = runs_mod.with_experiment_names(pd.DataFrame(rows), {i: part[3] for i, part
                                                                         in zip(ids, parts, strict=True)})
            self._frames[(key, ids)] = (versions, frame)
            return Snapshot(frame, max(versions, default=0), ended)

    def invalidate(self, run_ids: Iterable[str] = (), full: bool = False) -> None:
        """The next load asks MLflow again, however recent the last refresh: for what changed, plus ``run_ids``
        (runs this process changed after they ended, e.g. tagged), or, with ``full``, for every run."""
        run_ids = set(run_ids)
        with self._lock:
            caches = list(self._experiments.values())
        for cache in caches:
            with cache.lock:
                cache._stale |= run_ids & cache.rows.keys()
                cache._due = True
                cache._full_due = cache._full_due or full

    @property
    def runs_read(self) -> int:
        """Run entities read from the store by every refresh so far."""
        return sum(cache.runs_read for cache in list(self._experiments.values()))
