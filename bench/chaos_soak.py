"""Chaos soak: the real local worker runs a queue of small jobs while a driver kill -9s its parts at random.

    python bench/chaos_soak.py [--minutes 30] [--jobs 200] [--steps 60] [--seed 1] [--team] [--out FILE.json]

On a fresh store (a temporary home, the demo BERT built offline, a 40-row validation file), ``--jobs``
fine-tunes of ``--steps`` steps are queued at once and a worker is started; while the chaos lasts, the queue is
topped up (another ``--jobs`` whenever fewer than ``--keep-queued`` wait), so jobs train for the whole window
however fast the machine drains them (a soak queued once drained in about 16 of its 30 minutes, and most kills
then hit an idle worker). Every 1 to 3 minutes (seeded) the driver kill -9s one victim, only once a look right
before the kill finds a job's training process running (between two jobs it waits and looks again): the worker,
a training process (a RUNNING job's pid), or a warm spare (the CPU slots' fork server, or a GPU slot's spare);
each round of kills takes every kind once, in a random order. After killing the worker it starts another at once
(as the dashboard would on its next submit).

``--team``: the store is Tuneboard's team server with sign-in on PostgreSQL, started as ``python -m core.cli
server --db ... --artifacts ... --auth-db ...`` starts it (``bench/chaos_team.py``, on a PostgreSQL cluster of the
soak's own), the worker and its jobs signed in to it, and two more victims: the MLflow server (kill -9, started
again at once, as a supervisor would; the seconds it was down are recorded) and a PostgreSQL backend serving it
(kill -9; PostgreSQL then restarts its backends; the seconds until it and the store answer again are recorded).

After ``--minutes`` the driver stops killing and waits for the queue to drain (a worker still running), then
checks the store and prints one JSON object (``--out``: written to that file too):

- lost: jobs that never reached a terminal state (must be 0);
- finished_twice: jobs whose training ran to FINISHED more than once (their log says so; must be 0);
- left_running: runs still RUNNING at the end (must be 0);
- the kills by kind, how many landed while a job's training process ran (``kills_while_training``: every one,
  for the soak to count; ``kills_missed``: times no job trained for 5 minutes, so nothing was killed), the jobs
  by final state, how long after each
  worker restart the dead worker's runs stayed RUNNING, and in team mode the server's and PostgreSQL's times
  to come back.

Exit status 0 when all three are 0. ``--resume HOME`` drains and checks the store of an embedded soak whose own
wait for the queue ran out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil

from core.demo import build_model
from core.grid import GridSpec
from core.jobs import PID, JobQueue, JobStatus
from core.settings import Settings
from core.worker import ensure_worker, stop_worker, worker_info


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def small_data(folder: Path) -> None:
    """The demo data, with a validation file of 40 rows of both labels."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train_sample.csv", "test.csv"):
        shutil.copy(ROOT / "data" / name, folder / name)
    with open(folder / "test.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    keep = [r for label in sorted({r[2] for r in rows}) for r in [r for r in rows if r[2] == label][:20]]
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *keep])


def spares(home: Path, busy: set[int]) -> list[psutil.Process]:
    """The worker's warm processes of this home that hold no job: a GPU slot's spare (``core.train_job --wait``,
    not in ``busy``, the pids of the jobs' processes: a spare keeps its command line once it runs a job) and the
    CPU slots' fork server (``--fork-server`` started by the worker; the jobs it forks share its command line
    and are its children, not the worker's). Killing the fork server kills the jobs forked from it."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "core.train_job" not in cmdline or not ({"--wait", "--fork-server"} & set(cmdline)):
            continue
        try:
            if proc.environ().get("TUNEBOARD_HOME") != str(home) or proc.status() == psutil.STATUS_ZOMBIE \
                    or proc.pid in busy:
                continue
            if "--fork-server" in cmdline and "core.worker" not in (proc.parent().cmdline() if proc.parent() else []):
                continue  # a job forked from the server: a training process, not a spare
            found.append(proc)
        except psutil.Error:
            pass
    return found


def trainers(queue: JobQueue) -> list[tuple[str, int]]:
    """(run id, pid) of the jobs whose training process is running now."""
    found = []
    for job in queue.jobs(statuses={JobStatus.RUNNING}):
        tag = queue.client.get_run(job.run_id).data.tags.get(PID)
        if tag and psutil.pid_exists(pid := int(tag.split("@")[0])):
            found.append((job.run_id, pid))
    return found


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class Victims:
    """What the driver kill -9s, one victim a time, each while a job trains. Each round takes every kind once, in
    a seeded random order; a kind with nothing alive to kill now waits for the next kill (the rest of the round
    goes first)."""

    def __init__(self, settings: Settings, queue: JobQueue, rng: random.Random, team=None):
        self.settings, self.queue, self.rng, self.team = settings, queue, rng, team
        kinds = ["worker", "training process", "warm spare"] + (["mlflow server", "postgresql backend"] if team else [])
        self.kills = dict.fromkeys(kinds, 0)
        self.recoveries: dict[str, list] = {"worker_recoveries_s": []}
        if team:
            self.recoveries.update(server_down_s=[], postgresql_restarted_s=[], postgresql_store_back_s=[])
        self.round: list[str] = []

    def kill_one(self, wait_seconds: float = 300.0) -> bool:
        """Kill one victim while a job's training process runs; False when none could be for ``wait_seconds``.

        Each kind's method looks for a running training process right before its kill and kills nothing (None)
        when there is none (a job had just ended: between two jobs) or when it has nothing alive to kill."""
        if not self.round:
            self.round = self.rng.sample(list(self.kills), len(self.kills))
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            for kind in self.round + [k for k in self.kills if k not in self.round]:
                if getattr(self, "_" + kind.replace(" ", "_"))():
                    self.kills[kind] += 1
                    if kind in self.round:
                        self.round.remove(kind)
                    return True
            time.sleep(0.2)
        return False

    def _worker(self) -> bool:
        settings, queue = self.settings, self.queue
        info = worker_info(settings)
        before = {r: queue.client.get_run(r).data.tags.get(PID) for r, _ in trainers(queue)}
        if not info or not before:
            return False
        kill(info["pid"])
        while worker_info(settings):  # its training processes die with it (parent-death signal)
            time.sleep(0.1)
        ensure_worker(settings)
        back = time.monotonic()
        while any(queue.get(r).status == JobStatus.RUNNING
                  and queue.client.get_run(r).data.tags.get(PID) == pid for r, pid in before.items()):
            if time.monotonic() - back > 120:
                break
            time.sleep(0.5)
        self.recoveries["worker_recoveries_s"].append(round(time.monotonic() - back, 1))
        say(f"killed the worker (pid {info['pid']}) with {len(before)} job(s) training; the next worker "
            f"settled them in {self.recoveries['worker_recoveries_s'][-1]} s")
        return True

    def _training_process(self) -> bool:
        found = trainers(self.queue)
        if not found:
            return False
        run_id, pid = self.rng.choice(found)
        if not kill(pid):
            return False
        say(f"killed the training process of {run_id[:8]} (pid {pid})")
        return True

    def _warm_spare(self) -> bool:
        training = trainers(self.queue)
        found = spares(self.settings.home, {p for _, p in training})
        if not training or not found:
            return False
        proc = self.rng.choice(found)
        what = "the fork server" if "--fork-server" in proc.info["cmdline"] else "a GPU slot's spare"
        if not kill(proc.pid):
            return False
        say(f"killed a warm spare: {what} (pid {proc.pid}) with {len(training)} job(s) training")
        return True

    def _mlflow_server(self) -> bool:
        training = trainers(self.queue)
        if not training:
            return False
        pid, down = self.team.kill_server()
        self.recoveries["server_down_s"].append(down)
        say(f"killed the MLflow server (pid {pid} and its workers) with {len(training)} job(s) training; started "
            f"again, it answered after {down} s")
        return True

    def _postgresql_backend(self) -> bool:
        training = trainers(self.queue)
        killed = self.team.kill_backend(self.rng, self.queue.client) if training else None
        if killed is None:
            return False
        pid, restarted, back = killed
        self.recoveries["postgresql_restarted_s"].append(restarted)
        self.recoveries["postgresql_store_back_s"].append(back)
        say(f"killed PostgreSQL backend {pid} with {len(training)} job(s) training; PostgreSQL restarted its "
            f"backends in {restarted} s, the server read the store again after {back} s")
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-queued", type=int, default=4, help="while the chaos lasts, queue another --jobs "
                        "whenever fewer jobs than this wait to start")
    parser.add_argument("--drain-minutes", type=float, default=60.0, help="the longest wait for the queue to end")
    parser.add_argument("--resume", metavar="HOME", help="only drain and check the store of an earlier soak")
    parser.add_argument("--team", action="store_true", help="the store is Tuneboard's team server on PostgreSQL "
                        "(bench/chaos_team.py), which is killed too, and so is a PostgreSQL backend serving it")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    if args.resume:
        return resume(args.resume, args.drain_minutes, args.out)
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    os.environ["TUNEBOARD_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    team = None
    if args.team:
        from chaos_team import TeamStore

        team = TeamStore(work)  # sets MLFLOW_TRACKING_URI and the admin's credentials for the worker and its jobs
    try:
        return soak(args, work, team)
    finally:
        stop_worker(Settings.from_env())
        if team is not None:
            team.close()


def soak(args: argparse.Namespace, work: Path, team) -> int:
    """Queue, kill, drain and check (``main`` sets up the store and takes it down)."""
    rng = random.Random(args.seed)
    load_before = os.getloadavg()[0]
    settings = Settings.from_env()
    small_data(work / "data")
    model = str(build_model(work / "models" / "demo-bert-tiny", "bert"))

    def grid(batch: int) -> GridSpec:
        sets = tuple({"n_epochs": 1, "max_steps": args.steps, "seed": batch * args.jobs + i} for i in range(args.jobs))
        return GridSpec(base_name=f"Chaos{batch}", data_src="Soak", dataset_versions=("train_sample.csv",),
                        hyperparameters=sets, base_model_versions=(model,), output_dir=str(work / "out"),
                        train_file=str(work / "data" / "{data_version}"),
                        validation_file=str(work / "data" / "test.csv"), evaluate_pretrained_model=False,
                        user_id="chaos")

    queue = JobQueue(settings)
    started = time.monotonic()
    jobs = queue.submit(grid(0))  # starts the worker
    batches = 1
    say(f"queued {len(jobs)} jobs of {args.steps} steps in {work}")

    def top_up() -> None:
        nonlocal batches
        if len(queue.jobs(statuses={JobStatus.SCHEDULED})) < args.keep_queued:
            jobs.extend(queue.submit(grid(batches)))
            batches += 1
            say(f"queued {args.jobs} more jobs ({len(jobs)} in all)")

    victims = Victims(settings, queue, rng, team)
    while_training = missed = 0
    end_of_chaos = started + args.minutes * 60
    next_kill = time.monotonic() + rng.uniform(60, 180)
    while time.monotonic() < end_of_chaos:
        while (now := time.monotonic()) < min(next_kill, end_of_chaos):
            top_up()
            time.sleep(min(5.0, max(0.0, min(next_kill, end_of_chaos) - now)))
        if time.monotonic() >= end_of_chaos:
            break
        if victims.kill_one():  # only while a job trains, never an idle worker
            while_training += 1
        else:
            missed += 1
            say("no job trained for 5 minutes: nothing killed this time")
        next_kill = time.monotonic() + rng.uniform(60, 180)

    say("the chaos is over; waiting for the queue to drain")
    result = settle(settings, queue, jobs, args.drain_minutes)
    result.update(mode="team" if team else "embedded", minutes=round((time.monotonic() - started) / 60, 1),
                  steps=args.steps, kills=victims.kills, kills_while_training=while_training, kills_missed=missed,
                  batches_queued=batches, **victims.recoveries, store=str(work),
                  load_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    return report(result, args.out)


def settle(settings: Settings, queue: JobQueue, jobs: list, drain_minutes: float) -> dict:
    """Let a worker drain the queue (at most ``drain_minutes``), then count what went wrong."""
    ensure_worker(settings)
    deadline = time.monotonic() + drain_minutes * 60
    while time.monotonic() < deadline and not all(j.status.is_terminal() for j in queue.jobs()):
        time.sleep(2)
    stop_worker(settings)
    final = {j.run_id: j for j in queue.jobs()}
    lost = [j.run_id for j in jobs if j.run_id not in final or not final[j.run_id].status.is_terminal()]
    finished_twice, started_more = [], []
    for job in jobs:
        log = settings.home / "jobs" / f"{job.run_id}.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if len(re.findall(rf"job {job.run_id}: FINISHED", text)) > 1:
            finished_twice.append(job.run_id)
        if len(re.findall(rf"job {job.run_id}: \S+ \(", text)) > 1:
            started_more.append(job.run_id)
    left_running = [r for r, j in final.items() if j.status == JobStatus.RUNNING]
    reasons: dict[str, int] = {}
    for job in final.values():
        if job.status == JobStatus.FAILED:
            key = (job.reason or "")[:70]
            reasons[key] = reasons.get(key, 0) + 1
    return {"jobs": len(jobs), "states": {s.value: sum(j.status == s for j in final.values()) for s in JobStatus},
            "lost": len(lost), "finished_twice": len(finished_twice), "started_more_than_once": len(started_more),
            "left_running": len(left_running), "failure_reasons": reasons}


def report(result: dict, out: str | None) -> int:
    """Print the JSON (and write it to ``out``); the exit status: 0 when nothing was lost, run twice or left."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0 if not (result["lost"] or result["finished_twice"] or result["left_running"]) else 1


def resume(home: str, drain_minutes: float, out: str | None) -> int:
    """Drain and check the store of a soak whose own wait for the queue ran out (``--resume HOME``)."""
    os.environ["TUNEBOARD_HOME"] = home
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    settings = Settings.from_env()
    queue = JobQueue(settings)
    say(f"draining the queue of {home}")
    return report({**settle(settings, queue, queue.jobs(), drain_minutes), "store": home, "resumed": True}, out)


if __name__ == "__main__":
    sys.exit(main())
