"""The one check of a training run's inputs: its data files, its base model, and the labels between them.

It runs before anything exists (a grid from Python, the CLI or a page; an evaluation queued from the Registry)
and again inside each run, whose files may have changed since. Errors name the file, row or model
(``core.data``, ``core.models.loading``); where reads are confined they stay inside the allowed folders
(``core.paths``).

Files are read through the run's column mapping (``core.data.Columns``). With topic pairs
(``core.topic_pairs``) the calls become NLI pairs in the base model's own label names; without them, a call
labelled with several topics (``"fees; rollover"``) is one example per topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import paths
from core.data import Columns, Examples, LabelMapping, align_labels, expand_topics, load_examples
from core.grid import GridSpec, RunSpec
from core.models.loading import load_config
from core.topic_pairs import TopicPairs, all_topics, pair_config, without_calls_of


@dataclass(frozen=True)
class Inputs:
    """What one run reads: the examples it is evaluated and trained on (pairs, for topic runs), the model's
    config and the labels; for topic runs also the validation calls with their true topics and every topic."""

    validation: Examples
    train: Examples | None
    config: Any
    mapping: LabelMapping
    calls: Examples | None = None
    topics: tuple[str, ...] = ()
    held_out: int = 0  # training calls left out: the validation file holds them too
    expanded: int = 0  # rows labelled with several topics, each read as one example per topic


def labels_for(train: Examples, validation: Examples, config: Any) -> LabelMapping:
    """The label ids a model trained on ``train`` uses: the pretrained head's when its names match."""
    return align_labels(train, validation, getattr(config, "label2id", None), getattr(config, "num_labels", 2))


def prepare(validation: Examples, train: Examples | None, config: Any, pairs: TopicPairs | None) -> Inputs:
    """The examples a model trains and is evaluated on, from the files as read (calls with topics, for pairs)."""
    if pairs is None:
        validation, expanded = expand_topics(validation)
        more = 0
        if train is not None:
            train, more = expand_topics(train)
        return Inputs(validation, train, config, labels_for(train or validation, validation, config),
                      expanded=expanded + more)
    topics = all_topics(train, validation)
    held_out = 0
    if train is not None:
        train, held_out = without_calls_of(train, validation)
    config = pair_config(config)  # an encoder without a head: a new NLI head's labels
    id2label = getattr(config, "id2label", None) or {}
    train_pairs = pairs.build(train, topics, id2label) if train is not None else None
    validation_pairs = pairs.build(validation, topics, id2label)
    return Inputs(validation_pairs, train_pairs, config, labels_for(train_pairs or validation_pairs,
                                                                     validation_pairs, config),
                  calls=validation, topics=tuple(topics), held_out=held_out)


def read_inputs(spec: RunSpec) -> Inputs:
    """Read and check one run's files and model; a fine-tune's output folder must be writable there too."""
    columns, pairs = Columns.parse(spec.columns), TopicPairs.parse(spec.topic_pairs)
    validation = load_examples(spec.validation_path, columns, topics=pairs is not None)
    train = load_examples(spec.train_path, columns, topics=pairs is not None) if spec.kind == "fine_tune" else None
    config = load_config(spec.base_model)
    if spec.kind == "fine_tune":
        paths.check_output(spec.output_dir)
    return prepare(validation, train, config, pairs)


def check_grid(grid: GridSpec) -> list[RunSpec]:
    """The grid's runs, once every file, model and label of them is checked; raises the first problem found.

    Each file and model is read once, however many runs share it.
    """
    runs = grid.expand()
    columns, pairs = Columns.parse(grid.columns), TopicPairs.parse(grid.topic_pairs)
    validation = load_examples(grid.validation_file, columns, topics=pairs is not None)
    configs = {m: load_config(m) for m in grid.base_model_versions}
    if grid.evaluate_pretrained_model:
        for config in configs.values():  # a baseline evaluates on the same examples
            prepare(validation, None, config, pairs)
    for version in grid.dataset_versions:
        train = load_examples(grid.train_path(version), columns, topics=pairs is not None)
        for config in configs.values():
            prepare(validation, train, config, pairs)
    if any(run.kind == "fine_tune" for run in runs):
        paths.check_output(grid.output_dir)  # confined (a page): the server writes only where allowed
    return runs
