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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
PAIR_COLUMNS = (("premise", "hypothesis"), ("sentence1", "sentence2"))
TEXT_COLUMN = "text"
LABEL_COLUMNS = ("label", "labels")


@dataclass(frozen=True)
class Examples:
    """Texts and raw labels read from one file."""

    path: str
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

    label2id: Mapping[str, int]
    keeps_head: bool  # True: the pretrained classifier head is reused as is

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for name, i in self.label2id.items()}

    @property
    def num_labels(self) -> int:
        return len(self.label2id)

    def encode(self, labels: Sequence[Any]) -> list[int]:
        return [self.label2id[_label_key(x)] for x in labels]


def file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes: the dataset's content digest."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _row_label(fmt: str, index: int) -> str:
    if fmt in ("csv", "tsv"):
        return f"line {index + 2}"  # the header is line 1
    if fmt == "json":
        return f"line {index + 1}"
    return f"row {index + 1}"


def _check_text_file(path: Path, fmt: str) -> None:
    """Undecodable bytes and ragged rows, caught before a parser gives a cryptic message."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, f"byte {exc.start} is not valid UTF-8", row=f"line {line}",
                        hint="Save the file as UTF-8 (in Excel: 'CSV UTF-8') and try again.") from None
    if not text.strip():
        raise DataError(path, "the file is empty.", hint="Add a header row and at least one example.")
    if fmt in ("csv", "tsv"):
        reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
        header = next(reader, [])
        for record in reader:
            if record and len(record) != len(header):
                raise DataError(path, f"has {len(record)} fields but the header has {len(header)}",
                                row=f"line {reader.line_num}",
                                hint="Check for an unquoted comma or tab in a text, or a missing value.")


def read_table(path: str | Path):
    """Read a data file into a pandas DataFrame through ``datasets``."""
    import datasets

    path = Path(path)
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
    if not path.is_file():
        raise DataError(path, "is a folder, not a data file.")
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty.", hint="Add a header row and at least one example.")
    if fmt != "parquet":
        _check_text_file(path, fmt)
    builder, kwargs = ("csv", {"sep": "\t"}) if fmt == "tsv" else (fmt, {})
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # noqa: BLE001 - datasets wraps parser errors in many types
        cause = exc.__cause__ or exc
        raise DataError(path, f"could not be read as {fmt.upper()}: {cause}") from None
    return table.to_pandas()


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def load_examples(path: str | Path) -> Examples:
    """Read a file and check its columns, texts and labels; errors name the file and row."""
    path = Path(path)
    frame = read_table(path)
    fmt = FORMATS[path.suffix.lower()]
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
                raise DataError(path, f"the {what} in column '{col}' is empty", row=_row_label(fmt, i),
                                hint="Fill it in or remove the row.")
    texts = [tuple(str(v) for v in frame[c].tolist()) for c in text_cols]
    labels = tuple(frame[label_col].tolist())
    return Examples(path=str(path), text_a=texts[0], text_b=texts[1] if len(texts) > 1 else None,
                    labels=labels, columns=(text_cols[0], text_cols[1] if pair else None, label_col),
                    digest=file_digest(path))


def align_labels(train: Examples, validation: Examples, model_label2id: Mapping[str, int] | None,
                 model_num_labels: int) -> LabelMapping:
    """Choose label ids: the model's own when the names match, else new ones in sorted order.

    Refuses a training set with a single class and validation labels never seen in training.
    """
    train_keys = [_label_key(x) for x in train.labels]
    seen = set(train_keys)
    if len(seen) < 2:
        raise DataError(train.path, f"every row has the label {train_keys[0]!r}; a classifier needs at least two.",
                        hint="Add examples of the other classes.")
    fmt = FORMATS[Path(validation.path).suffix.lower()]
    for i, value in enumerate(validation.labels):
        if _label_key(value) not in seen:
            raise DataError(validation.path, f"the label {_label_key(value)!r} never appears in the training "
                            f"file {train.path} (its labels: {', '.join(sorted(seen))})", row=_row_label(fmt, i),
                            hint="Use the same label names in both files.")
    model_keys = {k.lower(): v for k, v in (model_label2id or {}).items()}
    if model_keys and all(k.lower() in model_keys for k in seen) and not _generic(model_keys):
        mapping = {k: model_keys[k.lower()] for k in sorted(seen)}
        for name, idx in model_keys.items():  # keep every output of the head, used or not
            if idx not in mapping.values():
                mapping[name] = idx
        return LabelMapping(label2id=mapping, keeps_head=True)
    if all(k.isdigit() for k in seen):  # integer class ids
        top = max(int(k) for k in seen)
        size = model_num_labels if top < model_num_labels else top + 1
        return LabelMapping(label2id={str(i): i for i in range(size)}, keeps_head=size == model_num_labels)
    return LabelMapping(label2id={k: i for i, k in enumerate(sorted(seen))}, keeps_head=False)


def _generic(label2id: Mapping[str, int]) -> bool:
    """Hugging Face's placeholder names (LABEL_0, LABEL_1, ...) carry no meaning."""
    return all(k.startswith("label_") for k in label2id)
