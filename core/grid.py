"""The experiment grid: a frozen spec, its validation, and its expansion into runs.

A :class:`GridSpec` holds the seed's ``ExperimentManager`` arguments. It is
checked when it is built (an unknown hyperparameter key, a wrong type or an
impossible value is refused, naming the key) and expands into
:class:`RunSpec` objects: one baseline per base model when asked, then one
run per base model x dataset version x hyperparameter set.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from core import naming
from core.data import Columns
from core.errors import GridError
from core.holdout import params as split_params
from core.holdout import parse_summary as parse_split
from core.settings import current_user
from core.topic_pairs import TopicPairs

PLACEHOLDER = "{data_version}"
MAX_RUNS = 500  # the default cap on one grid's runs; TUNEBOARD_MAX_GRID_RUNS changes it
MAX_RUNS_VARIABLE = "TUNEBOARD_MAX_GRID_RUNS"

# The seed's short names for TrainingArguments fields.
SEED_ALIASES = {
    "n_epochs": "num_train_epochs",
    "train_batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
}
# Keys of our own that are not TrainingArguments fields.
# max_length: tokens the model reads at once; a longer text is read as windows of it (core.models.windows) that
# share window_overlap tokens (default: an eighth of a window); truncate: read only the first window (cut, counted).
OWN_KEYS: dict[str, type] = {"max_length": int, "window_overlap": int, "truncate": bool}
# TrainingArguments fields the pipeline sets itself.
RESERVED = {
    "output_dir", "logging_dir", "report_to", "run_name", "overwrite_output_dir", "push_to_hub",
    "hub_model_id", "hub_token", "hub_strategy", "hub_private_repo", "do_train", "do_eval",
    "do_predict", "resume_from_checkpoint", "eval_strategy", "save_strategy", "logging_strategy",
}
DEFAULTS = {"num_train_epochs": 3, "learning_rate": 2e-5, "weight_decay": 0.0,
            "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32, "max_length": 128}
# How a run reads its texts (core.models.windows.Reading): a baseline reads as the grid's fine-tunes do
READING_KEYS = ("max_length", "window_overlap", "truncate")

# TrainingArguments fields that transformers 5 removed, and what to write instead
RENAMED = {"warmup_ratio": "transformers 5 has no warmup_ratio: give warmup_steps the fraction instead (warmup_steps: "
                           "0.1 warms up over the first tenth of the steps; 1 or more counts steps)."}

# (lowest allowed, whether the lowest is allowed itself, highest allowed)
_RANGES: dict[str, tuple[float, bool, float]] = {
    "num_train_epochs": (0, False, 10_000),
    "learning_rate": (0, False, 1.0),
    "weight_decay": (0, True, 10.0),
    "per_device_train_batch_size": (1, True, 65_536),
    "per_device_eval_batch_size": (1, True, 65_536),
    "gradient_accumulation_steps": (1, True, 65_536),
    "warmup_steps": (0, True, 10**9),
    "max_length": (8, True, 65_536),
    "window_overlap": (0, True, 65_536),
    "seed": (0, True, 2**32 - 1),
    "max_grad_norm": (0, True, 1e6),
    "logging_steps": (0, False, 10**9),
}


@lru_cache(maxsize=1)
def _training_argument_types() -> dict[str, Any]:
    from transformers import TrainingArguments

    try:
        hints = typing.get_type_hints(TrainingArguments)
    except Exception:  # noqa: BLE001 - an unresolvable annotation in some transformers release
        hints = {}  # types are then checked by TrainingArguments itself
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainingArguments) if f.init}


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON-like ``value`` fits a TrainingArguments type hint."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str or (isinstance(hint, type) and issubclass(hint, str)):
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return True  # enums and other types: TrainingArguments itself checks them


# A number as people write it: 5e-5, 1e-3, 2E-5, +1e-3, .5e-3, 0.001 (YAML 1.2 and JSON take all of these).
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _as_float(hint: Any, value: Any) -> Any:
    """``value`` as a float where it is a number written as text and ``hint`` takes a float, else as it was.

    PyYAML reads YAML 1.1, where a float needs a dot: ``learning_rate: 5e-5`` arrives as the text "5e-5". It is
    taken here, where every route a set comes by meets (a grid file, Compose's upload and table, the Python API),
    and only for a field that holds a float: anywhere else in a grid file the text stays text, and a field that
    holds an int or a bool is still checked as one.
    """
    if (isinstance(value, str) and not _accepts(hint, value) and _NUMBER_TEXT.fullmatch(value.strip())
            and _accepts(hint, 0.5)):
        return float(value)
    return value


def normalize_hyperparameters(params: Mapping[str, Any], *, where: str = "hyperparameters") -> dict[str, Any]:
    """Map seed keys to TrainingArguments names and check every key, type and value.

    Raises :class:`GridError` naming the offending key.
    """
    if not isinstance(params, Mapping):
        raise GridError(f"each hyperparameter set must be a mapping of name to value, got {type(params).__name__}",
                        key=where)
    types = _training_argument_types()
    out: dict[str, Any] = {}
    for raw_key, value in params.items():
        key = SEED_ALIASES.get(raw_key, raw_key)
        label = f"{where}.{raw_key}"
        if key in RESERVED:
            raise GridError("is set by the pipeline itself and cannot be chosen here; remove it.", key=label)
        if key in OWN_KEYS:
            hint: Any = OWN_KEYS[key]
        elif key in types:
            hint = types[key]
        elif key in RENAMED:
            raise GridError(RENAMED[key], key=label)
        else:
            known = sorted(set(SEED_ALIASES) | set(OWN_KEYS) | {"learning_rate", "weight_decay", "seed",
                                                                 "warmup_steps", "gradient_accumulation_steps"})
            raise GridError(f"unknown hyperparameter. Use one of the seed's keys ({', '.join(known)}) "
                            "or any transformers TrainingArguments field by its own name.", key=label)
        if key in out:
            raise GridError(f"given twice (as {raw_key!r} and under another name for {key!r}).", key=label)
        value = _as_float(hint, value)
        if isinstance(value, float) and not math.isfinite(value):
            raise GridError(f"must be a finite number, got {value!r}.", key=label)
        if not _accepts(hint, value):
            expected = getattr(hint, "__name__", str(hint).replace("typing.", ""))
            raise GridError(f"has the wrong type: expected {expected}, got {type(value).__name__} {value!r}.",
                            key=label)
        if key in _RANGES and value is not None:
            low, inclusive, high = _RANGES[key]
            too_low = value < low if inclusive else value <= low
            if too_low or value > high:
                bound = f">= {low}" if inclusive else f"> {low}"
                raise GridError(f"value {value!r} is impossible: it must be {bound} and <= {high}.", key=label)
        out[key] = value
    return out


def _check_with_training_arguments(params: Mapping[str, Any], where: str) -> None:
    """Let TrainingArguments itself reject what the type check could not (enum values, combinations)."""
    import tempfile

    from transformers import TrainingArguments

    fields = {k: v for k, v in params.items() if k not in OWN_KEYS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            TrainingArguments(output_dir=tmp, report_to="none", **fields)
    except (ValueError, TypeError) as exc:
        raise GridError(f"transformers refused these training arguments: {exc}", key=where) from None


def max_grid_runs() -> int:
    """The most runs one grid may create: ``TUNEBOARD_MAX_GRID_RUNS``, else 500."""
    raw = os.environ.get(MAX_RUNS_VARIABLE, "").strip()
    if not raw:
        return MAX_RUNS
    if not raw.isdigit() or int(raw) < 1:
        raise GridError(f"{MAX_RUNS_VARIABLE}={raw!r} is not a number of runs: set it to a whole number, 1 or more.")
    return int(raw)


def _as_tuple(value: Any, key: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise GridError(f"must be a list, got {type(value).__name__}.", key=key)
    if not value:
        raise GridError("must not be empty: give at least one.", key=key)
    return tuple(value)


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: a baseline evaluation or a fine-tune.

    ``confined``: the run reads its data files and base model only inside the allowed roots (a grid
    submitted from a page, or to a team's server); the training process checks them again (``core.paths``).
    """

    kind: str  # "baseline" | "fine_tune"
    experiment_name: str
    run_name: str
    base_model: str
    validation_path: str
    output_dir: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    dataset_version: str | None = None
    train_path: str | None = None
    param_set: int | None = None
    grid_id: str | None = None
    confined: bool = False
    columns: Mapping[str, str] | None = None  # which columns hold text and label (core.data.Columns)
    topic_pairs: Mapping[str, Any] | None = None  # calls and topics as NLI pairs (core.topic_pairs.TopicPairs)
    split: Mapping[str, Any] | None = None  # the share of one file held out for validation (core.holdout)

    @property
    def base_model_name(self) -> str:
        return naming.base_model_name(self.base_model)

    @property
    def dataset_name(self) -> str | None:
        return naming.dataset_name(self.dataset_version) if self.dataset_version else None

    def params(self) -> dict[str, Any]:
        """What the run logs as MLflow params: every hyperparameter, the base model, the data files, and how
        their columns were read (the mapping, topic pairs), and the split they came from (a held-out share)."""
        params = {**self.hyperparameters, "base_model": self.base_model, "validation_file": self.validation_path}
        if self.train_path:
            params["train_file"] = self.train_path
        if self.columns:
            params.update(Columns.parse(self.columns).params())
        if self.topic_pairs:
            params.update(TopicPairs.parse(self.topic_pairs).params())
        params.update(split_params(self.split))
        return params

    def tags(self) -> dict[str, str]:
        """The tags that identify the run in comparisons (seed: base_model_name, dataset_name, param_set)."""
        tags = {naming.RUN_TYPE_TAG: self.kind, "base_model_name": self.base_model_name,
                "mlflow.runName": self.run_name}
        if self.dataset_name:
            tags["dataset_name"] = self.dataset_name
        if self.param_set is not None:
            tags["param_set"] = f"param_set{self.param_set}"
        if self.grid_id:
            tags["grid_id"] = self.grid_id
        return tags

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hyperparameters"] = dict(self.hyperparameters)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class GridSpec:
    """The seed's ExperimentManager arguments, validated on construction."""

    base_name: str
    data_src: str
    dataset_versions: tuple[str, ...]
    hyperparameters: tuple[Mapping[str, Any], ...]
    base_model_versions: tuple[str, ...]
    output_dir: str
    train_file: str
    validation_file: str
    evaluate_pretrained_model: bool = True
    user_id: str = ""
    run_date: str = ""
    max_runs: int = field(default_factory=max_grid_runs)
    columns: Mapping[str, str] | None = None  # e.g. {text: transcript, label: topic}; None: the usual names
    topic_pairs: Mapping[str, Any] | bool | None = None  # e.g. {template: "This call is about {}.", negatives: 2}
    # the training and validation files are the parts of one file held out by core.holdout: its record's summary
    split: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        if not self.user_id:
            set_(self, "user_id", current_user())
        for key in ("base_name", "data_src", "output_dir", "train_file", "validation_file", "user_id"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise GridError("must be a non-empty text.", key=key)
        for key in ("base_name", "data_src", "user_id"):
            if "/" in getattr(self, key):
                raise GridError("must not contain '/', it becomes part of the experiment name.", key=key)
        if not isinstance(self.evaluate_pretrained_model, bool):
            raise GridError("must be true or false.", key="evaluate_pretrained_model")
        set_(self, "dataset_versions", _as_tuple(self.dataset_versions, "dataset_versions"))
        set_(self, "base_model_versions", _as_tuple(self.base_model_versions, "base_model_versions"))
        sets = _as_tuple(self.hyperparameters, "hyperparameters")
        set_(self, "hyperparameters", sets)
        if isinstance(self.max_runs, bool) or not isinstance(self.max_runs, int) or self.max_runs < 1:
            raise GridError(f"must be a whole number of runs, 1 or more, got {self.max_runs!r}.", key="max_runs")
        if self.run_count > self.max_runs:  # before the per-set checks, which take a while for each set
            raise GridError(f"the grid has {self.run_count} runs, over the limit of {self.max_runs}; use fewer "
                            f"models, datasets or hyperparameter sets (or raise {MAX_RUNS_VARIABLE}).",
                            key="hyperparameters")
        normalized = tuple(normalize_hyperparameters(p, where=f"hyperparameters[{i}]") for i, p in enumerate(sets))
        seen: dict[str, int] = {}
        for i, params in enumerate(normalized):
            fingerprint = json.dumps(params, sort_keys=True)
            if fingerprint in seen:
                raise GridError(f"is the same set as hyperparameters[{seen[fingerprint]}]; remove the duplicate.",
                                key=f"hyperparameters[{i}]")
            seen[fingerprint] = i
            _check_with_training_arguments({**DEFAULTS, **params}, f"hyperparameters[{i}]")
        set_(self, "hyperparameters", normalized)
        for key in ("dataset_versions", "base_model_versions"):
            for i, item in enumerate(getattr(self, key)):
                if not isinstance(item, str) or not item.strip():
                    raise GridError("must be a non-empty path or name.", key=f"{key}[{i}]")
            duplicates = {x for x in getattr(self, key) if getattr(self, key).count(x) > 1}
            if duplicates:
                raise GridError(f"lists {min(duplicates)!r} more than once.", key=key)
        names = [naming.base_model_name(m) for m in self.base_model_versions]
        if len(set(names)) != len(names):
            raise GridError("two base models end in the same folder name, so their runs would share names.",
                            key="base_model_versions")
        if PLACEHOLDER not in self.train_file and len(self.dataset_versions) > 1:
            raise GridError(f"must contain {PLACEHOLDER} where each dataset version's file name goes.",
                            key="train_file")
        columns = Columns.parse(self.columns)
        set_(self, "columns", columns.to_dict() if columns else None)
        pairs = TopicPairs.parse(self.topic_pairs)
        set_(self, "topic_pairs", pairs.to_dict() if pairs else None)
        if pairs and columns and columns.text_pair:
            raise GridError("topic pairs write their own second text (the template with a topic): leave "
                            "text_pair out of the mapping.", key="columns.text_pair")
        set_(self, "split", parse_split(self.split))
        if not self.run_date:
            set_(self, "run_date", _dt.date.today().strftime("%Y%m%d"))
        else:
            try:
                _dt.datetime.strptime(self.run_date, "%Y%m%d")
            except ValueError:
                raise GridError(f"{self.run_date!r} is not a date written as YYYYMMDD (e.g. 20241205).",
                                key="run_date") from None

    @property
    def experiment_name(self) -> str:
        return naming.experiment_name(self.user_id, self.base_name, self.data_src, self.run_date)

    @property
    def run_count(self) -> int:
        fine_tunes = len(self.base_model_versions) * len(self.dataset_versions) * len(self.hyperparameters)
        return fine_tunes + (len(self.base_model_versions) if self.evaluate_pretrained_model else 0)

    def train_path(self, dataset_version: str) -> str:
        if PLACEHOLDER in self.train_file:
            return self.train_file.replace(PLACEHOLDER, dataset_version)
        return self.train_file

    def baseline_hyperparameters(self) -> dict[str, Any]:
        """A baseline's settings: the defaults, read as the first set reads (``READING_KEYS``: its window, overlap,
        truncation), so the gain over baseline compares the same reading of the same calls; a baseline at 128
        tokens beside fine-tunes at 256 read each call as twice the windows, and its max over them differed."""
        first = self.hyperparameters[0] if self.hyperparameters else {}
        return {**DEFAULTS, **{key: first[key] for key in READING_KEYS if key in first}}

    def expand(self, grid_id: str | None = None) -> list[RunSpec]:
        """Baselines first (one per base model), then every model x dataset x hyperparameter set."""
        experiment = self.experiment_name
        leaf = experiment.rsplit("/", 1)[-1]
        runs: list[RunSpec] = []
        if self.evaluate_pretrained_model:
            for model in self.base_model_versions:
                runs.append(RunSpec(
                    kind="baseline", experiment_name=experiment, run_name=naming.baseline_run_name(model),
                    base_model=model, validation_path=self.validation_file,
                    output_dir=str(Path(self.output_dir) / leaf), hyperparameters=self.baseline_hyperparameters(),
                    grid_id=grid_id, columns=self.columns, topic_pairs=self.topic_pairs, split=self.split))
        for model in self.base_model_versions:
            for version in self.dataset_versions:
                for index, params in enumerate(self.hyperparameters, start=1):
                    name = naming.run_name(model, version, index)
                    runs.append(RunSpec(
                        kind="fine_tune", experiment_name=experiment, run_name=name, base_model=model,
                        validation_path=self.validation_file, output_dir=str(Path(self.output_dir) / leaf / name),
                        hyperparameters={**DEFAULTS, **params}, dataset_version=version,
                        train_path=self.train_path(version), param_set=index, grid_id=grid_id,
                        columns=self.columns, topic_pairs=self.topic_pairs, split=self.split))
        return runs

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dataset_versions"] = list(self.dataset_versions)
        data["base_model_versions"] = list(self.base_model_versions)
        data["hyperparameters"] = [dict(p) for p in self.hyperparameters]
        for key in ("columns", "topic_pairs", "split"):  # None: left out, so a grid file stays as the seed wrote it
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridSpec:
        """Build from a plain mapping (a YAML/JSON file); accepts the seed's ``evalute_`` spelling."""
        if not isinstance(data, Mapping):
            raise GridError("the grid file must hold a mapping of argument names to values.")
        data = dict(data)
        if "evalute_pretrained_model" in data:
            if "evaluate_pretrained_model" in data:
                raise GridError("give either evalute_pretrained_model or evaluate_pretrained_model, not both.",
                                key="evaluate_pretrained_model")
            data["evaluate_pretrained_model"] = data.pop("evalute_pretrained_model")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GridError(f"unknown grid argument; the arguments are: {', '.join(sorted(known))}.", key=unknown[0])
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if missing:
            raise GridError("is required.", key=missing[0])
        if "run_date" in data and not isinstance(data["run_date"], str):
            data["run_date"] = str(data["run_date"])
        return cls(**data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_file(cls, path: str | Path) -> GridSpec:
        """Read a grid from a ``.yaml``/``.yml``/``.json`` file, with errors naming the file."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise GridError(f"grid file {path} does not exist.")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
            raise GridError(f"grid file {path} could not be read: {exc}") from None
        try:
            return cls.from_dict(data or {})
        except GridError as exc:
            raise GridError(f"{path}: {exc}") from None
