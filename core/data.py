"""Reading training and validation files, with errors that name the file and row.

CSV, TSV, JSONL and Parquet are read through ``datasets``. A file holds
either sentence pairs (``premise``/``hypothesis`` or ``sentence1``/``sentence2``)
or single texts (``text``), and a ``label`` column of ints or strings; other
columns are ignored. Labels are aligned with a pretrained model's
``label2id`` when the names match, so an NLI model keeps its head.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import paths
from core.errors import DataError, TuneboardError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
PAIR_COLUMNS = (("premise", "hypothesis"), ("sentence1", "sentence2"))
TEXT_COLUMN = "text"
LABEL_COLUMNS = ("label", "labels")
UPLOAD_LIMIT = "TUNEBOARD_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_MB = 200.0  # the same as server.maxUploadSize in .streamlit/config.toml


@dataclass(frozen=True)
class Examples:
    """Texts and raw labels read from one file."""

    path: str
    rows: tuple[str, ...]  # where each example stands in the file ("line 7"), for messages
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


def file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes: the dataset's content digest."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_text_file(path: Path, fmt: str) -> list[str]:
    """Catch undecodable bytes, ragged and missing rows before a parser gives a cryptic message.

    Returns where each record starts ("line 7"), as an editor shows it: blank
    lines and texts quoted over several lines make this differ from the row number.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, f"byte {exc.start} is not valid UTF-8.", row=f"line {line}",
                        hint="Save the file as UTF-8 (in Excel: 'CSV UTF-8') and try again.") from None
    if not text.strip():
        raise DataError(path, "the file is empty.", hint="Add a header row and at least one example.")
    if fmt == "json":
        if text.lstrip().startswith("["):  # a JSON array: records have no lines of their own
            return []
        return [f"line {i}" for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
    header = next(reader, [])
    starts, previous = [], reader.line_num
    for record in reader:
        if record:  # blank lines are skipped, as the parser does
            if len(record) != len(header):
                raise DataError(path, f"has {len(record)} fields but the header has {len(header)}.",
                                row=f"line {previous + 1}",
                                hint="Check for an unquoted comma or tab in a text, or a missing value.")
            starts.append(f"line {previous + 1}")
        previous = reader.line_num
    if not starts:
        raise DataError(path, "has a header but no rows.", hint="Add at least one example.")
    return starts


def read_table(path: str | Path):
    """Read a data file into a pandas DataFrame through ``datasets`` (inside the allowed folders where confined)."""
    paths.check_data(path)
    return read_frame(Path(path))[0]


def read_frame(path: Path):
    """(DataFrame, where each row stands in the file)."""
    import datasets

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
    rows = _check_text_file(path, fmt) if fmt != "parquet" else []
    # keep_default_na=False: a text or label that reads "NA" or "None" stays text
    csv_options = {"keep_default_na": False, "na_values": [""]}
    builder, kwargs = ("csv", {"sep": "\t", **csv_options}) if fmt == "tsv" else \
        (fmt, csv_options if fmt == "csv" else {})
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


def load_examples(path: str | Path) -> Examples:
    """Read a data file and check its columns, texts and labels.

    Errors name the file and row. Where reads are confined (a page, a job submitted from one, a team's
    worker), the file must lie inside the allowed data folders: see ``core.paths``.
    """
    paths.check_data(path)
    return _examples(Path(path))


def _examples(path: Path) -> Examples:
    frame, rows = read_frame(path)
    columns = [str(c) for c in frame.columns]
    lower = {c.lower(): c for c in columns}
    pair = next(((lower[a], lower[b]) for a, b in PAIR_COLUMNS if a in lower and b in lower), None)
    text_cols: tuple[str, ...] = pair or ((lower[TEXT_COLUMN],) if TEXT_COLUMN in lower else ())
    label_col = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    if not text_cols or label_col is None:
        need = "a 'label' column" if text_cols else \
            "text columns ('premise' and 'hypothesis', 'sentence1' and 'sentence2', or 'text')"
        raise DataError(path, f"needs {need}; the columns are: {', '.join(columns) or '(none)'}.",
                        hint="Rename the columns in the file, then try again.")
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
    labels = tuple(frame[label_col].tolist())
    return Examples(path=str(path), rows=tuple(rows), text_a=texts[0], text_b=texts[1] if len(texts) > 1 else None,
                    labels=labels, columns=(text_cols[0], text_cols[1] if pair else None, label_col),
                    digest=file_digest(path))


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
    return keep_checked(name, content, folder, _examples)


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
