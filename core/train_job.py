"""``python -m core.train_job RUN_ID [--log LOG_PATH] | --wait``: one job's process (``core.jobs.runner``).

The name the local worker, its warm spares and Ray's job entrypoint start; any kind of job runs through it.
"""

from __future__ import annotations

from core.jobs.runner import run_as_main

if __name__ == "__main__":
    run_as_main()
