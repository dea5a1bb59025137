"""Promotion requests: the people who train prepare a promotion, the people it is for approve or reject it.

A request registers the candidate version and records, as a registered-model tag ``request.<id>`` (JSON, like the
audit trail's ``audit.*`` tags, so any reader of the store sees it), who asked, when, why, the candidate and the
version it would replace. Production does not change. Then:

- approve: refused when the request is no longer pending, when production changed since it was made, or when its
  candidate was archived or deleted (the message says what changed); with ``TUNEBOARD_APPROVAL=required``, refused
  to the person who requested it. Otherwise the version is promoted exactly as a direct promotion (alias, stage,
  archive, audit trail naming both people, decision record, rollback). Two approvals racing leave one version in
  production: the promotion's own settling decides, and the event of the one that lost says "overtaken".
- reject: production stays; the request records who and why.
- withdraw: only the person who asked.

On a server with sign-in the server decides: a request writes the registry (EDIT on the model); an approval or
rejection first asks the server for a change that needs MANAGE (deleting an alias nobody sets), so a user without
MANAGE is refused whatever route they take.

These functions take a ``model_transition.ModelTransition`` (``transition``); its ``request``, ``approve``,
``reject``, ``withdraw`` and ``requests`` methods call them.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from mlflow.exceptions import MlflowException

from core.auth import refusal, signed_in_user
from core.errors import ApprovalError, AuthError, NotFoundError
from core.examples.table import read_predictions
from core.naming import alias_for
from core.registry import approval_client, decision_record
from core.settings import current_user

PREFIX = "request."  # registered-model tags: one per request
VERSION_TAG = "promotion_request"  # on the candidate version: the id of the request that named it
GATE_ALIAS = "tuneboard-approval-check"  # never set: deleting it is a change only MANAGE may make
PENDING, APPROVED, REJECTED, WITHDRAWN = "pending", "approved", "rejected", "withdrawn"


@dataclass(frozen=True)
class PromotionRequest:
    id: str
    at: str
    user: str
    reason: str
    version: str  # the candidate
    alias: str  # where it would go ("production")
    replaces: str | None  # the version holding the alias when the request was made
    candidate: str = ""  # "run hf-lr0.005 of EXP, best by accuracy" / "version 3"
    metric: str = "accuracy"
    status: str = PENDING
    decided_by: str = ""
    decided_at: str = ""
    decision_reason: str = ""
    note: str = ""  # e.g. overtaken by an approval made at the same moment
    record: str = ""  # the decision record's run id (approved)

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    @property
    def as_text(self) -> str:
        replaces = f"replacing version {self.replaces}" if self.replaces else "nothing in it now"
        what = f"version {self.version}"
        detail = self.candidate.removeprefix(what).strip(" ()") if self.candidate else ""  # "version 3 (run x)"
        what += f" ({detail})" if detail else ""
        said = (f"request {self.id}: {self.user} asked at {self.at[:16].replace('T', ' ')} to put {what} into "
                f"{self.alias} ({replaces})")
        said += f' — "{self.reason}"' if self.reason else ""
        if not self.pending:
            said += f"; {self.status} by {self.decided_by} at {self.decided_at[:16].replace('T', ' ')}"
            said += f' — "{self.decision_reason}"' if self.decision_reason else ""
        return said + (f" [{self.note}]" if self.note else "")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def requests(transition) -> list[PromotionRequest]:
    """Every request of the model, oldest first (none for a model that does not exist)."""
    try:
        model = transition.client.get_registered_model(transition.model_name)
    except MlflowException:
        return []
    found = [PromotionRequest(**json.loads(v)) for k, v in model.tags.items() if k.startswith(PREFIX)]
    return sorted(found, key=lambda r: r.at)


def pending(transition) -> list[PromotionRequest]:
    return [r for r in requests(transition) if r.pending]


def find(transition, request_id: str | None = None) -> PromotionRequest:
    """The request ``request_id``, or with none the model's only pending one."""
    found = requests(transition)
    if request_id:
        for req in found:
            if req.id == request_id:
                return req
        raise NotFoundError(f"{transition.model_name!r} has no promotion request {request_id!r}. Requests: "
                            f"{', '.join(r.id for r in found) or 'none'}.")
    waiting = [r for r in found if r.pending]
    if not waiting:
        raise NotFoundError(f"no promotion request of {transition.model_name!r} is waiting.")
    if len(waiting) > 1:
        raise ApprovalError(f"{len(waiting)} requests of {transition.model_name!r} are waiting: say which with "
                            "--request ID: " + "; ".join(r.as_text for r in waiting) + ".")
    return waiting[0]


def _write(transition, req: PromotionRequest) -> None:
    transition.client.set_registered_model_tag(transition.model_name, PREFIX + req.id, json.dumps(asdict(req)))


def request(transition, *, version=None, experiment: str | None = None, metric: str = "accuracy",
            stage: str = "Production", reason: str = "", user: str | None = None,
            model_id: str | None = None, label: str | None = None) -> PromotionRequest:
    """Register the candidate (``version``; or the model ``model_id``; or the best run of ``experiment`` by
    ``metric``) and record a request to put it into ``stage``. Production does not change. ``label``: the candidate
    in words when a version is given (the best run it was registered from).

    On a server running Tuneboard's app the server records the request (``core.registry.approval_client``)."""
    alias, _ = alias_for(stage)
    user = user or current_user()
    if approval_client.served(transition):
        return _request_on_server(transition, version=version, experiment=experiment, metric=metric, stage=stage,
                                  reason=reason, model_id=model_id, label=label)
    try:
        if version is not None:
            candidate = transition._version(str(version))
            label = label or f"version {candidate.version}" + (f" (run {candidate.tags['source_run_name']})"
                                                               if candidate.tags.get("source_run_name") else "")
        elif model_id:
            candidate = transition.register_logged_model(model_id)
            label = f"logged model {model_id}"
        elif experiment:
            candidate, label = transition.register_best(experiment, metric)
        else:
            raise ApprovalError("name the candidate: a version, a logged model id, or an experiment to take the "
                                "best run from.")
        number = str(candidate.version)
        current = transition.current(alias)
        if current is not None and str(current.version) == number:
            raise ApprovalError(f"version {number} of {transition.model_name!r} is already in {alias}: there is "
                                "nothing to request.")
        if candidate.current_stage == "Archived":
            raise ApprovalError(f"version {number} of {transition.model_name!r} is archived; register it again or "
                                "request another version.")
        for other in pending(transition):
            if other.version == number and other.alias == alias:
                raise ApprovalError(f"request {other.id} by {other.user} already asks for version {number} in "
                                    f"{alias}; it is waiting for approval.")
        req = PromotionRequest(id=secrets.token_hex(3), at=_now(), user=user, reason=reason, version=number,
                               alias=alias, replaces=str(current.version) if current is not None else None,
                               candidate=label, metric=metric)
        _write(transition, req)
        transition.client.set_model_version_tag(transition.model_name, number, VERSION_TAG, req.id)
    except MlflowException as exc:
        raise _refused(exc, "request a promotion of", transition.model_name, "EDIT") or ApprovalError(
            f"the registry refused the request for {transition.model_name!r}: {exc}") from exc
    return req


def _request_on_server(transition, *, version, experiment, metric, stage, reason, model_id, label):
    """Register the candidate here (as the signed-in user), then ask the server to record the request."""
    try:
        if version is None and model_id:
            version, label = transition.register_logged_model(model_id).version, f"logged model {model_id}"
        elif version is None and experiment:
            registered, label = transition.register_best(experiment, metric)
            version = registered.version
    except MlflowException as exc:
        raise _refused(exc, "request a promotion of", transition.model_name, "EDIT") or ApprovalError(
            f"the registry refused the request for {transition.model_name!r}: {exc}") from exc
    if version is None:
        raise ApprovalError("name the candidate: a version, a logged model id, or an experiment to take the "
                            "best run from.")
    return PromotionRequest(**approval_client.call(transition, "request", version=str(version), metric=metric,
                                                   stage=stage, reason=reason, candidate=label)["request"])


def _on_server(transition, action: str, request_id: str | None, reason: str) -> PromotionRequest:
    found = approval_client.call(transition, action, request_id=request_id, reason=reason)
    return PromotionRequest(**found["request"])


def _refused(exc: Exception, action: str, model_name: str, needs: str) -> AuthError | None:
    found = refusal(exc, action, model_name)
    if found is None:
        return None
    who = signed_in_user() or "this user"
    return AuthError(f"The MLflow server refused to let {who} {action} {model_name!r}: it needs {needs} permission "
                     "on the registered model. Ask its owner or an admin to grant it.")


def _gate(transition, action: str) -> None:
    """Ask the server for a change only MANAGE may make (deleting an alias nobody sets): it refuses the others."""
    try:
        transition.client.delete_registered_model_alias(transition.model_name, GATE_ALIAS)
    except MlflowException as exc:
        found = _refused(exc, action, transition.model_name, "MANAGE")
        if found is not None:
            raise found from exc


def _decidable(transition, req: PromotionRequest, action: str) -> None:
    if not req.pending:
        raise ApprovalError(f"request {req.id} of {transition.model_name!r} was already {req.status} by "
                            f"{req.decided_by} at {req.decided_at[:16].replace('T', ' ')}: there is nothing to "
                            f"{action}.")


def comparison(transition, req: PromotionRequest, read: Callable | None = None) -> decision_record.Comparison:
    """The request's candidate beside what holds its alias now (or its pretrained baseline)."""
    read = read or (lambda run_id: read_predictions(transition.client, run_id))
    candidate = transition._version(req.version)
    return decision_record.compare(transition.client, transition.model_name, candidate, transition.current(req.alias),
                                   read, req.metric)


def approve(transition, request_id: str | None = None, *, reason: str = "", user: str | None = None,
            read: Callable | None = None) -> PromotionRequest:
    """Approve a pending request: promote its candidate as a promotion does (see the module's docstring)."""
    req = find(transition, request_id)
    user = user or current_user()
    _decidable(transition, req, "approve")
    if transition.needs_approval() and user == req.user:  # said here too when only this process requires it
        raise ApprovalError(f"{user} requested this promotion (request {req.id}), and promotions need someone "
                            "else's approval (TUNEBOARD_APPROVAL=required). Ask another person with MANAGE on "
                            f"{transition.model_name!r} to approve it; nothing was changed.")
    if approval_client.served(transition):  # the server checks again, as the signed-in user, and moves it
        return _on_server(transition, "approve", req.id, reason)
    _gate(transition, "approve a promotion of")
    still_stands(transition, req, transition.current(req.alias))
    compared = comparison(transition, req, read)
    transition.promote(req.version, req.alias, reason=reason or req.reason, user=user, evidence=compared.evidence,
                       approved=req, comparison=compared)
    event = next((e for e in reversed(transition.audit_trail()) if e.request == req.id), None)
    # two approvals at the same moment: the promotion's settling left one in production; the other's event says
    # "overtaken", and so does its request
    done = replace(req, status=APPROVED, decided_by=user, decided_at=_now(), decision_reason=reason,
                   note=event.note if event else "", record=event.record if event else "")
    _write(transition, done)
    return done


def still_stands(transition, req: PromotionRequest, current) -> None:
    """Refuse an approval whose request went stale: ``current`` (what holds the alias now) is not what it was when
    the request was made, or the candidate was archived or deleted. The message says what changed."""
    try:
        candidate = transition.client.get_model_version(transition.model_name, req.version)
    except MlflowException:
        raise ApprovalError(f"version {req.version} of {transition.model_name!r}, the candidate of request {req.id}, "
                            "was deleted since the request was made; nothing was changed.") from None
    if candidate.current_stage == "Archived":
        raise ApprovalError(f"version {req.version} of {transition.model_name!r}, the candidate of request {req.id}, "
                            "was archived since the request was made; nothing was changed. Request it again if "
                            "it should still go ahead.")
    now = str(current.version) if current is not None else None
    if now != req.replaces:
        was = f"version {req.replaces}" if req.replaces else "nothing"
        is_now = f"version {now}" if now else "nothing"
        by = (f" (put there by {current.tags.get('promoted_by')} at {current.tags.get('promoted_at', '?')[:16]})"
              if current is not None and current.tags.get("promoted_by") else "")
        raise ApprovalError(f"{req.alias} changed since request {req.id} was made: it held {was} then and holds "
                            f"{is_now}{by} now, so the comparison the request was made on no longer holds. Nothing "
                            "was changed; request the promotion again to compare with what is there now.")


def reject(transition, request_id: str | None = None, *, reason: str, user: str | None = None) -> PromotionRequest:
    """Reject a pending request: production stays, the request records who and why."""
    if not reason or not reason.strip():
        raise ApprovalError("say why the request is rejected (--reason): the person who asked reads it.")
    req = find(transition, request_id)
    _decidable(transition, req, "reject")
    if approval_client.served(transition):
        return _on_server(transition, "reject", req.id, reason.strip())
    _gate(transition, "reject a promotion of")
    done = replace(req, status=REJECTED, decided_by=user or current_user(), decided_at=_now(),
                   decision_reason=reason.strip())
    _write(transition, done)
    return done


def withdraw(transition, request_id: str | None = None, *, reason: str = "",
             user: str | None = None) -> PromotionRequest:
    """Withdraw a pending request; only the person who made it may."""
    req = find(transition, request_id)
    user = user or current_user()
    _decidable(transition, req, "withdraw")
    if user != req.user:
        raise ApprovalError(f"only {req.user}, who made request {req.id}, can withdraw it; a person with MANAGE "
                            "can reject it instead.")
    if approval_client.served(transition):
        return _on_server(transition, "withdraw", req.id, reason)
    done = replace(req, status=WITHDRAWN, decided_by=user, decided_at=_now(), decision_reason=reason)
    try:
        _write(transition, done)
    except MlflowException as exc:
        raise _refused(exc, "withdraw a request for", transition.model_name, "EDIT") or ApprovalError(
            f"the registry refused to withdraw request {req.id}: {exc}") from exc
    return done
