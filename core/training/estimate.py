"""How long a grid should take on one slot: examples x epochs over each base model's measured speed.

The speed is the median ``train_samples_per_second`` of past finished runs of the same base model
(``core.runs.training_speed``); with none yet, a guess (fast for the tiny demo models). Each run adds a few
seconds of start-up and evaluation. Rough, and said to be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import paths
from core.grid import GridSpec
from core.naming import base_model_name

GUESS_DEMO, GUESS_OTHER = 800.0, 150.0  # samples/s before any run of the model has finished
PER_RUN_SECONDS = 6.0  # start-up, evaluation and logging of one run


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the speeds were: "demo-bert-tiny: 812 samples/s (measured); ..."


def row_count(path: str | Path) -> int:
    """Data rows of a text data file (its lines, less the header)."""
    with open(path, "rb") as f:
        return max(0, sum(1 for _ in f) - 1)


def estimate(spec: GridSpec, speed_of: Callable[[str], float | None],
             rows_of: Callable[[Path], int] = row_count) -> Estimate:
    """The grid's duration on one slot; ``speed_of(base_model_name)`` gives a measured speed or None.

    A training file that cannot be read here (missing, or outside the allowed folders of a confined page)
    counts as empty: the estimate never reads what the launch would refuse.
    """
    total, notes = 0.0, set()
    for model in spec.base_model_versions:
        name = base_model_name(model)
        measured = speed_of(name)
        speed = measured or (GUESS_DEMO if name.startswith("demo-") else GUESS_OTHER)
        notes.add(f"{name}: {speed:.0f} samples/s ({'measured' if measured else 'a guess until a run finishes'})")
        for version in spec.dataset_versions:
            path = Path(spec.train_path(version))
            rows = rows_of(path) if path.is_file() and paths.may_read_data(path) else 0
            for params in spec.hyperparameters:
                total += rows * float(params.get("num_train_epochs", 3)) / speed + PER_RUN_SECONDS
        if spec.evaluate_pretrained_model:
            total += PER_RUN_SECONDS
    return Estimate(total, "; ".join(sorted(notes)))
