"""Holding out a share of a team's one labelled file for validation: the same calls every time, traced.

Most teams start from one labelled file (AutoTrain takes one and splits it). :func:`hold_out` splits it in two:

1. seeded: which rows are held out follows from the seed and each row's id (the file's id column, e.g.
   ``call_id``, else the row's place), through a hash, never from a random state: the same file, share and
   seed always give the same parts, on any machine, and reordered rows keep their side when they have ids;
2. stratified: each label keeps about the share in validation, and at least one row on each side; a cell of
   several topics (``"fees; rollover"``) counts under its rarest topic in the file, so rare topics reach
   validation too; a label or topic on one row only cannot be split, and is refused by name;
3. written once, beside each other in ``folder``, named by seed and share
   (``bank_calls.holdout-s42-p20.train.csv``, ``...validation.csv``), with a record
   (``...split.yaml``: the source, its sha256, share, seed, and every row's id on each side); a grid that
   trains on them carries :meth:`Split.summary` as its ``split``, which every run logs as ``split.*`` params.

:func:`split_rows` is the pure part: labels (and ids) in, the two lists of row positions out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import paths
from core.data import (
    FORMATS,
    Columns,
    csv_delimiter,
    file_digest,
    guess_columns,
    read_frame,
    split_sheet,
    split_topics,
    usual_columns,
    with_ids,
)
from core.errors import DataError, GridError

SUMMARY_KEYS = ("source", "source_sha256", "share", "seed", "label_column", "stratified_by", "train_rows",
                "validation_rows", "rows_sha256", "record")
BY_LABEL = "label"
BY_RAREST_TOPIC = "rarest topic of each row"  # a cell of several topics counts under its rarest in the file


def check_share(share: Any, *, key: str = "split.share") -> float:
    """The share held out, a number strictly between 0 and 1 (0.2: a fifth of the rows)."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(share, bool) or not 0.0 < value < 1.0:
        raise GridError(f"the share held out for validation must be a number between 0 and 1 (0.2 holds out a "
                        f"fifth of the rows), not {share!r}.", key=key)
    return value


def check_seed(seed: Any, *, key: str = "split.seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GridError(f"must be a whole number, 0 or more, not {seed!r}.", key=key)
    return seed


def strata(labels: Sequence[Any]) -> tuple[list[str], str]:
    """Each row's stratum and how they were chosen: the label itself, or, where some cell holds several topics,
    the row's rarest topic in the file (ties: the first in alphabetical order)."""
    cells = [_topics(label) for label in labels]
    if all(len(cell) <= 1 for cell in cells):
        return [cell[0] if cell else "" for cell in cells], BY_LABEL
    counts = Counter(t for cell in cells for t in set(cell))
    return [min(cell, key=lambda t: (counts[t], t)) if cell else "" for cell in cells], BY_RAREST_TOPIC


def _topics(cell: Any) -> tuple[str, ...]:
    """A label cell's topics, compared ignoring case; none for a blank cell."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ()
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)  # a label column of ints with a blank reads as floats
    return tuple(t.casefold() for t in split_topics(cell))


def _order(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()


def split_rows(labels: Sequence[Any], share: float, seed: int, *, keys: Sequence[str] | None = None,
               source: str = "the file", rows: Sequence[str] | None = None,
               label_column: str = "label") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(training rows, validation rows): positions into ``labels``, each in file order, disjoint, all rows.

    In each stratum (:func:`strata`) the rows are ordered by a hash of the seed and their key (``keys``: the
    rows' ids; else their positions) and the first ``round(share * n)`` held out, at least one and never all.
    A label (or topic) on a single row cannot be split: a DataError names ``source``, the value and its row.
    """
    share = check_share(share)
    seed = check_seed(seed)
    if not labels:
        raise DataError(source, "has no rows to hold out a share of.", hint="Add labelled rows.")
    keys = list(keys) if keys is not None else [str(i) for i in range(len(labels))]
    if len(keys) != len(labels) or len(set(keys)) != len(keys):
        keys = [str(i) for i in range(len(labels))]  # ids repeated or missing: the rows' places
    where = list(rows) if rows is not None else [f"row {i + 1}" for i in range(len(labels))]
    cells = [_topics(label) for label in labels]
    for i, cell in enumerate(cells):
        if not cell:
            raise DataError(source, f"the label in column {label_column!r} is empty.", row=where[i],
                            hint="Fill it in or remove the row before holding out a share.")
    first_row: dict[str, int] = {}
    for i, cell in enumerate(cells):
        for topic in cell:
            first_row.setdefault(topic, i)
    topics = Counter(t for cell in cells for t in set(cell))
    alone = sorted(t for t, n in topics.items() if n < 2)
    if alone:
        spelled: dict[str, str] = {}  # as the file writes them
        for i in sorted(first_row[t] for t in alone):
            spelled.update({t.casefold(): t for t in split_topics(labels[i]) if t.casefold() not in spelled})
        named = ", ".join(f"{spelled.get(t, t)!r} ({where[first_row[t]]})" for t in alone[:5])
        more = f" and {len(alone) - 5} more" if len(alone) > 5 else ""
        raise DataError(source, f"column {label_column!r}: {named}{more} label{'s' if len(alone) == 1 else ''} only "
                        "one row, too few to hold out a share stratified by topic: each needs at least two rows, "
                        "one to train on and one to check.",
                        hint="Add rows of it, remove that row, or upload a validation file of your own.")
    stratum, _ = strata(labels)
    members: dict[str, list[int]] = {}
    for i, s in enumerate(stratum):
        members.setdefault(s, []).append(i)
    held: list[int] = []
    for s in sorted(members):
        ids = members[s]
        if len(ids) < 2:  # its topic has other rows, under a rarer topic: this one trains
            continue
        count = min(len(ids) - 1, max(1, math.floor(share * len(ids) + 0.5)))
        held += sorted(ids, key=lambda i: _order(seed, keys[i]))[:count]
    chosen = set(held)
    return tuple(i for i in range(len(labels)) if i not in chosen), tuple(sorted(chosen))


@dataclass(frozen=True)
class Split:
    """A file held out: where its parts are, how they were made, and each part's rows by id."""

    source: str
    source_sha256: str
    share: float
    seed: int
    label_column: str
    stratified_by: str
    id_column: str | None
    train_file: str
    validation_file: str
    train_rows: tuple[str, ...]
    validation_rows: tuple[str, ...]
    record: str

    @property
    def rows_sha256(self) -> str:
        """One digest of which rows went where (the record lists them)."""
        text = json.dumps([list(self.train_rows), list(self.validation_rows)])
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """What a grid carries as its ``split`` (the row lists stay in the record)."""
        return {"source": self.source, "source_sha256": self.source_sha256, "share": self.share, "seed": self.seed,
                "label_column": self.label_column, "stratified_by": self.stratified_by,
                "train_rows": len(self.train_rows), "validation_rows": len(self.validation_rows),
                "rows_sha256": self.rows_sha256, "record": self.record}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "id_column": self.id_column, "train_file": self.train_file,
                "validation_file": self.validation_file, "train_rows": list(self.train_rows),
                "validation_rows": list(self.validation_rows)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{**fields, "train_rows": tuple(data["train_rows"]),
                      "validation_rows": tuple(data["validation_rows"])})


def parse_summary(given: Mapping[str, Any] | None, *, key: str = "split") -> dict[str, Any] | None:
    """A grid's ``split`` (what :meth:`Split.summary` gives), checked; None when the grid holds out nothing."""
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise GridError(f"must be the record of a held-out share, like {{source: calls.csv, share: 0.2, seed: 42}}; "
                        f"got {type(given).__name__}.", key=key)
    unknown = sorted(set(given) - set(SUMMARY_KEYS))
    if unknown:
        raise GridError(f"not part of a split's record; its parts are {', '.join(SUMMARY_KEYS)}.",
                        key=f"{key}.{unknown[0]}")
    for name in ("source", "share", "seed"):
        if given.get(name) in (None, ""):
            raise GridError("is required.", key=f"{key}.{name}")
    for name, value in given.items():
        if not isinstance(value, (str, int, float)):
            raise GridError(f"must be a text or a number, not {type(value).__name__}.", key=f"{key}.{name}")
    return {**given, "share": check_share(given["share"], key=f"{key}.share"),
            "seed": check_seed(given["seed"], key=f"{key}.seed")}


def params(summary: Mapping[str, Any] | None) -> dict[str, str]:
    """How a run records the split it trains and is checked on (MLflow params ``split.*``)."""
    return {f"split.{k}": str(v) for k, v in (summary or {}).items()}


def part_stem(source: str | Path, share: float, seed: int) -> str:
    """``bank_calls.csv``, 0.2, 42 -> ``bank_calls.holdout-s42-p20`` (a sheet of a workbook joins the name)."""
    file, sheet = split_sheet(source)
    percent = f"{share * 100:.6g}"
    return f"{file.stem}{f'-{sheet}' if sheet else ''}.holdout-s{seed}-p{percent}"


def _label_column(frame, source: str, columns: Columns | None) -> str:
    if columns is not None:
        lower = {str(c).lower(): str(c) for c in frame.columns}
        if columns.label.lower() not in lower:
            raise DataError(source, f"has no column {columns.label!r} (the mapping's label); its columns are: "
                            f"{', '.join(map(str, frame.columns))}.", hint="Name one of those in the mapping.")
        return lower[columns.label.lower()]
    found = usual_columns(frame) or guess_columns(frame)
    if found is None:
        raise DataError(source, "has no column that reads as its labels, to stratify by.",
                        hint="Say which column holds the label (the mapping on the Compose page).")
    return found.label


def _id_column(frame, label: str) -> str | None:
    """The file's own id column (``call_id``), when its values name every row once."""
    for column in map(str, frame.columns):
        if column != label and (column.lower() == "id" or column.lower().endswith("_id")):
            values = [str(v).strip() for v in frame[column].tolist()]
            if all(values) and len(set(values)) == len(values):
                return column
    return None


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _parts_text(file: Path, frame, train: Sequence[int], validation: Sequence[int]) -> tuple[str, str, str]:
    """(suffix, training text, validation text): a CSV or TSV keeps its own records as written (ids like 0042
    stay text); any other file is written as CSV from what was read."""
    fmt = FORMATS.get(file.suffix.lower())
    if fmt in ("csv", "tsv"):
        delimiter = csv_delimiter(file)
        records = [r for r in csv.reader(io.StringIO(file.read_text(encoding="utf-8-sig")), delimiter=delimiter)
                   if r]
        if len(records) == len(frame) + 1:
            def text(rows: Sequence[int]) -> str:
                out = io.StringIO()
                writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
                writer.writerows([records[0], *(records[i + 1] for i in rows)])
                return out.getvalue()
            return file.suffix.lower(), text(train), text(validation)
    return ".csv", frame.iloc[list(train)].to_csv(index=False), frame.iloc[list(validation)].to_csv(index=False)


def hold_out(source: str | Path, share: float, seed: int, folder: str | Path, *,
             columns: Columns | Mapping | None = None) -> Split:
    """Hold out ``share`` of ``source``'s rows for validation (module doc); the parts and the record in ``folder``.

    Parts already written for the same file content, share, seed and label column are kept as they are.
    ``columns``: the file's mapping, whose label is stratified by; else the usual or guessed label column.
    """
    share, seed = check_share(share), check_seed(seed)
    paths.check_data(source)
    frame, rows = read_frame(source)
    name = str(source)
    if len(frame) == 0:
        raise DataError(name, "has a header but no rows.", hint="Add at least one example.")
    label = _label_column(frame, name, Columns.parse(columns))
    digest = file_digest(source)
    folder = Path(folder)
    stem = part_stem(source, share, seed)
    record_path = folder / f"{stem}.split.yaml"
    kept = _kept(record_path, digest, share, seed, label)
    if kept is not None:
        return kept
    id_column = _id_column(frame, label)
    keys = [str(v).strip() for v in frame[id_column].tolist()] if id_column else None
    train, validation = split_rows(frame[label].tolist(), share, seed, keys=keys, source=name,
                                   rows=with_ids(frame, rows, (label,)), label_column=label)
    _, stratified_by = strata(frame[label].tolist())
    suffix, train_text, validation_text = _parts_text(split_sheet(source)[0], frame, train, validation)
    names = keys or [f"row {i + 1}" for i in range(len(frame))]
    split = Split(source=name, source_sha256=digest, share=share, seed=seed, label_column=label,
                  stratified_by=stratified_by, id_column=id_column,
                  train_file=str(folder / f"{stem}.train{suffix}"),
                  validation_file=str(folder / f"{stem}.validation{suffix}"),
                  train_rows=tuple(names[i] for i in train), validation_rows=tuple(names[i] for i in validation),
                  record=str(record_path))
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    _write(Path(split.train_file), train_text)
    _write(Path(split.validation_file), validation_text)
    _write(record_path, yaml.safe_dump(split.to_dict(), sort_keys=False, allow_unicode=True))  # last: parts ready
    return split


def read_record(path: str | Path) -> Split:
    """A split's record, as :func:`hold_out` wrote it."""
    import yaml

    try:
        return Split.from_dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(path, f"is not a split's record ({exc}).", hint="Hold out the share again.") from None


def _kept(record: Path, digest: str, share: float, seed: int, label: str) -> Split | None:
    """The split already written for this content, share, seed and label column, when its parts are all there."""
    if not record.is_file():
        return None
    try:
        split = read_record(record)
    except DataError:
        return None
    same = (split.source_sha256, split.share, split.seed, split.label_column) == (digest, share, seed, label)
    return split if same and Path(split.train_file).is_file() and Path(split.validation_file).is_file() else None
