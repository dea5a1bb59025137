"""Loading base models (local folders or hub ids) and logging trained ones to MLflow.

Remote code is never trusted: a model that needs ``trust_remote_code`` is
refused. Every failure to load names the path and says what to do.

A logged model has two flavors (:func:`log_model`): MLflow's transformers flavor (the weights, the tokenizer and
the pipeline ``mlflow.transformers.load_model`` gives) and a python_function flavor of ours,
``core.models.served``, which reads whole texts as windows, tags topics and says which window decided.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import sys
from pathlib import Path

from core import hub, paths
from core.data import LabelMapping
from core.errors import ModelPathError
from core.models import served
from core.models.sources import is_reference, local_folder
from core.tokenizer import check_tokenizer_folder, load_tokenizer
from core.topic_pairs import is_nli


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
    else:  # a hub id: asked once, at once, rather than after transformers' half minute of retries
        hub.check(name_or_path)
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
        raise ModelPathError(hub.explain(name_or_path, exc) or
                             f"{name_or_path}: could not load this model from the model hub: {exc}. Download it "
                             "to a folder and give that folder's path instead.") from None
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


def load_for_classification(name_or_path: str, mapping: LabelMapping, *, with_new: bool = False):
    """(model, tokenizer) with a head sized for ``mapping``; the pretrained head is kept when it matches.

    ``with_new``: (model, tokenizer, new), ``new`` the names of the weights the checkpoint did not hold (made
    at random now): a checkpoint whose labels match but that has no head (an encoder given an NLI config, as
    the long-calls bench gives all-MiniLM-L6-v2) scores nothing yet, though its labels say it is NLI.

    The tokenizer comes first: a folder whose tokenizer cannot be built (no tokenizer files, or a
    SentencePiece model without the sentencepiece package) is refused before the weights are read.
    """
    from transformers import AutoModelForSequenceClassification

    local = local_folder(name_or_path) if is_reference(name_or_path) else Path(name_or_path).expanduser()
    source = str(local) if local.exists() else name_or_path
    tokenizer = load_tokenizer(name_or_path, source)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=mapping.num_labels, id2label=mapping.id2label, label2id=dict(mapping.label2id),
            ignore_mismatched_sizes=not mapping.keeps_head, trust_remote_code=False, output_loading_info=True)
    except (OSError, ValueError) as exc:
        hub_reason = None if local.exists() else hub.explain(name_or_path, exc)
        raise ModelPathError(hub_reason or f"{name_or_path}: the model could not be loaded: {exc}") from None
    if not with_new:
        return model, tokenizer
    new = sorted({*info.get("missing_keys", ()), *(str(m[0]) if isinstance(m, tuple) else str(m)
                                                   for m in info.get("mismatched_keys", ()))})
    return model, tokenizer, new


def pip_requirements() -> list[str]:
    """Explicit requirements: without them log_model insists on torchvision."""
    import accelerate
    import torch
    import transformers

    return [f"transformers=={transformers.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"accelerate=={accelerate.__version__}"]


def signature(pairs: bool, nli: bool = False, defaults: served.Defaults | None = None):
    """What ``mlflow.pyfunc.load_model(uri).predict`` takes and gives (``core.models.served``).

    Every model takes ``params``: ``topics`` (a list; empty: classify instead), ``template``, ``threshold``,
    ``max_length`` and ``window_overlap``, whose defaults are the settings the model was evaluated with.

    The inputs: a single-text model takes one unnamed string column, MLflow's own default for text-classification:
    a list of strings, a pandas Series, one string, or a DataFrame whose first column is ``text`` (a named column
    would refuse the plain list with "Model is missing inputs ['text']"); it gives ``label`` and ``score``.

    A sentence-pair model that is not NLI takes named ``text`` and ``text_pair`` columns, both required, so a bare
    list is refused by MLflow with "Model is missing inputs ['text', 'text_pair']".

    An NLI model (``nli``) takes whole calls with topics in params (a list of strings, a Series, a DataFrame with a
    ``text`` column) and still the pair form (``text`` and ``text_pair``). No MLflow schema holds both: an unnamed
    column drops ``text_pair``, a named ``text`` refuses the plain list. So its signature names no inputs and
    ``core.models.served`` checks them itself, in plain words (a text without a topic or a hypothesis is refused,
    never classified without one). It names no outputs either: they are ``tags``, ``score: <topic>`` and
    ``evidence: <topic>`` per topic given, or ``label`` and ``score`` for pairs.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    defaults = defaults or served.Defaults()
    params = ParamSchema([ParamSpec("topics", "string", [], shape=(-1,)),
                          ParamSpec("template", "string", defaults.template),
                          ParamSpec("threshold", "double", defaults.threshold),
                          ParamSpec("max_length", "long", defaults.max_length),
                          ParamSpec("window_overlap", "long", defaults.window_overlap)])
    if pairs and nli:
        return ModelSignature(params=params)
    inputs = [ColSpec("string", "text"), ColSpec("string", "text_pair")] if pairs else [ColSpec("string")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("string", "label"),
                                                                 ColSpec("double", "score")]), params=params)


def log_model(model, tokenizer, *, pairs: bool, name: str = "model", max_length: int = 256,
              window_overlap: int | None = None, template: str | None = None, threshold: float | None = None):
    """Log a text-classification model to the active run; returns MLflow's ModelInfo (``info.model_uri``).

    ``max_length`` and ``window_overlap`` are how the model was evaluated (``core.models.windows.Reading``),
    ``template`` and ``threshold`` how its topics were (``core.topic_pairs``): the served model reads and tags
    with them unless a request's ``params`` say otherwise. The explicit signature matters (see :func:`signature`).
    No input example: with an in-memory model MLflow would check it by loading the whole model a second time, in
    every run.
    """
    from mlflow.models import Model

    topic_settings = {k: v for k, v in (("template", template), ("threshold", threshold)) if v is not None}
    defaults = served.Defaults(max_length, window_overlap, **topic_settings)  # refused here, before MLflow starts
    nli = is_nli(getattr(model.config, "id2label", None) or {})
    # MLflow looks for a model card and a licence on the hub, and warns when a local model has neither: words that
    # would only worry the person reading the job's log
    flavor_log = logging.getLogger("mlflow.transformers")
    level = flavor_log.level
    flavor_log.setLevel(logging.ERROR)
    try:
        return Model.log(None, name=name, flavor=sys.modules[__name__], flavor_name="mlflow.transformers",
                         transformers_model={"model": model, "tokenizer": tokenizer}, task="text-classification",
                         signature=signature(pairs, nli, defaults), pip_requirements=pip_requirements(),
                         defaults=defaults)
    finally:
        flavor_log.setLevel(level)


CODE_FOLDER = "code"  # in the model folder: the modules core.models.served imports, as tuneboard_served/...
# The shipped copy's package: not "core", so a model loaded in a notebook (MLflow puts code/ first on sys.path)
# never hides the user's own core package, and a process that has both imports each from its own place.
SHIPPED_PACKAGE = "tuneboard_served"
_CORE_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)core(?=[.\s])", re.MULTILINE)


def shipped_source(text: str) -> str:
    """A module's source as shipped: its ``core`` imports renamed to :data:`SHIPPED_PACKAGE`."""
    return _CORE_IMPORT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{SHIPPED_PACKAGE}", text)


def save_model(transformers_model, path: str, *, mlflow_model=None, task: str = "text-classification",
               signature=None, pip_requirements=None, defaults: served.Defaults | None = None, **kwargs) -> None:
    """Save a model folder with both flavors (what :func:`log_model` logs, through ``mlflow.models.Model.log``).

    1. ``mlflow.transformers.save_model`` writes the weights (``model/``), the tokenizer (``components/``), the
       environment files and the transformers flavor;
    2. the modules ``core.models.served`` imports go to ``code/``, as the package ``tuneboard_served``
       (:func:`code_files`, :func:`shipped_source`), so a server started in any folder can import it; only the
       python_function flavor names them, so ``mlflow.transformers.load_model`` puts nothing on ``sys.path``;
    3. the python_function flavor is replaced by ours; it records the reading ``defaults`` (``served_defaults``),
       which are also the params schema's defaults (:func:`signature`). Not as MLflow's ``model_config``: a
       configuration given at load time could not change them, since MLflow fills every param left out with
       its schema default.
    """
    import mlflow
    from mlflow import pyfunc
    from mlflow.models import Model

    mlflow_model = mlflow_model or Model()
    defaults = defaults or served.Defaults()
    mlflow.transformers.save_model(transformers_model, path, mlflow_model=mlflow_model, task=task,
                                   signature=signature, pip_requirements=pip_requirements, **kwargs)
    root = Path(__file__).resolve().parents[2] / "core"
    for file in code_files():
        target = Path(path, CODE_FOLDER, SHIPPED_PACKAGE, file.relative_to(root))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(shipped_source(file.read_text(encoding="utf-8")), encoding="utf-8")
    env = (mlflow_model.flavors.get(pyfunc.FLAVOR_NAME) or {}).get(pyfunc.ENV) or {}
    loader = SHIPPED_PACKAGE + served.__name__.removeprefix("core")
    pyfunc.add_to_model(mlflow_model, loader_module=loader, code=CODE_FOLDER,
                        conda_env=env.get("conda", "conda.yaml"), python_env=env.get("virtualenv", "python_env.yaml"),
                        **{served.DEFAULTS_KEY: defaults.config()})
    mlflow_model.save(os.path.join(path, "MLmodel"))


def code_files(module: str = served.__name__) -> list[Path]:
    """The files of ``module`` and of every ``core`` module it imports, directly or not, at the top or inside a
    function, with their packages' ``__init__.py``: what a server needs to import it, read from the source text
    (nothing is imported here)."""
    root = Path(__file__).resolve().parents[2]

    def file_of(name: str) -> Path | None:
        base = root.joinpath(*name.split("."))
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        file = file_of(name)
        if name in seen or file is None:
            continue
        seen[name] = file
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # the packages above it
        package = name if file.name == "__init__.py" else ".".join(parts[:-1])
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] == "core"]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                if base.split(".")[0] == "core":
                    todo += [base, *(f"{base}.{a.name}" for a in node.names)]  # a name may be a module
    return sorted(seen.values())
