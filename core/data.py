"""Reading training and validation files, with errors that name the file and row.

CSV (comma- or semicolon-separated, as Excel writes it in many locales), TSV, JSONL, Parquet and Excel
workbooks (``.xlsx``: the first sheet, or a named one as ``calls.xlsx#Labelled``). A file holds either
sentence pairs (``premise``/``hypothesis`` or ``sentence1``/``sentence2``) or single texts (``text``), and a
``label`` column of ints or strings; other columns are ignored. A file whose columns are named otherwise
(``call_id, transcript, topic``) is read through a :class:`Columns` mapping (``{text: transcript, label:
topic}``) instead of being renamed. Labels are aligned with a pretrained model's ``label2id`` when the names
match, so an NLI model keeps its head.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core import paths
from core.errors import DataError, GridError, TuneboardError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".xlsx": "xlsx"}
PAIR_COLUMNS = (("premise", "hypothesis"), ("sentence1", "sentence2"))
TEXT_COLUMN = "text"
LABEL_COLUMNS = ("label", "labels")
SHEET_MARK = "#"  # "calls.xlsx#Labelled": that sheet of the workbook (else its first)
MAX_LABELS = 200  # a label column with more distinct values is a text or id column named by mistake
MAX_TOPICS = 50  # topics of calls trained or tagged at once: each is one more pass over every call
TOPIC_SEPARATOR = ";"  # several topics in one cell: "fees; rollover"
UPLOAD_LIMIT = "TUNEBOARD_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_MB = 200.0  # the same as server.maxUploadSize in .streamlit/config.toml


@dataclass(frozen=True)
class Examples:
    """Texts and raw labels read from one file."""

    path: str
    rows: tuple[str, ...]  # where each example stands in the file ("line 7", "line 7, call_id C-0042"), for messages
    text_a: tuple[str, ...]
    text_b: tuple[str, ...] | None
    labels: tuple[Any, ...]
    columns: tuple[str, str | None, str]
    digest: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class LabelMapping:
    """How label values map to the classifier's output ids."""

    label2id: Mapping[str, int]  # one name per output id
    keeps_head: bool  # True: the pretrained classifier head is reused as is
    case_insensitive: bool = False  # True when names were matched to the model's own

    def id_of(self, value: Any) -> int | None:
        key = _label_key(value)
        if self.case_insensitive:
            return {k.lower(): v for k, v in self.label2id.items()}.get(key.lower())
        return self.label2id.get(key)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for name, i in self.label2id.items()}

    @property
    def num_labels(self) -> int:
        return len(self.label2id)

    def encode(self, labels: Sequence[Any]) -> list[int]:
        lookup = {k.lower() if self.case_insensitive else k: v for k, v in self.label2id.items()}
        return [lookup[_label_key(x).lower() if self.case_insensitive else _label_key(x)] for x in labels]


@dataclass(frozen=True)
class Columns:
    """Which of a file's columns hold the text, the second text of a pair (optional) and the label.

    ``{text: transcript, label: topic}`` reads a ``call_id, transcript, topic`` file as it is. Names match the
    file's columns ignoring case.
    """

    text: str
    label: str
    text_pair: str | None = None

    ROLES = ("text", "text_pair", "label")

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | Columns | None, *, key: str = "columns") -> Columns | None:
        """A mapping from a grid, a CLI file or a page; None when none is given. A GridError names the key."""
        if mapping is None or isinstance(mapping, Columns):
            return mapping
        if not isinstance(mapping, Mapping):
            raise GridError(f"must map roles to column names, like {{text: transcript, label: topic}}; got "
                            f"{type(mapping).__name__}.", key=key)
        unknown = sorted(set(mapping) - set(cls.ROLES))
        if unknown:
            raise GridError("not a role; the roles are text, text_pair (optional) and label, each naming one of the "
                            "file's columns.", key=f"{key}.{unknown[0]}")
        for role in cls.ROLES:
            value = mapping.get(role)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise GridError(f"must name a column of the file, got {value!r}.", key=f"{key}.{role}")
        for role in ("text", "label"):
            if not mapping.get(role):
                raise GridError(f"is required: name the column that holds the {role}.", key=f"{key}.{role}")
        names = [str(mapping[r]).strip().lower() for r in cls.ROLES if mapping.get(r)]
        if len(set(names)) != len(names):
            raise GridError(f"one column is named for two roles ({', '.join(names)}); name a different column "
                            "for each.", key=key)
        return cls(text=mapping["text"].strip(), label=mapping["label"].strip(),
                   text_pair=(mapping.get("text_pair") or "").strip() or None)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("text", self.text), ("text_pair", self.text_pair), ("label", self.label)) if v}

    def params(self) -> dict[str, str]:
        """How a run records the mapping (MLflow params)."""
        return {f"columns.{role}": name for role, name in self.to_dict().items()}


def split_sheet(path: str | Path) -> tuple[Path, str | None]:
    """``calls.xlsx#Labelled`` -> (``calls.xlsx``, ``Labelled``); any other path -> (path, None)."""
    text = str(path)
    head, mark, sheet = text.rpartition(SHEET_MARK)
    if mark and Path(head).suffix.lower() == ".xlsx":
        return Path(head), sheet.strip() or None
    return Path(text), None


def file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes (and of the sheet's name, for one sheet of a workbook): its content digest."""
    file, sheet = split_sheet(path)
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if sheet:
        h.update(f"{SHEET_MARK}{sheet}".encode())
    return h.hexdigest()


def delimiter_of(text: str) -> str:
    """A CSV's separator: ``,`` or ``;`` (as Excel writes CSV where the decimal mark is a comma).

    The one that splits the header into several fields and the next records into as many is taken; a tie or
    doubt keeps ``,``.
    """
    sample = text[:65536]
    fits = {}
    for candidate in (",", ";"):
        records = [r for r in csv.reader(io.StringIO(sample), delimiter=candidate) if r][:20]
        if records and len(records[0]) > 1:
            # the last record of a sample may be cut off: it is not held against a separator
            body = records[1:-1] if len(records) > 2 else records[1:]
            fits[candidate] = (all(len(r) == len(records[0]) for r in body), len(records[0]))
    if fits.get(";", (False, 0))[0] and not fits.get(",", (False, 0))[0]:
        return ";"
    return ","


def csv_delimiter(path: str | Path) -> str:
    """The separator of a CSV file (``,`` or ``;``), from its first 64 KB; ``,`` for any other file."""
    file, _ = split_sheet(path)
    if FORMATS.get(file.suffix.lower()) != "csv":
        return "\t" if FORMATS.get(file.suffix.lower()) == "tsv" else ","
    with open(file, "rb") as f:
        return delimiter_of(f.read(65536).decode("utf-8-sig", errors="replace"))


def _decoded(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, f"byte {exc.start} is not valid UTF-8.", row=f"line {line}",
                        hint="Save the file as UTF-8 (in Excel: 'CSV UTF-8') and try again.") from None
    if not text.strip():
        raise DataError(path, "the file is empty.", hint="Add a header row and at least one example.")
    return text


def _check_text_file(path: Path, fmt: str, text: str, delimiter: str) -> list[str]:
    """Catch ragged and missing rows before a parser gives a cryptic message.

    Returns where each record starts ("line 7"), as an editor shows it: blank
    lines and texts quoted over several lines make this differ from the row number.
    """
    if fmt == "json":
        if text.lstrip().startswith("["):  # a JSON array: records have no lines of their own
            return []
        return [f"line {i}" for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    starts, previous = [], reader.line_num
    named = {"\t": "tab", ";": "semicolon", ",": "comma"}.get(delimiter, repr(delimiter))
    for record in reader:
        if record:  # blank lines are skipped, as the parser does
            if len(record) != len(header):
                raise DataError(path, f"has {len(record)} fields but the header has {len(header)}.",
                                row=f"line {previous + 1}",
                                hint=f"Check for an unquoted {named} in a text, or a missing value.")
            starts.append(f"line {previous + 1}")
        previous = reader.line_num
    if not starts:
        raise DataError(path, "has a header but no rows.", hint="Add at least one example.")
    return starts


def read_table(path: str | Path):
    """Read a data file into a pandas DataFrame (inside the allowed folders where confined)."""
    paths.check_data(path)
    return read_frame(path)[0]


def _read_workbook(path: Path, sheet: str | None):
    """A workbook's sheet as text cells: (DataFrame, "row N" as Excel numbers them)."""
    import pandas as pd

    try:
        frame = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object,
                              keep_default_na=False, na_values=[""], engine="openpyxl")
    except ValueError as exc:
        if sheet is not None and "not found" in str(exc):
            raise DataError(path, f"has no sheet called {sheet!r}; its sheets: {', '.join(_sheets(path))}.",
                            hint=f"Name one of them after {SHEET_MARK}, or leave the name off for the first.") \
                from None
        raise DataError(path, f"could not be read as an Excel workbook: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a damaged or foreign file
        raise DataError(path, f"could not be read as an Excel workbook ({type(exc).__name__}: {exc}).",
                        hint="Save it from Excel as a .xlsx workbook, or export the sheet as CSV UTF-8.") from None
    frame = frame.dropna(how="all")  # rows Excel keeps formatted but empty
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.reset_index(drop=True), [f"row {i + 2}" for i in frame.index]


def _sheets(path: Path) -> list[str]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True)
    except Exception:  # noqa: BLE001 - the read above already failed on it
        return []
    try:
        return list(book.sheetnames)
    finally:
        book.close()


def read_frame(path: str | Path):
    """(DataFrame, where each row stands in the file) of any data file this tool reads (see the module doc)."""
    import datasets

    path, sheet = split_sheet(path)
    if path.is_dir():
        raise DataError(path, "is a folder, not a data file.", hint="Choose one file inside it.")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(path, f"unsupported file type {path.suffix or '(none)'!r}.",
                        hint=f"Use one of: {', '.join(sorted(FORMATS))}.")
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            near = sorted(p.name for p in path.parent.iterdir() if p.suffix.lower() in FORMATS)[:10]
            hint = f"Files in {path.parent}: {', '.join(near) or 'none'}."
        raise DataError(path, "the file does not exist.", hint=hint)
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty.", hint="Add a header row and at least one example.")
    if fmt == "xlsx":
        return _read_workbook(path, sheet)
    text = _decoded(path) if fmt != "parquet" else ""
    delimiter = "\t" if fmt == "tsv" else delimiter_of(text) if fmt == "csv" else ","
    rows = _check_text_file(path, fmt, text, delimiter) if fmt != "parquet" else []
    # keep_default_na=False: a text or label that reads "NA" or "None" stays text
    csv_options = {"sep": delimiter, "keep_default_na": False, "na_values": [""]}
    builder, kwargs = ("csv", csv_options) if fmt in ("csv", "tsv") else (fmt, {})
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # noqa: BLE001 - datasets wraps parser errors in many types
        cause = exc.__cause__ or exc
        raise DataError(path, f"could not be read as {fmt.upper()}: {cause}") from None
    frame = table.to_pandas()
    if len(rows) != len(frame):
        rows = [f"{'record' if fmt == 'json' else 'row'} {i}" for i in range(1, len(frame) + 1)]
    return frame, rows


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def split_topics(cell: Any) -> tuple[str, ...]:
    """The topics in one label cell: ``"fees; rollover"`` -> ``("fees", "rollover")`` (blanks dropped)."""
    return tuple(part.strip() for part in str(cell).split(TOPIC_SEPARATOR) if part.strip())


def load_examples(path: str | Path, columns: Columns | Mapping | None = None, *, topics: bool = False) -> Examples:
    """Read a data file and check its columns, texts and labels.

    ``columns`` names the text, label (and second text) columns of a file not named the usual way. With
    ``topics`` the label cell holds a call's topics (``"fees; rollover"``); each example's label is then the
    tuple of its topics. Errors name the file, row and column. Where reads are confined (a page, a job
    submitted from one, a team's worker), the file must lie inside the allowed data folders: see ``core.paths``.
    """
    paths.check_data(path)
    return _examples(path, Columns.parse(columns), topics=topics)


def _named(frame, path: str | Path, columns: Columns) -> tuple[tuple[str, ...], str]:
    """The frame's own names of a mapping's columns; a missing one names the file, the role and what exists."""
    have = [str(c) for c in frame.columns]
    lower = {c.lower(): c for c in have}
    found = {}
    for role, name in columns.to_dict().items():
        if name.lower() not in lower:
            raise DataError(path, f"has no column {name!r} (the mapping's {role}); its columns are: "
                            f"{', '.join(have) or '(none)'}.", hint="Name one of those in the mapping.")
        found[role] = lower[name.lower()]
    texts = (found["text"], found["text_pair"]) if "text_pair" in found else (found["text"],)
    return texts, found["label"]


def _usual(frame) -> tuple[tuple[str, ...], str | None]:
    """The text and label columns named the usual way (premise/hypothesis, sentence1/sentence2 or text; label)."""
    lower = {str(c).lower(): str(c) for c in frame.columns}
    pair = next(((lower[a], lower[b]) for a, b in PAIR_COLUMNS if a in lower and b in lower), None)
    text_cols: tuple[str, ...] = pair or ((lower[TEXT_COLUMN],) if TEXT_COLUMN in lower else ())
    return text_cols, next((lower[c] for c in LABEL_COLUMNS if c in lower), None)


def usual_columns(frame) -> Columns | None:
    """The file's columns as a mapping when they are named the usual way (nothing to map), else None."""
    texts, label = _usual(frame)
    if not texts or label is None:
        return None
    return Columns(text=texts[0], label=label, text_pair=texts[1] if len(texts) > 1 else None)


def _guessed(frame, path: str | Path) -> tuple[tuple[str, ...], str]:
    """The usual columns; a file named otherwise is refused with the mapping that would read it."""
    columns = [str(c) for c in frame.columns]
    text_cols, label_col = _usual(frame)
    if not text_cols or label_col is None:
        need = "a 'label' column" if text_cols else \
            "text columns ('premise' and 'hypothesis', 'sentence1' and 'sentence2', or 'text')"
        guess = guess_columns(frame)
        example = f"{{text: {guess.text}, label: {guess.label}}}" if guess else "{text: <its text column>, " \
            "label: <its label column>}"
        raise DataError(path, f"needs {need}; the columns are: {', '.join(columns) or '(none)'}.",
                        hint=f"Say which column is which instead: columns: {example} in the grid (or in Python, "
                             "columns={...}); the Compose page offers them.")
    return text_cols, label_col


def with_ids(frame, rows: list[str], used: tuple[str, ...]) -> list[str]:
    """Each row's place with its own id where the file has one, as a team finds its calls ("line 7, call_id
    C-0042"): the first column named ``id`` or ``..._id`` that is not the text or the label; a blank id leaves
    the place alone."""
    column = next((str(c) for c in frame.columns if str(c) not in used and _is_id_name(str(c))), None)
    if column is None:
        return rows
    ids = [None if _is_blank(v) else _label_key(v)[:40] for v in frame[column].tolist()]
    return [f"{row}, {column} {value}" if value else row for row, value in zip(rows, ids, strict=True)]


def _examples(path: str | Path, columns: Columns | None = None, *, topics: bool = False) -> Examples:
    frame, rows = read_frame(path)
    text_cols, label_col = _named(frame, path, columns) if columns else _guessed(frame, path)
    rows = with_ids(frame, rows, (*text_cols, label_col))
    if len(frame) == 0:
        raise DataError(path, "has a header but no rows.", hint="Add at least one example.")
    for col in (*text_cols, label_col):
        values = frame[col].tolist()
        for i, value in enumerate(values):
            if _is_blank(value):
                what = "label" if col == label_col else "text"
                raise DataError(path, f"the {what} in column '{col}' is empty.", row=rows[i],
                                hint="Fill it in or remove the row.")
    texts = [tuple(str(v) for v in frame[c].tolist()) for c in text_cols]
    labels = tuple(split_topics(v) for v in frame[label_col]) if topics else tuple(frame[label_col].tolist())
    distinct = {t.casefold() for cell in labels for t in cell} if topics else {_label_key(v) for v in labels}
    limit = MAX_TOPICS if topics else MAX_LABELS
    if len(distinct) > limit:
        what = "topics" if topics else "values"
        raise DataError(path, f"column {label_col!r} has {len(distinct)} different {what}: a label column holds "
                        f"a few classes or topics (at most {limit}).",
                        hint="Is it a text or id column? Name the column that holds the label (e.g. the topic).")
    return Examples(path=str(path), rows=tuple(rows), text_a=texts[0], text_b=texts[1] if len(texts) > 1 else None,
                    labels=labels, columns=(text_cols[0], text_cols[1] if len(text_cols) > 1 else None, label_col),
                    digest=file_digest(path))


def guess_columns(frame) -> Columns | None:
    """A mapping for a file named otherwise: the text is the longest free-text column; the label a column with a
    few distinct values (at most ``MAX_LABELS``, repeated across rows); None when no two such columns exist."""
    if len(frame) == 0:
        return None
    texts, labels = [], []
    for column in frame.columns:
        values = [str(v) for v in frame[column].tolist() if not _is_blank(v)]
        if not values:
            continue
        distinct = len(set(values))
        length = sum(len(v) for v in values) / len(values)
        if distinct <= MAX_LABELS and distinct < max(2, 0.5 * len(values)):
            labels.append((distinct, str(column)))
        if not all(v.replace(".", "", 1).lstrip("-").isdigit() for v in values):
            texts.append((length, str(column)))
    if not texts:
        return None
    text = max(texts)[1]
    label = next((name for _, name in sorted(labels) if name != text and len(set(frame[name])) >= 2), None)
    if label is None:  # a small file repeats few labels: the column with the fewest values that is not an id
        others = [(frame[c].nunique(), str(c)) for c in frame.columns
                  if str(c) != text and not _is_id_name(str(c)) and frame[c].nunique() >= 2]
        label = min(others)[1] if others else None
    return Columns(text=text, label=label) if label else None


def _is_id_name(name: str) -> bool:
    """A column named as an identifier (``id``, ``call_id``, ``Ticket_ID``): never a label, a call's own id."""
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id")


def upload_limit_mb() -> float:
    """The largest upload kept, in MB: ``TUNEBOARD_MAX_UPLOAD_MB``, else 200 (Streamlit's own limit)."""
    return megabytes_from_env(UPLOAD_LIMIT, DEFAULT_UPLOAD_MB)


def megabytes_from_env(variable: str, default: float) -> float:
    """A size limit in MB from ``variable``, else ``default``; a value that is not a size above 0 is refused."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        limit = float(raw)
    except ValueError:
        limit = math.nan
    if not math.isfinite(limit) or limit <= 0:
        raise TuneboardError(f"{variable}={raw!r} is not a size: set it to a number of MB above 0, e.g. 200.")
    return limit


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.1f} KB"


def save_upload(name: str, content: bytes, folder: str | Path) -> Path:
    """Keep an uploaded file in ``folder`` only if it is small enough and reads cleanly; return where it is.

    It is checked from a private staging copy and moved in by a rename, so a refused or interrupted upload
    leaves nothing behind in ``folder``.
    """
    name = Path(name).name  # never a path: "../x.csv" is kept as "x.csv"
    limit = upload_limit_mb()
    if len(content) > limit * 2**20:
        raise DataError(name, f"is {_size(len(content))}, over the upload limit of {_size(limit * 2**20)}.",
                        hint=f"Upload a smaller sample, put the file in the data folder on the server, or raise "
                             f"{UPLOAD_LIMIT}.")
    if Path(name).suffix.lower() not in FORMATS:
        raise DataError(name, "unsupported file type.", hint=f"Use one of: {', '.join(sorted(FORMATS))}.")
    return keep_checked(name, content, folder, _check_upload)


def _check_upload(path: Path) -> None:
    """An upload reads cleanly; named the usual way, its texts and labels are checked too (a file named
    otherwise is checked through the mapping chosen for it, before any run)."""
    frame, _ = read_frame(path)
    texts, label = _usual(frame)
    if texts and label:
        _examples(path)


def keep_checked(name: str, content: bytes, folder: str | Path, check) -> Path:
    """Write ``content`` to a private staging copy, ``check`` it there, then move it into ``folder`` as ``name``
    by a rename: a refused or interrupted upload leaves nothing in ``folder``. Errors name the upload."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / name
        staged.write_bytes(content)
        try:
            check(staged)
        except DataError as exc:  # name the upload, not the staging copy
            exc.path, exc.args = name, (str(exc).replace(str(staged), name),)
            raise
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.part"
        try:
            partial.write_bytes(content)
            os.replace(partial, folder / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return folder / name


def align_labels(train: Examples, validation: Examples, model_label2id: Mapping[str, int] | None,
                 model_num_labels: int) -> LabelMapping:
    """Choose label ids: the model's own when the names match, else new ones in sorted order.

    Refuses a training set with a single class and validation labels never seen in training.
    """
    train_keys = [_label_key(x) for x in train.labels]
    seen = set(train_keys)
    mapping = _choose_mapping(seen, model_label2id, model_num_labels)
    used = {mapping.id_of(k) for k in seen}
    if len(used) < 2:
        raise DataError(train.path, f"every row has the label {train_keys[0]!r}; a classifier needs at least two.",
                        hint="Add examples of the other classes.")
    for row, value in zip(validation.rows, validation.labels, strict=True):
        if mapping.id_of(value) not in used:
            raise DataError(validation.path, f"the label {_label_key(value)!r} never appears in the training "
                            f"file {train.path} (its labels: {', '.join(sorted(seen))}).", row=row,
                            hint="Use the same label names in both files.")
    return mapping


def _choose_mapping(seen: set[str], model_label2id: Mapping[str, int] | None, model_num_labels: int) -> LabelMapping:
    model = dict(model_label2id or {})
    lowered = {k.lower() for k in model}
    if model and not _generic(model) and all(k.lower() in lowered for k in seen):
        # every label is one of the model's: keep its head and its ids (names matched ignoring case)
        return LabelMapping(label2id=model, keeps_head=True, case_insensitive=True)
    if all(k.isdigit() for k in seen):  # integer class ids
        top = max(int(k) for k in seen)
        size = model_num_labels if top < model_num_labels else top + 1
        return LabelMapping(label2id={str(i): i for i in range(size)}, keeps_head=size == model_num_labels)
    return LabelMapping(label2id={k: i for i, k in enumerate(sorted(seen))}, keeps_head=False)


def _generic(label2id: Mapping[str, int]) -> bool:
    """Hugging Face's placeholder names (LABEL_0, LABEL_1, ...) carry no meaning."""
    return all(k.lower().startswith("label_") for k in label2id)


def expand_topics(examples: Examples) -> tuple[Examples, int]:
    """Rows labelled with several topics (``"fees; rollover"``) as one example per topic, for a classifier that
    gives one label per text; and how many rows were so labelled (0: the examples as they were)."""
    several = {i for i, label in enumerate(examples.labels)
               if isinstance(label, str) and len(split_topics(label)) > 1}
    if not several:
        return examples, 0
    rows, first, second, labels = [], [], [], []
    for i, label in enumerate(examples.labels):
        for topic in split_topics(label) if i in several else (label,):
            rows.append(examples.rows[i])
            first.append(examples.text_a[i])
            if examples.text_b is not None:
                second.append(examples.text_b[i])
            labels.append(topic)
    return replace(examples, rows=tuple(rows), text_a=tuple(first),
                   text_b=tuple(second) if examples.text_b is not None else None, labels=tuple(labels)), len(several)
