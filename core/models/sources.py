"""From what a user names to a model that loads: ``models:/NAME@alias``, ``models:/NAME/3``, a run id.

    source = resolve("models:/Consumer_Topic_Classifier@production")
    source.label        # "Consumer_Topic_Classifier version 3 (production)"
    folder = local_folder(source)                 # config, weights and tokenizer together, downloaded once
    model, tokenizer, id2label = load(source)     # in eval mode, cached in this process

An alias is pinned to the version it points at now (``uri`` is ``models:/NAME/3``), so a job scores with the
version it was submitted for and its run records exactly which one. A stage name (``models:/NAME/Production``)
means its alias (``core.naming.alias_for``), else the newest version in that stage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from core import runs as runs_mod
from core.errors import ModelPathError, NotFoundError
from core.models.infer import default_device
from core.naming import alias_for
from core.settings import Settings, configure_mlflow
from core.tokenizer import load_tokenizer

PREFIXES = ("models:/", "runs:/")
CACHE_FOLDER = "model-cache"  # under Settings.home
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ModelSource:
    """A model a user named, resolved: ``uri`` is an MLflow model URI that loads (pinned to one version)."""

    ref: str
    uri: str
    name: str
    version: str | None
    run_id: str | None
    label: str


def is_reference(name: str) -> bool:
    """Whether ``name`` names a model in MLflow (``models:/...``, ``runs:/...``) rather than a folder or hub id."""
    return isinstance(name, str) and name.strip().startswith(PREFIXES)


def resolve(ref: str, client=None) -> ModelSource:
    """The model ``ref`` names; a NotFoundError names what does not exist and what does."""
    ref = (ref or "").strip()
    if not ref:
        raise NotFoundError("no model given: name one as models:/NAME@production, models:/NAME/3 or a run id.")
    client = client or runs_mod.client()
    if ref.startswith("models:/"):
        rest = ref[len("models:/"):]
        if rest.startswith("m-") and "/" not in rest and "@" not in rest:  # a logged model (MLflow 3)
            return ModelSource(ref, ref, rest, None, _logged_model_run(client, rest), f"logged model {rest}")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return _version(client, ref, name, _alias_version(client, ref, name, alias), alias)
        name, _, which = rest.rpartition("/")
        if not name or not which:
            raise NotFoundError(f"{ref!r} is not a model reference: use models:/NAME@production, models:/NAME/3 "
                                "or a run id.")
        if which.isdigit():
            return _version(client, ref, name, which, None)
        return _stage(client, ref, name, which)
    if ref.startswith("runs:/"):
        run_id = ref[len("runs:/"):].split("/", 1)[0]
        run = _run(client, run_id)
        return ModelSource(ref, ref, run.info.run_name or run_id, None, run_id, _run_label(run))
    if _RUN_ID.match(ref):
        run = _run(client, ref)
        return ModelSource(ref, runs_mod.model_uri(run, client), run.info.run_name or ref, None, ref, _run_label(run))
    raise NotFoundError(f"{ref!r} is not a model reference: use models:/NAME@production, models:/NAME/3 or a run "
                        "id (32 letters and digits).")


def _registered(client, ref: str, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        try:
            known = sorted(m.name for m in client.search_registered_models(max_results=50))
        except MlflowException:
            known = []
        raise NotFoundError(f"{ref}: there is no registered model called {name!r}. Registered models: "
                            f"{', '.join(known) or 'none yet'}.") from None


def _alias_version(client, ref: str, name: str, alias: str) -> str:
    aliases = dict(_registered(client, ref, name).aliases)
    if alias not in aliases:
        lower = {a.lower(): a for a in aliases}
        if alias.lower() not in lower:
            have = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
            raise NotFoundError(f"{ref}: model {name!r} has no alias {alias!r}; its aliases: {have}. Promote a "
                                "version first, or name a version: models:/NAME/3.")
        alias = lower[alias.lower()]
    return str(aliases[alias])


def _version(client, ref: str, name: str, version: str, alias: str | None) -> ModelSource:
    from mlflow.exceptions import MlflowException

    model = _registered(client, ref, name)
    try:
        found = client.get_model_version(name, version)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise NotFoundError(f"{ref}: model {name!r} has no version {version}; its versions: "
                            f"{', '.join(map(str, versions)) or 'none'}.") from None
    holds = sorted(a for a, v in model.aliases.items() if str(v) == str(version))
    shown = alias or ", ".join(holds)
    label = f"{name} version {version}" + (f" ({shown})" if shown else "")
    return ModelSource(ref, f"models:/{name}/{version}", name, str(version), found.run_id, label)


def _stage(client, ref: str, name: str, stage: str) -> ModelSource:
    model = _registered(client, ref, name)
    try:
        alias, stage_name = alias_for(stage)
    except Exception:  # noqa: BLE001 - not a stage or alias name: say what can be named
        alias, stage_name = None, None
    if alias and alias in model.aliases:
        return _version(client, ref, name, str(model.aliases[alias]), alias)
    if stage_name:
        in_stage = [v for v in client.search_model_versions(f"name = '{name}'") if v.current_stage == stage_name]
        if in_stage:
            newest = max(in_stage, key=lambda v: int(v.version))
            return _version(client, ref, name, str(newest.version), stage_name.lower())
    have = ", ".join(f"{a} (version {v})" for a, v in sorted(model.aliases.items())) or "none"
    raise NotFoundError(f"{ref}: no version of {name!r} is in {stage!r}; its aliases: {have}. Name a version "
                        "instead: models:/NAME/3.")


def _run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise NotFoundError(f"there is no run with id {run_id!r}. Copy the run id from the Compare page or the "
                            "MLflow UI.") from None


def _run_label(run) -> str:
    return f"the model of run {run.info.run_name or run.info.run_id} ({run.info.run_id[:8]})"


def _logged_model_run(client, model_id: str) -> str | None:
    try:
        return client.get_logged_model(model_id).source_run_id
    except Exception:  # noqa: BLE001 - a logged model not found here: the download says so
        return None


# -- a local folder -------------------------------------------------------------------------------------------
def cache_root() -> Path:
    return Settings.from_env().home / CACHE_FOLDER


def local_folder(source: ModelSource | str) -> Path:
    """A folder holding the model's config, weights and tokenizer, as ``save_pretrained`` writes them.

    Downloaded once per model URI into ``<home>/model-cache``: into a temporary folder beside it, renamed into
    place when complete, so a cut-off download is never taken for a model.
    """
    configure_mlflow()
    if isinstance(source, str):
        source = resolve(source)
    root = cache_root()
    target = root / _identity(source)
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".part-", dir=root))
    try:
        folder = _assemble(source, staging)
        try:
            os.rename(folder, target)
        except OSError:
            if not (target / "config.json").is_file():  # not another process finishing first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _assemble(source: ModelSource, staging: Path) -> Path:
    """Download ``source`` under ``staging`` and gather weights and tokenizer files into one folder."""
    import mlflow

    try:
        raw = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.uri, dst_path=str(staging / "raw")))
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing model
        raise NotFoundError(f"{source.ref}: the model files of {source.label} could not be downloaded from "
                            f"{source.uri}: {str(exc).splitlines()[0][:300]}") from None
    weights = raw / "model"  # mlflow.transformers: save_pretrained output under model/, tokenizer under components/
    if not (weights / "config.json").is_file():
        weights = raw if (raw / "config.json").is_file() else None
    if weights is None:
        flavors = _flavors(raw)
        raise ModelPathError(f"{source.ref}: {source.label} is not a Hugging Face transformers model (its MLflow "
                             f"flavors: {', '.join(flavors) or 'none'}), so it cannot score texts here.")
    folder = staging / "model"
    shutil.copytree(weights, folder)
    tokenizer = raw / "components" / "tokenizer"
    if tokenizer.is_dir():
        for item in tokenizer.iterdir():
            if item.is_file() and not (folder / item.name).exists():
                shutil.copy2(item, folder / item.name)
    (folder / "tuneboard_source.json").write_text(json.dumps(source.__dict__, indent=2), encoding="utf-8")
    return folder


def _flavors(raw: Path) -> list[str]:
    import yaml

    try:
        return sorted(yaml.safe_load((raw / "MLmodel").read_text(encoding="utf-8")).get("flavors", {}))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return []


def labels(source: ModelSource | str) -> dict[int, str]:
    """The model's class names by id, from its config (downloads the model once, loads no weights)."""
    folder = local_folder(source)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelPathError(f"{folder / 'config.json'}: could not be read: {exc}") from None
    return {int(i): str(name) for i, name in (config.get("id2label") or {}).items()}


def _identity(source: ModelSource) -> str:
    """The cache key of a model: its URI in this registry, and the run it came from (a model deleted and
    registered again under the same name and version is another model)."""
    import mlflow

    return sha256(f"{mlflow.get_registry_uri()}|{source.uri}|{source.run_id}".encode()).hexdigest()[:24]


# -- loading ----------------------------------------------------------------------------------------------------
_LOADED: OrderedDict[tuple[str, str], tuple] = OrderedDict()
_LOCK = threading.Lock()
KEEP_LOADED = 3  # models kept in memory by a process (the dashboard's: production, a version or two tried)


def load(source: ModelSource | str, device: str | None = None):
    """(model, tokenizer, id2label) on ``device`` (cuda where there is one), in eval mode; the last
    ``KEEP_LOADED`` models stay loaded in this process."""
    from transformers import AutoModelForSequenceClassification

    if isinstance(source, str):
        source = resolve(source)
    device = device or default_device()
    key = (_identity(source), device)
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
        else:
            folder = local_folder(source)
            tokenizer = load_tokenizer(source.ref, str(folder))
            try:
                model = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=False)
            except (OSError, ValueError) as exc:
                raise ModelPathError(f"{source.ref}: the model could not be loaded: {exc}") from None
            model.to(device).eval()
            id2label = {int(i): str(name) for i, name in model.config.id2label.items()}
            _LOADED[key] = (model, tokenizer, id2label)
            while len(_LOADED) > KEEP_LOADED:
                _LOADED.popitem(last=False)
        return _LOADED[key]
