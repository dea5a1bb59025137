"""The worker's side of the fork server (``python -m core.train_job --fork-server``, ``core.jobs.runner``).

The local worker's CPU slots run each job in a process forked from one warm server: the job starts with
torch, transformers and MLflow imported, and no spare warms up beside a running job (its imports took a core
from the training, whose threads then waited on each other at every step). :class:`ForkedJob` is what the
worker asks of a job's process: its pid (its own process group), ``poll``, ``wait`` and ``returncode``, as a
``subprocess.Popen`` gives them.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.settings import REPO_ROOT

START_SECONDS = 30.0  # the longest wait for the server to say it forked a job (it answers at once when warm)
WARM_WAIT_SECONDS = 120.0  # the longest CPU jobs wait for the server's warm-up before starting processes of their own


class ForkServer:
    """One warm process that forks the jobs of the worker's CPU slots; its lines are read by a thread."""

    def __init__(self, env: dict, log: Path, on_ready=lambda pid: None):
        self.on_ready = on_ready  # told once the server is warm (the worker says so in its log)
        self.started_at = time.monotonic()
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.train_job", "--fork-server"], cwd=REPO_ROOT, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
                start_new_session=True)
        self.ready = threading.Event()
        self.gone = threading.Event()  # its output ended: every job it reported ended is in ``codes``
        self.codes: dict[int, int] = {}
        self._started: queue.Queue[int] = queue.Queue()
        threading.Thread(target=self._read, name="fork-server", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "ready":
                self.ready.set()
                self.on_ready(self.proc.pid)
            elif word == "started":
                self._started.put(int(rest))
            elif word == "ended":
                pid, code = rest.split()
                self.codes[int(pid)] = int(code)
        self.gone.set()

    def usable(self) -> bool:
        """Warm and alive: a job given now starts at once."""
        return self.ready.is_set() and self.alive()

    def warming(self) -> bool:
        """Importing, alive, and not for longer than ``WARM_WAIT_SECONDS``: worth waiting for."""
        return (not self.ready.is_set() and self.alive()
                and time.monotonic() - self.started_at < WARM_WAIT_SECONDS)

    def alive(self) -> bool:
        return not self.gone.is_set() and self.proc.poll() is None

    def start(self, run_id: str, log: Path) -> ForkedJob:
        """Fork the job's process; raises ``RuntimeError`` when the server does not answer."""
        try:
            self.proc.stdin.write(f"{run_id}\t{log}\t{time.time():.6f}\n")
            self.proc.stdin.flush()
            return ForkedJob(self._started.get(timeout=START_SECONDS), self)
        except (OSError, queue.Empty) as exc:
            raise RuntimeError(f"the fork server did not start the job ({type(exc).__name__})") from exc

    def close(self) -> None:
        """Let it go (its jobs' processes, if any are left, die with it)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class ForkedJob:
    """A job's process forked by the server: what the worker asks of a ``subprocess.Popen``."""

    def __init__(self, pid: int, server: ForkServer):
        self.pid, self.server = pid, server
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.server.codes.pop(self.pid, None)
            if code is None and self.server.gone.is_set() and not _exists(self.pid):
                # the server died before the job ended: the job's process died with it (parent-death signal)
                code = -signal.SIGKILL
            self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"forked job {self.pid}", timeout)
            time.sleep(0.05)  # the server's thread records the end; nothing to block on here
        return self.returncode


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
