"""Loading base models (local folders or hub ids) and logging trained ones to MLflow.

Remote code is never trusted: a model that needs ``trust_remote_code`` is
refused. Every failure to load names the path and says what to do.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from core import paths
from core.data import LabelMapping
from core.errors import ModelPathError
from core.models.sources import is_reference, local_folder
from core.tokenizer import check_tokenizer_folder, load_tokenizer


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "")


def load_config(name_or_path: str):
    """The model's config, with errors that say whether the folder, the files or the hub is the problem.

    Where reads are confined (``core.paths``), a path must lie inside the allowed model folders; a hub id
    goes to the hub; a registered model (``models:/NAME/3``, ``models:/NAME@production``) comes from MLflow,
    downloaded once (``core.models.sources.local_folder``). A local folder must hold tokenizer files this
    machine can read (``core.tokenizer.check_tokenizer_folder``).
    """
    from transformers import AutoConfig

    if is_reference(name_or_path):  # a model in MLflow, not a path: no folder fence applies
        return AutoConfig.from_pretrained(str(local_folder(name_or_path)), trust_remote_code=False)
    path = Path(name_or_path).expanduser()
    if path.exists() or _looks_like_path(name_or_path):
        paths.check_model(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ModelPathError(f"{name_or_path}: is a file; a base model is a folder holding config.json "
                                 "and the weights (what save_pretrained writes).")
        if not (path / "config.json").is_file():
            raise ModelPathError(f"{name_or_path}: this folder has no config.json, so it is not a Hugging Face "
                                 "model folder. Point at the folder that save_pretrained wrote.")
        _check_model_type(name_or_path, path / "config.json")
    elif _looks_like_path(name_or_path):
        raise ModelPathError(f"{name_or_path}: no such folder. Check the path, or use a hub id such as "
                             "'MoritzLaurer/deberta-v3-base-zeroshot-v2.0'.")
    try:
        config = AutoConfig.from_pretrained(str(path) if path.exists() else name_or_path, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelPathError(f"{name_or_path}: this model needs to run its own code (trust_remote_code), "
                                 "which this tool never allows. Choose a model built into transformers.") from None
        raise ModelPathError(f"{name_or_path}: not a usable model config: {exc}") from None
    except OSError as exc:
        if path.exists():
            raise ModelPathError(f"{name_or_path}: config.json could not be read: {exc}. Replace it with the "
                                 "config.json that save_pretrained wrote.") from None
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the model hub is switched off here (HF_HUB_OFFLINE=1)" if offline else \
            "it is neither a local folder nor reachable on the model hub"
        raise ModelPathError(f"{name_or_path}: could not load this model: {why}. Download it to a folder and "
                             f"give that folder's path instead. ({type(exc).__name__})") from None
    if getattr(config, "auto_map", None):
        raise ModelPathError(f"{name_or_path}: this model needs to run its own code (trust_remote_code), which "
                             "this tool never allows. Choose a model built into transformers.")
    if path.exists():  # a tokenizer that cannot load is refused here, before any run starts
        check_tokenizer_folder(name_or_path, path)
    return config


def _check_model_type(name_or_path: str, config_file: Path) -> None:
    """A model_type that transformers does not know could only load with the model's own code: say so plainly."""
    from transformers import __version__
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # AutoConfig reports the unreadable file
    kind = data.get("model_type") if isinstance(data, dict) else None
    if isinstance(kind, str) and kind and kind not in CONFIG_MAPPING_NAMES and not data.get("auto_map"):
        raise ModelPathError(f"{name_or_path}: its config.json has model_type {kind!r}, which transformers "
                             f"{__version__} does not know; loading it would need the model's own code "
                             "(trust_remote_code), which this tool never allows. Choose a model built into "
                             "transformers (e.g. bert, deberta-v2), or a newer transformers if it added this type.")


def load_for_classification(name_or_path: str, mapping: LabelMapping):
    """(model, tokenizer) with a head sized for ``mapping``; the pretrained head is kept when it matches.

    The tokenizer comes first: a folder whose tokenizer cannot be built (no tokenizer files, or a
    SentencePiece model without the sentencepiece package) is refused before the weights are read.
    """
    from transformers import AutoModelForSequenceClassification

    local = local_folder(name_or_path) if is_reference(name_or_path) else Path(name_or_path).expanduser()
    source = str(local) if local.exists() else name_or_path
    tokenizer = load_tokenizer(name_or_path, source)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=mapping.num_labels, id2label=mapping.id2label, label2id=dict(mapping.label2id),
            ignore_mismatched_sizes=not mapping.keeps_head, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelPathError(f"{name_or_path}: the model could not be loaded: {exc}") from None
    return model, tokenizer


def pip_requirements() -> list[str]:
    """Explicit requirements: without them log_model insists on torchvision."""
    import accelerate
    import torch
    import transformers

    return [f"transformers=={transformers.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"accelerate=={accelerate.__version__}"]


def signature(pairs: bool):
    """What ``mlflow.pyfunc.load_model(uri).predict`` takes: outputs ``label`` and ``score`` either way.

    A single-text model takes one unnamed string column, MLflow's own default for text-classification: a list
    of strings, a pandas Series, one string, or a DataFrame whose first column is ``text``. (A named ``text``
    column would refuse the plain list with "Model is missing inputs ['text']".)

    A sentence-pair model takes named ``text`` and ``text_pair`` columns, both required, so a bare list or a
    frame without the hypothesis is refused by MLflow with "Model is missing inputs ['text', 'text_pair']"
    rather than classified as single texts, which would make an NLI model ignore its hypothesis.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", "text"), ColSpec("string", "text_pair")] if pairs else [ColSpec("string")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("string", "label"),
                                                                 ColSpec("double", "score")]))


def log_model(model, tokenizer, *, pairs: bool, name: str = "model"):
    """Log a text-classification model to the active run; returns MLflow's ModelInfo.

    The explicit signature matters (see :func:`signature`). No input example: with an in-memory model MLflow
    would check it by loading the whole model a second time, in every run.
    """
    import mlflow

    # MLflow looks for a model card and a licence on the hub, and warns when a local model has neither: words that
    # would only worry the person reading the job's log
    flavor_log = logging.getLogger("mlflow.transformers")
    level = flavor_log.level
    flavor_log.setLevel(logging.ERROR)
    try:
        return mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer}, name=name, task="text-classification",
            signature=signature(pairs), pip_requirements=pip_requirements())
    finally:
        flavor_log.setLevel(level)
