"""The user's file in, the scored file out.

Reading goes through ``core.data`` (CSV, TSV, JSONL, Parquet; undecodable bytes, ragged rows and empty files
are named there with their line). Here: the size cap, which columns hold the texts, blank texts, and writing
the result: the input's columns, then ``predicted_label`` and ``score_<label>`` per class, or one
``score_<topic>`` per topic and ``topics`` (those over the threshold); then the evidence, the text of the window
that decided (``core.models.windows``), when some text of the file was longer than one window: one ``evidence``
column (filled where the text was), or one ``evidence: <topic>`` per topic (filled where tagged). Text cells a
spreadsheet would run as a formula are neutralised (``core.compare.neutralised``), the evidence's too. The result
is written to a temporary file beside the output and renamed into place, so a failure never leaves half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import paths
from core.compare import neutralised
from core.data import (
    FORMATS,
    PAIR_COLUMNS,
    csv_delimiter,
    delimiter_of,
    keep_checked,
    megabytes_from_env,
    read_frame,
    split_sheet,
    with_ids,
)
from core.errors import DataError
from core.scoring.topics import tagged as over_threshold

if TYPE_CHECKING:
    from core.models.windows import Read
    from core.scoring.topics import TopicReading

MAX_MB_VARIABLE = "TUNEBOARD_SCORE_MAX_MB"
DEFAULT_MAX_MB = 200.0
TEXT_COLUMNS = ("text", "transcript", "premise", "sentence1", "sentence")
TRANSCRIPT_COLUMNS = ("transcript", "text", "premise", "sentence1")


@dataclass(frozen=True)
class Table:
    """A file read for scoring: its frame, and where each row stands in the file ("line 7") for messages."""

    path: str
    frame: object  # pandas.DataFrame
    rows: tuple[str, ...]
    fmt: str
    delimiter: str = ","  # a CSV's separator: the scored CSV is written with the same one

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)


def max_mb() -> float:
    """The largest file scored, in MB: ``TUNEBOARD_SCORE_MAX_MB``, else 200."""
    return megabytes_from_env(MAX_MB_VARIABLE, DEFAULT_MAX_MB)


def read(path: str | Path) -> Table:
    """Read a file to score (inside the allowed folders where reads are confined); errors name the file and line."""
    paths.check_data(path)
    return _read_table(Path(path))


def _read_table(path: Path) -> Table:
    file, _ = split_sheet(path)
    if file.is_file():
        size, limit = file.stat().st_size, max_mb()
        if size > limit * 2**20:
            raise DataError(path, f"is {size / 2**20:.1f} MB, over the limit of {limit:g} MB for scoring.",
                            hint=f"Split it into smaller files, or raise {MAX_MB_VARIABLE}.")
    frame, rows = read_frame(path)
    if len(frame) == 0:
        raise DataError(path, "has a header but no rows.", hint="Add at least one text to score.")
    return Table(str(path), frame, tuple(rows), FORMATS[file.suffix.lower()], csv_delimiter(path))


def choose_columns(table: Table, text_column: str | None = None, pair_column: str | None = None, *,
                   transcripts: bool = False) -> tuple[str, str | None]:
    """(text column, second text column or None). Named columns must exist; unnamed ones are guessed.

    As for training (``core.data``): ``premise``/``hypothesis`` or ``sentence1``/``sentence2`` make pairs, else
    ``text``. Topic mode takes a ``transcript`` column first, then ``text``, and no second column. The texts
    must not be blank: the row is named.
    """
    columns = table.columns
    lower = {c.lower(): c for c in columns}

    def named(column: str) -> str:
        if column in columns:
            return column
        if column.lower() in lower:
            return lower[column.lower()]
        raise DataError(table.path, f"has no column {column!r}; its columns are: {', '.join(columns)}.",
                        hint="Choose one of those columns, or rename the column in the file.")

    first = named(text_column) if text_column else None
    second = named(pair_column) if pair_column and not transcripts else None
    if first is None and second is None and not transcripts:
        found = next(((lower[a], lower[b]) for a, b in PAIR_COLUMNS if a in lower and b in lower), None)
        if found:
            first, second = found
    if first is None:
        guesses = TRANSCRIPT_COLUMNS if transcripts else TEXT_COLUMNS
        first = next((lower[c] for c in guesses if c in lower), None)
    if first is None:
        what = "a 'transcript' or 'text' column" if transcripts else \
            "a 'text' column (or 'premise' and 'hypothesis' for a sentence-pair model)"
        raise DataError(table.path, f"needs {what}; its columns are: {', '.join(columns)}.",
                        hint="Choose the column that holds the texts, or rename it in the file.")
    for column in (first, second):
        if column is not None:
            _check_texts(table, column)
    return first, second


def _check_texts(table: Table, column: str) -> None:
    for i, value in enumerate(table.frame[column].tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            (row,) = with_ids(table.frame.iloc[[i]], [table.rows[i]], (column,))  # "line 7, call_id C-0042"
            raise DataError(table.path, f"the text in column {column!r} is empty.", row=row,
                            hint="Fill it in or remove the row.")


def texts(table: Table, column: str) -> list[str]:
    return [str(v) for v in table.frame[column].tolist()]


def classified(table: Table, probabilities, id2label: Mapping[int, str], evidence: Sequence[str] | None = None):
    """The input's columns, ``predicted_label`` and ``score_<label>`` for each class (rounded to 6 places), then
    ``evidence`` when given (one text per row, :func:`row_evidence`)."""
    frame = table.frame.copy()
    names = [str(id2label[i]) for i in range(len(id2label))]
    frame[_free(frame, "predicted_label")] = [names[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(names):
        frame[_free(frame, f"score_{name}")] = probabilities[:, i].round(6)
    if evidence is not None:
        frame[_free(frame, "evidence")] = list(evidence)
    return frame


def tagged(table: Table, scores, topics: Sequence[str], threshold: float,
           evidence: Sequence[Sequence[str]] | None = None):
    """The input's columns, ``score_<topic>`` per topic (entailment probability) and ``topics``: those at or over
    the threshold, the likeliest first, separated by "; "; then, when ``evidence`` is given (per row, per topic,
    :func:`topic_evidence`), ``evidence: <topic>`` per topic: the deciding window's text where the topic is
    tagged, blank elsewhere."""
    frame = table.frame.copy()
    for j, topic in enumerate(topics):
        frame[_free(frame, f"score_{topic}")] = scores[:, j].round(6)
    frame[_free(frame, "topics")] = ["; ".join(found) for found in over_threshold(scores, list(topics), threshold)]
    if evidence is not None:
        for j, topic in enumerate(topics):
            frame[_free(frame, f"evidence: {topic}")] = [texts[j] if row[j] >= threshold else ""
                                                        for texts, row in zip(evidence, scores, strict=True)]
    return frame


def has_long_texts(split) -> bool:
    """Whether some text was longer than one window (read in several, or cut): then the result shows evidence;
    a file of short texts comes back as before, each text its own evidence."""
    return bool(len(split.counts)) and (int(split.counts.max()) > 1 or int(split.cut.sum()) > 0)


def topic_evidence(read: TopicReading) -> list[list[str]]:
    """Per call, per topic, the text of the window that decided the topic's score."""
    calls, topics = read.scores.shape
    return [[read.evidence(i, j).text for j in range(topics)] for i in range(calls)]


def row_evidence(read: Read) -> list[str]:
    """Per text, the text of its deciding window where it was read in more than one window; blank where the
    window is the whole text (nothing to add) or all a truncating reading kept."""
    return [read.evidence(i).text if read.split.counts[i] > 1 else "" for i in range(len(read.probabilities))]


def _free(frame, name: str) -> str:
    """``name``, or ``name_2``... when the input already has a column of that name."""
    taken, candidate, n = {str(c) for c in frame.columns}, name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def output_format(output: str | Path, input_path: str | Path | None = None) -> str:
    """The output's format: from its extension when it has a known one, else the input's."""
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None and input_path is not None:
        fmt = FORMATS.get(split_sheet(input_path)[0].suffix.lower())
    if fmt is None:
        raise DataError(output, "the output needs a file type.", hint=f"End its name in one of: "
                        f"{', '.join(sorted(FORMATS))}.")
    return fmt


def write(frame, output: str | Path, fmt: str | None = None, delimiter: str = ",") -> Path:
    """Write ``frame`` as ``fmt`` (from the extension when None; a CSV separated by ``delimiter``), via a temporary
    file and a rename. Text a spreadsheet would run as a formula never is: a workbook's cells are typed as text,
    and the other formats get a leading quote."""
    output = Path(output)
    fmt = fmt or output_format(output)
    safe = neutralised(frame) if fmt != "xlsx" else frame
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    os.close(fd)
    try:
        if fmt == "csv":
            safe.to_csv(tmp, index=False, sep=delimiter)
        elif fmt == "xlsx":
            _write_workbook(frame, tmp)
        elif fmt == "tsv":
            safe.to_csv(tmp, index=False, sep="\t")
        elif fmt == "json":
            safe.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            safe.to_parquet(tmp, index=False)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output


def _write_workbook(frame, path: str) -> None:
    """One sheet; every text cell typed as text, so a call that starts with "=" is never a formula."""
    import math

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "scored"
    for r, values in enumerate([list(frame.columns), *frame.itertuples(index=False, name=None)], start=1):
        for c, value in enumerate(values, start=1):
            if isinstance(value, float) and math.isnan(value):
                continue
            cell = sheet.cell(row=r, column=c)
            if isinstance(value, (bool, int, float)):
                cell.value = value
            else:
                cell.value = str(value)
                cell.data_type = "s"
    book.save(path)


def save_upload(name: str, content: bytes, folder: str | Path) -> Path:
    """Keep an uploaded file to score in ``folder`` only if it is under the cap and reads cleanly; return its path.

    Checked from a private staging copy, then moved in by a rename: a refused upload leaves nothing in ``folder``.
    Messages name the upload, not the staging copy.
    """
    name = Path(name).name  # never a path: "../x.csv" is kept as "x.csv"
    limit = max_mb()
    if len(content) > limit * 2**20:
        raise DataError(name, f"is {len(content) / 2**20:.1f} MB, over the limit of {limit:g} MB for scoring.",
                        hint=f"Split it into smaller files, or raise {MAX_MB_VARIABLE}.")
    if Path(name).suffix.lower() not in FORMATS:
        raise DataError(name, "unsupported file type.", hint=f"Use one of: {', '.join(sorted(FORMATS))}.")
    return keep_checked(name, content, folder, _read_table)


def preview(name: str, content: bytes, rows: int = 5):
    """The first ``rows`` rows of a scored file's bytes (a download's preview), in the format its name says."""
    import io

    import pandas as pd

    fmt, buffer = output_format(name), io.BytesIO(content)
    if fmt == "parquet":
        return pd.read_parquet(buffer).head(rows)
    if fmt == "json":
        return pd.read_json(buffer, lines=True, dtype=False).head(rows)
    if fmt == "xlsx":
        return pd.read_excel(buffer, dtype=str, keep_default_na=False, nrows=rows, engine="openpyxl")
    sep = "\t" if fmt == "tsv" else delimiter_of(content[:65536].decode("utf-8-sig", errors="replace"))
    return pd.read_csv(buffer, sep=sep, dtype=str, keep_default_na=False, nrows=rows)
