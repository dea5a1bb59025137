"""What a grid's runs will read, before launch: each file's texts in each base model's tokens, the windows they
make at the grid's ``max_length``, and the forward passes that means.

A run reads every text whole, as windows (``core.models.windows``), so a grid's cost follows its windows, not
its rows. Per run and epoch a fine-tune trains on one row per window of a plain text, or on ``top_windows`` of
each pair's call for topic pairs (``core.training.bags``), after scoring every window of the long calls' pairs to
choose them; it evaluates every validation window; and topic evaluation reads every validation call's windows
against every topic. Compose shows this, and :mod:`core.training.estimate` counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import Columns, Examples, load_examples
from core.grid import GridSpec
from core.models import windows
from core.models.sources import is_reference, local_folder
from core.naming import base_model_name
from core.tokenizer import load_tokenizer
from core.topic_pairs import TopicPairs, all_topics


@dataclass(frozen=True)
class FileReading:
    """One data file as one base model will read it."""

    model: str
    file: str
    texts: int
    tokens_median: float
    tokens_p90: float
    tokens_max: int
    windows: int  # every text's windows
    windows_max: int
    max_length: int
    budget: int
    rows: int  # what one epoch trains on (a training file) or evaluates (the validation file)
    choosing: int  # forward passes one epoch spends choosing the windows of long calls' pairs

    @property
    def windows_mean(self) -> float:
        return self.windows / max(self.texts, 1)

    def row(self) -> dict[str, object]:
        """As a line of Compose's table."""
        return {"base model": self.model, "file": self.file, "texts": self.texts,
                "tokens (median)": int(self.tokens_median), "tokens (p90)": int(self.tokens_p90),
                "tokens (max)": self.tokens_max, "windows per text": round(self.windows_mean, 1),
                "windows (max)": self.windows_max, "window (tokens)": self.budget}


@dataclass(frozen=True)
class GridReading:
    files: list[FileReading]
    topics: int
    max_length: int

    def topic_passes(self, validation_file: str) -> int:
        """Forward passes one run's topic evaluation makes: validation windows x topics (largest over models)."""
        return max((f.windows * self.topics for f in self.files if f.file == validation_file), default=0)

    def for_file(self, model: str, file: str) -> FileReading | None:
        return next((f for f in self.files if f.model == model and f.file == file), None)


def read_grid(spec: GridSpec, *, tokenizer_of, examples_of=None) -> GridReading:
    """Every (base model, file) of the grid as its runs will read it, at the first hyperparameter set's
    ``max_length`` (128 when not set) and ``window_overlap``.

    ``tokenizer_of(model)`` loads a base model's tokenizer; ``examples_of(path, columns, topics)`` reads a file
    (``core.data.load_examples`` by default; a page passes a cached one). A file or model that cannot be read
    raises the same plain errors as launching would.
    """
    examples_of = examples_of or (lambda path, columns, topics: load_examples(path, columns, topics=topics))
    first = dict(spec.hyperparameters[0]) if spec.hyperparameters else {}
    reading = windows.Reading.from_settings(first, 128)
    columns, pairs = Columns.parse(spec.columns), TopicPairs.parse(spec.topic_pairs)
    files = {Path(spec.validation_file).name: spec.validation_file,
             **{Path(spec.train_path(v)).name: spec.train_path(v) for v in spec.dataset_versions}}
    read = {name: examples_of(path, columns, pairs is not None) for name, path in files.items()}
    topics = all_topics(*read.values()) if pairs is not None else []
    hypotheses = [pairs.template.format(t) for t in topics] if pairs is not None else None
    found = []
    for model in spec.base_model_versions:
        tokenizer = tokenizer_of(model)
        limit = min(reading.max_length, _declared(tokenizer) or reading.max_length)
        budget = windows.budget(tokenizer, limit, hypotheses)
        for name, examples in read.items():
            split = windows.split(list(examples.text_a), tokenizer, budget, overlap=reading.overlap_for(budget),
                                  truncate=reading.truncate)
            counts, trains = split.counts, name != Path(spec.validation_file).name
            if trains and pairs is not None and pairs.train_window and pairs.train_window < budget \
                    and not reading.truncate:
                counts = windows.split(list(examples.text_a), tokenizer, pairs.train_window,  # shorter, to train
                                       overlap=reading.overlap_for(pairs.train_window),
                                       truncate=reading.truncate).counts
            rows, choosing = _rows(examples, counts, pairs, len(topics), trains=trains)
            tokens = split.tokens if len(split.tokens) else np.zeros(1)
            found.append(FileReading(base_model_name(model), name, len(examples), float(np.median(tokens)),
                                     float(np.percentile(tokens, 90)), int(tokens.max()), len(split.windows),
                                     int(split.counts.max(initial=0)), limit, budget, rows, choosing))
    return GridReading(found, len(topics), reading.max_length)


def tokenizer_of(name_or_path: str):
    """A base model's tokenizer, found as training finds it (a folder, a registered model or a hub id)."""
    local = local_folder(name_or_path) if is_reference(name_or_path) else Path(name_or_path).expanduser()
    return load_tokenizer(name_or_path, str(local) if local.exists() else name_or_path)


def _declared(tokenizer) -> int | None:
    declared = getattr(tokenizer, "model_max_length", None)
    return declared if isinstance(declared, int) and 0 < declared < 1_000_000 else None


def _rows(examples: Examples, counts: np.ndarray, pairs: TopicPairs | None, topics: int, *,
          trains: bool = True) -> tuple[int, int]:
    """(rows one epoch sees, passes spent choosing windows) for a file's examples with these window counts; only
    a training file's pairs with a topic the call lacks take their ``hard_negatives``."""
    if pairs is None:
        return int(counts.sum()), 0
    hard = pairs.hard_negatives if trains else 0
    rows = choosing = 0
    for own, count in zip(examples.labels, counts, strict=True):
        negatives = min(pairs.negatives, max(topics - len(own), 0))
        rows += len(own) * min(pairs.top_windows, int(count)) \
            + negatives * min(pairs.top_windows + hard, int(count))
        choosing += (len(own) + negatives) * int(count) if count > 1 else 0
    return rows, choosing
