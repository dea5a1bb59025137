"""The one check of a training run's inputs: its data files, its base model, and the labels between them.

It runs before anything exists (a grid from Python, the CLI or a page; an evaluation queued from the Registry)
and again inside each run, whose files may have changed since. Errors name the file, row or model
(``core.data``, ``core.models.loading``); where reads are confined they stay inside the allowed folders
(``core.paths``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import paths
from core.data import Examples, LabelMapping, align_labels, load_examples
from core.grid import GridSpec, RunSpec
from core.models.loading import load_config


@dataclass(frozen=True)
class Inputs:
    """What one run reads: validation and (for a fine-tune) training examples, the model's config, the labels."""

    validation: Examples
    train: Examples | None
    config: Any
    mapping: LabelMapping


def labels_for(train: Examples, validation: Examples, config: Any) -> LabelMapping:
    """The label ids a model trained on ``train`` uses: the pretrained head's when its names match."""
    return align_labels(train, validation, getattr(config, "label2id", None), getattr(config, "num_labels", 2))


def read_inputs(spec: RunSpec) -> Inputs:
    """Read and check one run's files and model; a fine-tune's output folder must be writable there too."""
    validation = load_examples(spec.validation_path)
    train = load_examples(spec.train_path) if spec.kind == "fine_tune" else None
    config = load_config(spec.base_model)
    if spec.kind == "fine_tune":
        paths.check_output(spec.output_dir)
    return Inputs(validation, train, config, labels_for(train or validation, validation, config))


def check_grid(grid: GridSpec) -> list[RunSpec]:
    """The grid's runs, once every file, model and label of them is checked; raises the first problem found.

    Each file and model is read once, however many runs share it.
    """
    runs = grid.expand()
    validation = load_examples(grid.validation_file)
    configs = {m: load_config(m) for m in grid.base_model_versions}
    for version in grid.dataset_versions:
        train = load_examples(grid.train_path(version))
        for config in configs.values():
            labels_for(train, validation, config)
    if any(run.kind == "fine_tune" for run in runs):
        paths.check_output(grid.output_dir)  # confined (a page): the server writes only where allowed
    return runs
