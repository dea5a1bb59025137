"""``python -m core.worker``: this machine's worker (``core.jobs.local``), by the name README, tests and scripts use.

    python -m core.worker [--until-idle] [--no-spares]
"""

from __future__ import annotations

import sys

from core.jobs.local import LocalBackend, Slot, Worker, ensure_worker, main, queue_id, stop_worker, worker_info

__all__ = ["LocalBackend", "Slot", "Worker", "ensure_worker", "main", "queue_id", "stop_worker", "worker_info"]

if __name__ == "__main__":
    sys.exit(main())
