"""Tuneboard's MLflow server app: MLflow's basic-auth app (same users, same permissions) that keeps four eyes.

    python -m core.cli server --db ... --artifacts ... --auth-db ...      # runs ``mlflow server --app-name tuneboard``

With ``TUNEBOARD_APPROVAL=required`` in the server's environment, every registered model's production is moved
only by the server itself, carrying out a request that someone else approved; with ``TUNEBOARD_APPROVAL=marked``,
only the production of the models tagged ``tuneboard.approval=required`` (the others promote directly), and that
mark, once set, is neither removed nor changed by anyone (:func:`_guard_mark`), nor is a marked model renamed:

1. :func:`_gate` refuses (HTTP 403, MLflow's ``PERMISSION_DENIED``) any write that moves what a governed alias or
   stage holds, whoever sends it (admins included) and by whatever route MLflow serves it (``/api/2.0/...``,
   ``/ajax-api/2.0/...``; the routes are read from MLflow's own endpoint table): setting or deleting a governed
   alias, a stage transition into or out of Production or Staging, deleting a version that holds one, deleting
   or renaming a model that holds one, deleting the model, and writing the ``request.*`` / ``audit.*`` records
   or a version's promotion record (``promoted_by``, ``decision_record``, ``evidence.*``, ...), by setting or
   deleting a tag or by giving it when the model or version is made (:func:`_guard_created`). It reads a request's
   fields as MLflow's handlers do (:func:`_params`), so a body that MLflow reads is the body the gate reads.
2. ``/tuneboard/api/requests/<action>`` (request, approve, reject, withdraw, rollback) runs today's approval code
   (``approvals`` over ``model_transition``) in the server, on the server's own stores, as the signed-in
   user: approving and rejecting need MANAGE on the model, requesting and withdrawing EDIT; the approver is not
   the requester; the request must still stand. One lock per model (PostgreSQL's advisory lock on the backend
   store, a file lock elsewhere) serialises the moves of one model across the server's workers, so racing
   approvals leave exactly one version in production.
3. ``GET /tuneboard/api/version`` says the app is there (``core.registry.approval_client`` asks it).
4. Whatever the rule, a request that MLflow's sign-in check would read one way and its handler another (a write
   whose body is not labelled JSON, a GET with a body) is refused before any handler runs (:mod:`request_body`).

MLflow finds the app by its ``mlflow.app`` entry point ``tuneboard`` (``core/entry_points/tuneboard.egg-info``,
found because ``core.team.app_path`` puts that folder and the repository root on the server's ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from core.errors import ApprovalError, NotFoundError, TuneboardError
from core.naming import STAGES
from core.registry import approvals, request_body
from core.registry.model_transition import ModelTransition
from core.settings import APPROVAL_TAG, MARK, approval_rule, is_marked, needs_approval

log = logging.getLogger(__name__)

APP_NAME = "tuneboard"
API = "/tuneboard/api"
API_VERSION = 1
GOVERNED_ALIASES = frozenset({"production", "champion", "staging"})
GOVERNED_STAGES = frozenset({"Production", "Staging"})
RECORD_TAG_PREFIXES = ("request.", "audit.")  # the requests and the audit trail: written by the server only
# what a promotion writes on the version it moved (model_transition, approvals, decision_record):
# the version's own account of who promoted it, why, on which figures and request; written by the server only
VERSION_RECORD_TAGS = ("promoted_by", "promoted_at", "promoted_to", "promotion_reason", "replaced_version",
                       "requested_by", approvals.VERSION_TAG, "decision_record", "stage_note")
VERSION_RECORD_PREFIXES = ("evidence.",)
ACTIONS = ("request", "approve", "reject", "withdraw", "rollback")
NEEDS = {"request": "EDIT", "withdraw": "EDIT", "approve": "MANAGE", "reject": "MANAGE", "rollback": "MANAGE"}


def create_app():
    """The ``mlflow.app`` factory: MLflow's basic-auth app with the gate and the approval endpoints."""
    from mlflow.server import app, auth

    _point_at_own_stores()
    app.add_url_rule(f"{API}/version", "tuneboard_version", _version, methods=["GET"])
    app.add_url_rule(f"{API}/requests/<action>", "tuneboard_requests", _requests, methods=["POST"])
    # any signed-in user may call them (MLflow denies routes it has no validator for); each action checks the
    # user's permission on the model itself (_may)
    auth.BEFORE_REQUEST_VALIDATORS[(f"{API}/version", "GET")] = auth._allow_authenticated
    for action in ACTIONS:
        auth.BEFORE_REQUEST_VALIDATORS[(f"{API}/requests/{action}", "POST")] = auth._allow_authenticated
    served = auth.create_app(app)  # registers its sign-in check first: ours run after it, before any handler
    app.before_request(_gate)
    app.before_request(_one_reading)  # after the gate, which reads bodies as MLflow does and says why it refuses
    return served


def _one_reading():
    """Refuse a request that MLflow's sign-in check and its handler would read differently (:mod:`request_body`)."""
    refused = request_body.refusal()
    if refused is None:
        return None
    status, message = refused
    return _refuse(message, status, "INVALID_PARAMETER_VALUE", "usage")


# -- 1. the gate ----------------------------------------------------------------------------------------------
def governed_routes() -> dict[tuple[str, str], type]:
    """{(path, method): MLflow request class} for every route that can move what production is or write a record
    (the create routes too: they take tags)."""
    from mlflow.protos.model_registry_pb2 import (
        CreateModelVersion,
        CreateRegisteredModel,
        DeleteModelVersion,
        DeleteModelVersionTag,
        DeleteRegisteredModel,
        DeleteRegisteredModelAlias,
        DeleteRegisteredModelTag,
        RenameRegisteredModel,
        SetModelVersionTag,
        SetRegisteredModelAlias,
        SetRegisteredModelTag,
        TransitionModelVersionStage,
    )
    from mlflow.server.handlers import get_endpoints

    kinds = {CreateModelVersion, CreateRegisteredModel, DeleteModelVersion, DeleteModelVersionTag,
             DeleteRegisteredModel, DeleteRegisteredModelAlias, DeleteRegisteredModelTag, RenameRegisteredModel,
             SetModelVersionTag, SetRegisteredModelAlias, SetRegisteredModelTag, TransitionModelVersionStage}
    return {(path, method): kind for path, kind, methods in get_endpoints(lambda kind: kind) for method in methods
            if kind in kinds}


_ROUTES: dict[tuple[str, str], type] | None = None


def _gate():
    global _ROUTES
    from flask import request

    if _ROUTES is None:
        _ROUTES = governed_routes()
    kind = _ROUTES.get((request.path, request.method))
    if kind is None:
        return None
    rule = approval_rule()
    if rule == "off":
        return None
    params = _params()
    name = str(params.get("name") or "")
    if kind.__name__ in ("CreateRegisteredModel", "CreateModelVersion"):
        return _guard_created(kind.__name__, name, params, rule)
    marked = is_marked(_model_tags(name))
    if kind.__name__ in ("SetRegisteredModelTag", "DeleteRegisteredModelTag") and params.get("key") == APPROVAL_TAG:
        return _guard_mark(kind.__name__, name, params, marked)
    if not needs_approval(rule, {APPROVAL_TAG: MARK} if marked else {}):
        return None  # TUNEBOARD_APPROVAL=marked and this model is not marked: it promotes directly
    what = _moves_production(kind.__name__, name, params, marked)
    if what is None:
        return None
    return _refuse(f"{what} is refused: promotions of {name!r} need an approved request on this server "
                   f"({_why(rule)}), whoever asks, and nothing was changed. Request a promotion "
                   f"(python -m core.cli request {name} --version N --reason \"...\", or Request promotion on the "
                   "Registry page); someone else with MANAGE on the model approves it, and the server moves it. "
                   f"In an emergency a MANAGE user rolls back (python -m core.cli rollback {name}).")


def _params() -> dict:
    """The request's fields as MLflow's handlers read them: the query's, then the body's over them. MLflow reads a
    DELETE's body as JSON whatever its Content-Type says (and decodes a JSON string sent by an old client once more);
    read any other way, a move sent as text/plain would pass the gate with no alias or version in it."""
    from flask import request

    body = request.get_json(force=True, silent=True)
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    return {**request.args.to_dict(), **(body if isinstance(body, dict) else {})}


def _why(rule: str) -> str:
    return ("TUNEBOARD_APPROVAL=required" if rule == "required"
            else f"TUNEBOARD_APPROVAL=marked, and the model is tagged {APPROVAL_TAG}={MARK}")


def _guard_created(kind: str, name: str, params: dict, rule: str):
    """Tags given when a model or a version is made (MLflow's create routes take them; ``copy_model_version`` sends
    its source's): the mark may come in, as it only tightens; the records the server alone writes may not, or anyone
    could make a model with a forged request or audit trail, or a version with a forged promotion record."""
    given = params.get("tags")
    tags = [(str(tag.get("key") or ""), str(tag.get("value") or ""))
            for tag in (given if isinstance(given, list) else []) if isinstance(tag, dict)]
    if kind == "CreateRegisteredModel":
        marks = [value for key, value in tags if key == APPROVAL_TAG]
        wrong = [value for value in marks if not is_marked({APPROVAL_TAG: value})]
        if wrong:
            return _refuse(f"the tag {APPROVAL_TAG!r} marks a model whose promotions need someone else's approval; "
                           f"its only value is {MARK!r} (got {wrong[0]!r}), and {name!r} was not made.", 400,
                           "INVALID_PARAMETER_VALUE", "usage")
        records = [key for key, _ in tags if key.startswith(RECORD_TAG_PREFIXES)]
        marked = bool(marks)
    else:
        records = [key for key, _ in tags if _is_version_record(key)]
        marked = False
    if not records:
        return None
    if not needs_approval(rule, {APPROVAL_TAG: MARK} if marked or is_marked(_model_tags(name)) else {}):
        return None  # TUNEBOARD_APPROVAL=marked and the model is not marked: set-tag writes these too
    keys = ", ".join(repr(key) for key in dict.fromkeys(records))
    request = (f"request a promotion (python -m core.cli request {name} --version N --reason \"...\", or Request "
               "promotion on the Registry page); someone else with MANAGE on the model approves it, and the server "
               "moves it and writes the records")
    if kind == "CreateRegisteredModel":
        return _refuse(f"making the model {name!r} with the records {keys} among its tags is refused: a model's "
                       "requests and audit trail are written only by this server, as it carries out requests "
                       f"({_why(rule)}), whoever asks, and nothing was made. Make the model without these tags "
                       f"(any other tag is fine); to put a version into production, {request}.")
    return _refuse(f"making a version of {name!r} with the promotion record {keys} among its tags is refused: a "
                   "version's promotion record (who promoted it, why, on which figures) is written only by this "
                   f"server, as it carries out an approved request ({_why(rule)}), whoever asks, and nothing was "
                   "made. Make the version without these tags (any other tag is fine); a copied version carries its "
                   "source's tags (MlflowClient.copy_model_version), so make it with create_model_version from the "
                   f"source's models:/ URI instead. To put it into production, {request}.")


def _is_version_record(key: str) -> bool:
    return key in VERSION_RECORD_TAGS or key.startswith(VERSION_RECORD_PREFIXES)


def _guard_mark(kind: str, name: str, params: dict, marked: bool):
    """The mark ``tuneboard.approval=required``: anyone who may edit the model may set it; once set, nobody (the
    admin included) removes or changes it here, or a model could be unmarked, promoted, and marked again."""
    if kind == "SetRegisteredModelTag" and str(params.get("value") or "").strip().lower() != MARK:
        return _refuse(f"the tag {APPROVAL_TAG!r} marks a model whose promotions need someone else's approval; its "
                       f"only value is {MARK!r} (got {params.get('value')!r}), and nothing was changed.", 400,
                       "INVALID_PARAMETER_VALUE", "usage")
    if kind == "DeleteRegisteredModelTag" and marked:
        return _refuse(f"removing the mark {APPROVAL_TAG}={MARK} from {name!r} is refused, whoever asks: once "
                       "marked, a model's promotions need someone else's approval on this server for good "
                       f"(TUNEBOARD_APPROVAL={approval_rule()}), and nothing was changed. Promote it through a "
                       "request that someone else with MANAGE approves.")
    return None  # marking, or marking again


def _moves_production(kind: str, name: str, params: dict, marked: bool = False) -> str | None:
    """What the write would do to a governed alias or stage, in words; None when it moves none."""
    if kind in ("SetRegisteredModelAlias", "DeleteRegisteredModelAlias"):
        alias = str(params.get("alias") or "")
        verb = "setting" if kind.startswith("Set") else "deleting"
        return f"{verb} the alias {alias!r}" if alias.lower() in GOVERNED_ALIASES else None
    if kind in ("SetRegisteredModelTag", "DeleteRegisteredModelTag"):
        key = str(params.get("key") or "")
        return f"writing the record {key!r} by hand" if key.startswith(RECORD_TAG_PREFIXES) else None
    if kind in ("SetModelVersionTag", "DeleteModelVersionTag"):
        key = str(params.get("key") or "")
        governed = _is_version_record(key)
        return f"writing version {params.get('version')}'s promotion record {key!r} by hand" if governed else None
    if kind == "DeleteRegisteredModel":
        return "deleting the model"
    held = _governed_holdings(name)
    version = str(params.get("version") or "")
    if kind == "TransitionModelVersionStage":
        stage = str(params.get("stage") or "")
        target = STAGES.get(stage.lower(), stage)
        if target in GOVERNED_STAGES:
            return f"moving version {version} into {target}"
        return f"moving version {version} out of {held[version]}" if version in held else None
    if kind == "DeleteModelVersion":
        return f"deleting version {version}, which is in {held[version]}," if version in held else None
    if kind == "RenameRegisteredModel":
        if marked:  # the mark goes with the model: its old name could be made again, unmarked
            return f"renaming a model marked {APPROVAL_TAG}={MARK}"
        return "renaming a model with a version in production" if held else None
    return None


def _model_tags(name: str) -> dict[str, str]:
    """The registered model's tags as the store holds them (empty when there is no such model)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_model_registry_store

    try:
        return dict(_get_model_registry_store().get_registered_model(name).tags or {})
    except MlflowException:
        return {}


def _governed_holdings(name: str) -> dict[str, str]:
    """{version: the governed alias or stage it holds} for the model (empty when there is no such model)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_model_registry_store

    store = _get_model_registry_store()
    held: dict[str, str] = {}
    try:
        model = store.get_registered_model(name)
    except MlflowException:
        return held
    for alias_name, version in (model.aliases or {}).items():
        if alias_name.lower() in GOVERNED_ALIASES:
            held[str(version)] = f"the alias {alias_name!r}"
    for version in store.search_model_versions(f"name = '{name.replace(chr(39), chr(92) + chr(39))}'"):
        if version.current_stage in GOVERNED_STAGES:
            held.setdefault(str(version.version), f"stage {version.current_stage}")
    return held


def _refuse(message: str, status: int = 403, code: str = "PERMISSION_DENIED", kind: str = "approval"):
    from flask import jsonify

    response = jsonify({"error_code": code, "message": message, "tuneboard": kind})
    response.status_code = status
    return response


# -- 2. requests and approvals, carried out by the server ---------------------------------------------------------
def _version():
    from flask import jsonify

    return jsonify({"app": APP_NAME, "version": API_VERSION, "approval": approval_rule()})


def _requests(action: str):
    from flask import jsonify, request

    if action not in ACTIONS:
        return _refuse(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", 404, "ENDPOINT_NOT_FOUND", "usage")
    body = request.get_json(silent=True) or {}
    name = str(body.get("name") or "").strip()
    if not name:
        return _refuse("name the registered model ('name').", 400, "INVALID_PARAMETER_VALUE", "usage")
    user = _signed_in()
    if not _may(user, name, NEEDS[action]):
        verb = {"request": "request a promotion of", "withdraw": "withdraw a request for",
                "approve": "approve a promotion of", "reject": "reject a promotion of", "rollback": "rollback"}[action]
        return _refuse(f"The MLflow server refused to let {user} {verb} {name!r}: it needs {NEEDS[action]} "
                       "permission on the registered model. Ask its owner or an admin to grant it.", kind="auth")
    try:
        with model_lock(name):
            return jsonify(_carry_out(action, name, user, body))
    except ApprovalError as exc:
        return _refuse(str(exc), 409, "INVALID_STATE")
    except NotFoundError as exc:
        return _refuse(str(exc), 404, "RESOURCE_DOES_NOT_EXIST", "not_found")
    except TuneboardError as exc:
        return _refuse(str(exc), 400, "INVALID_PARAMETER_VALUE", "registry")


def _carry_out(action: str, name: str, user: str, body: dict) -> dict:
    transition = ModelTransition(name, registry_uri=os.environ["MLFLOW_REGISTRY_URI"],
                                 tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    request_id = body.get("request_id") or None
    reason = str(body.get("reason") or "")
    if action == "rollback":
        version = transition.rollback(body.get("stage") or "Production", reason=reason, user=user)
        return {"version": str(version.version)}
    if action == "request":
        if body.get("version") in (None, ""):
            raise ApprovalError("name the candidate version ('version'): register it first.")
        done = approvals.request(transition, version=str(body["version"]), metric=body.get("metric") or "accuracy",
                                 stage=body.get("stage") or "Production", reason=reason, user=user,
                                 label=body.get("candidate") or None)
    elif action == "approve":
        done = approvals.approve(transition, request_id, reason=reason, user=user)
    elif action == "reject":
        done = approvals.reject(transition, request_id, reason=reason, user=user)
    else:
        done = approvals.withdraw(transition, request_id, reason=reason, user=user)
    return {"request": dataclasses.asdict(done)}


def _signed_in() -> str:
    from mlflow.server.auth import authenticate_request

    return authenticate_request().username


def _may(user: str, name: str, needs: str) -> bool:
    """Whether the signed-in ``user`` holds ``needs`` (EDIT or MANAGE) on the model, as MLflow's own checks read it."""
    from mlflow.server import auth

    if auth.store.get_user(user).is_admin:
        return True
    permission = auth._get_registered_model_permission(name)  # the same reading MLflow's validators make
    return permission.can_manage if needs == "MANAGE" else permission.can_update


@contextlib.contextmanager
def model_lock(name: str):
    """One move of a model at a time across the server's workers (and servers sharing the backend store)."""
    from mlflow.server.handlers import _get_model_registry_store

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    engine = getattr(_get_model_registry_store(), "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    folder = Path(tempfile.gettempdir()) / "tuneboard-locks"
    folder.mkdir(exist_ok=True)
    with open(folder / f"{key & 0xFFFFFFFFFFFF:x}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


# -- the server's own stores -------------------------------------------------------------------------------------
def _point_at_own_stores() -> None:
    """Our code in the server reads and writes the server's stores directly, and its ``mlflow-artifacts:`` URIs are
    the server's own artifact destination (a client's REST path would loop back through the gate)."""
    from mlflow.server import (
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
    )
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry

    backend = os.environ.get(BACKEND_STORE_URI_ENV_VAR)
    if backend:
        os.environ["MLFLOW_TRACKING_URI"] = backend
        os.environ["MLFLOW_REGISTRY_URI"] = os.environ.get(REGISTRY_STORE_URI_ENV_VAR) or backend
    destination = os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR)
    if not destination:
        return
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
    from mlflow.utils.uri import append_to_uri_path

    def served(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        if (tracking_uri or os.environ["MLFLOW_TRACKING_URI"]).startswith(("http://", "https://")):
            return MlflowArtifactsRepository(artifact_uri, tracking_uri, registry_uri)
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(append_to_uri_path(destination, urlparse(artifact_uri).path.lstrip("/")))

    _artifact_repository_registry.register("mlflow-artifacts", served)
