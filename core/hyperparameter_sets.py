"""Hyperparameter sets as a person edits them: a table with the seed's columns, and sets made from value lists.

The Compose page shows one row per set: ``n_epochs``, ``learning_rate``, ``weight_decay``,
``train_batch_size``, ``eval_batch_size`` and "other settings (JSON)" for any other ``TrainingArguments``
field. :func:`sets_from_rows` and :func:`table_row` go between rows and the sets a grid holds
(``core.grid.GridSpec``, which checks them); :func:`generate` makes sets from comma-separated value lists.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import GridError

OTHER = "other settings (JSON)"
# the table's columns (the seed's names), their types, and the TrainingArguments fields they stand for
COLUMNS: dict[str, type] = {"n_epochs": int, "learning_rate": float, "weight_decay": float, "train_batch_size": int,
                            "eval_batch_size": int}
FIELDS = {"n_epochs": "num_train_epochs", "learning_rate": "learning_rate", "weight_decay": "weight_decay",
          "train_batch_size": "per_device_train_batch_size", "eval_batch_size": "per_device_eval_batch_size"}
MAX_GENERATED = 500
# the two sets Compose offers first (the demo grid: both demo models x two dataset versions x these)
DEFAULT_SETS: tuple[dict[str, Any], ...] = (
    {"n_epochs": 5, "learning_rate": 5e-4, "weight_decay": 0.01, "train_batch_size": 8, "eval_batch_size": 64},
    {"n_epochs": 5, "learning_rate": 2e-3, "weight_decay": 0.01, "train_batch_size": 16, "eval_batch_size": 64},
)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sets_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Table rows as hyperparameter sets: blank cells left out (the default), the JSON cell merged in; a row
    with nothing in it is no set. A JSON cell that is not an object is refused, naming its row."""
    sets = []
    for i, row in enumerate(rows):
        params: dict = {}
        for key, cast in COLUMNS.items():
            value = row.get(key)
            if _blank(value):
                continue
            params[key] = cast(value) if cast is int and float(value).is_integer() else value
        extra = row.get(OTHER)
        extra = "" if _blank(extra) else str(extra).strip()
        if extra:
            try:
                more = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise GridError(f"is not valid JSON ({exc.msg}); write it like {{\"seed\": 3}}.",
                                key=f"hyperparameters[{i}].{OTHER}") from None
            if not isinstance(more, dict):
                raise GridError('must be a JSON object like {"seed": 3}.', key=f"hyperparameters[{i}].{OTHER}")
            params.update(more)
        if params:
            sets.append(params)
    return sets


def table_row(params: Mapping[str, Any]) -> dict:
    """One set of a grid (``TrainingArguments`` names) as a table row (the seed's names, the rest as JSON)."""
    row = {short: params.get(name) for short, name in FIELDS.items()}
    other = {k: v for k, v in params.items() if k not in FIELDS.values()}
    row[OTHER] = json.dumps(other) if other else ""
    return row


def number(text: str, cast: type) -> float | int:
    """One value of a value list; "nan" and "inf" are refused (an empty cell already means the default)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not a finite number")
    return cast(value) if cast is int else value


def value_lists(texts: Mapping[str, str]) -> dict[str, list]:
    """``{"learning_rate": "2e-5, 3e-5"}`` -> ``{"learning_rate": [2e-05, 3e-05]}`` for the table's columns;
    empty lists are left out. A value that is not a finite number raises ValueError naming it."""
    return {key: [number(x, COLUMNS[key]) for x in text.split(",") if x.strip()]
            for key, text in texts.items() if key in COLUMNS and text.strip()}


def generate(lists: Mapping[str, Sequence], sample: int | None = None, seed: int = 0) -> list[dict]:
    """Every combination of the value lists, or a seeded random ``sample`` of them (the same sample each time)."""
    if math.prod(len(v) for v in lists.values()) > 100 * MAX_GENERATED and sample is None:
        raise GridError(f"the value lists make over {100 * MAX_GENERATED} combinations; ask for a random sample.",
                        key="hyperparameters")
    combos = [dict(zip(lists, values, strict=True)) for values in itertools.product(*lists.values())]
    if sample is not None and len(combos) > sample:
        combos = random.Random(seed).sample(combos, int(sample))
    return combos
