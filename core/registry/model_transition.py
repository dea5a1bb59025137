"""The seed's ``ModelTransition``: register the best model and move it into a stage.

Stages are deprecated in MLflow 3 and refused by Unity Catalog, so a
transition always sets an alias (``Production`` -> ``production``) and also
sets the stage where the registry supports it, archiving the version it
replaces. Each promotion records who, when, why and the version replaced, on
the new version and in an audit trail on the registered model (with, when given,
the evidence it was promoted on: the candidate against production in figures);
``rollback`` puts back the version that the current one replaced.

Each promotion also leaves a decision record (``core.registry.decision_record``: one HTML page kept in the experiment
``Promotions - MODEL``, named on the version and in the audit event). Promotions can go through a request that
another person approves (``core.registry.approvals``: :meth:`ModelTransition.request`, :meth:`~ModelTransition.approve`,
:meth:`~ModelTransition.reject`, :meth:`~ModelTransition.withdraw`); with ``TUNEBOARD_APPROVAL=required`` that is
the only way in, and a direct promotion or move is refused (a rollback stays open, as an emergency action); with
``TUNEBOARD_APPROVAL=marked`` that holds for the models tagged ``tuneboard.approval=required``
(:meth:`~ModelTransition.mark_for_approval`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException

from core import runs as runs_mod
from core.auth import refusal
from core.errors import ApprovalError, NotFoundError, RegistryError
from core.examples.table import read_predictions
from core.metrics import EVAL_PREFIX, headline, is_bookkeeping
from core.naming import STAGES, alias_for
from core.registry import approval_client, approvals, decision_record
from core.registry.model_selector import ModelSelector
from core.settings import APPROVAL_TAG, MARK, Settings, approval_rule, configure_mlflow, current_user, is_marked

log = logging.getLogger(__name__)
# MLflow deprecates registry stages ("Model registry stages will be removed in a future major release"), a
# FutureWarning on every stage call; the seed's contract keeps the stage beside the alias, so it is expected. One
# filter, set once: catch_warnings around each call swaps the process's filters and is not thread-safe (ten
# racing promotions let the warning through, and a test failed on it).
STAGES_DEPRECATION = ".*Model registry stages will be removed"
warnings.filterwarnings("ignore", message=STAGES_DEPRECATION, category=FutureWarning)

AUDIT_PREFIX = "audit."
EVIDENCE_PREFIX = "evidence."  # version tags: the figures a promotion was decided on


@dataclass(frozen=True)
class AuditEvent:
    at: str
    action: str  # "promote" | "rollback"
    alias: str
    version: str
    replaced: str | None
    user: str
    reason: str
    note: str = ""  # e.g. overtaken by a promotion made at the same moment
    evidence: dict[str, str] = field(default_factory=dict)  # the figures it was decided on (events before: none)
    requested_by: str = ""  # an approved request: who asked (``user`` approved)
    request: str = ""  # its id
    record: str = ""  # the run id of its decision record (``core.registry.decision_record``)

    @property
    def as_text(self) -> str:
        was = f"replacing version {self.replaced}" if self.replaced else "nothing held it before"
        why = f' — "{self.reason}"' if self.reason else ""
        note = f" [{self.note}]" if self.note else ""
        asked = f", requested by {self.requested_by} (request {self.request})" if self.requested_by else ""
        kept = f"; decision record: run {self.record}" if self.record else ""
        verb = "approved" if self.requested_by and self.action == "promote" else f"{self.action}d"
        return (f"{self.at} {self.user} {verb} version {self.version} to {self.alias}{asked} ({was}){why}{note}"
                f"{kept}")


class ModelTransition:
    """Register and promote versions of one registered model."""

    def __init__(self, model_name: str, registry_uri: str | None = None, *, tracking_uri: str | None = None,
                 checkpoint: Callable[[str], None] | None = None):
        """``checkpoint``: called with "registered", "alias set" and "settled" as a promotion passes those
        points, and "checked" when an approved request was found still standing just before the alias moves (a
        test seam: ``core.faults``); none by default."""
        if not isinstance(model_name, str) or not model_name.strip():
            raise RegistryError("model_name must be a non-empty name for the registered model.")
        settings = configure_mlflow(Settings.from_env())
        self._checkpoint = checkpoint or (lambda stage: None)
        self.model_name = model_name.strip()
        self.registry_uri = registry_uri or settings.registry_uri
        self.client = runs_mod.client(tracking_uri or settings.tracking_uri, self.registry_uri)

    @property
    def supports_stages(self) -> bool:
        return not self.registry_uri.startswith("databricks-uc")

    # -- reading ---------------------------------------------------------------------------------
    def current(self, stage_or_alias: str = "Production"):
        """The version holding the alias now, or None."""
        alias, _ = alias_for(stage_or_alias)
        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:  # no such alias or model: nothing holds it
            return None

    def versions(self) -> list:
        return sorted(self.client.search_model_versions(f"name = '{_quote(self.model_name)}'"),
                      key=lambda v: int(v.version))

    def versions_frame(self):
        """One row per version: aliases, stage, lineage and the metrics recorded at registration."""
        import pandas as pd

        rows = []
        # search_model_versions leaves aliases out on some stores: read them from the registered model
        aliases: dict[str, list[str]] = {}
        try:
            for alias, version in self.client.get_registered_model(self.model_name).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
        except MlflowException:
            pass
        for v in self.versions():
            tags = v.tags
            rows.append({
                "version": str(v.version), "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
                "stage": v.current_stage,
                "source run": tags.get("source_run_name", ""), "base model": tags.get("base_model_name", ""),
                "dataset": tags.get("dataset_name", ""), "validation digest": tags.get("validation_digest", ""),
                **recorded_metrics(v),
                "promoted by": tags.get("promoted_by", ""), "promoted at": tags.get("promoted_at", ""),
                "requested by": tags.get("requested_by", ""),
                "decision record": tags.get(decision_record.VERSION_TAG, ""),
                "registered": pd.to_datetime(v.creation_timestamp, unit="ms"), "run_id": v.run_id})
        return pd.DataFrame(rows)

    def load(self, stage_or_alias: str = "Production"):
        """The pyfunc model holding the alias (for a quick prediction)."""
        import mlflow

        alias, _ = alias_for(stage_or_alias)
        if self.current(alias) is None:
            raise NotFoundError(f"no version of {self.model_name!r} is in {stage_or_alias}.")
        return mlflow.pyfunc.load_model(f"models:/{self.model_name}@{alias}")

    def audit_trail(self) -> list[AuditEvent]:
        """Every promotion and rollback of this model, oldest first."""
        return self._snapshot()[1]

    def _snapshot(self) -> tuple[dict[str, str], list[AuditEvent]]:
        """({alias: version}, audit trail) from one read of the registered model (none: empty)."""
        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException:
            return {}, []
        events = [AuditEvent(**json.loads(v)) for k, v in model.tags.items() if k.startswith(AUDIT_PREFIX)]
        return {a: str(v) for a, v in model.aliases.items()}, sorted(events, key=lambda e: e.at)

    # -- writing ---------------------------------------------------------------------------------
    def register_run(self, run, model_uri: str | None = None, *, link: str = ""):
        """Register a run's model as a new version (or return the version already made from it).

        The model is found through MLflow's own links when ``model_uri`` is not given (``core.runs.find_models``),
        so runs logged by other tools register too. The version records the run's final metrics; the five
        classification metrics are read as their ``eval_`` forms where the run logged only those (HF Trainer).
        ``link``: how the model was linked to the run when that was by time (kept as the ``linked_by_time`` tag).
        """
        for existing in self.versions():
            if existing.run_id == run.info.run_id:
                return existing
        uri = model_uri or runs_mod.model_uri(run, self.client)
        logged = run.data.metrics
        metrics = {f"metric.{k}": f"{v:.6g}" for k, v in logged.items()
                   if not k.startswith(("eval_", "train_", "loss")) and not is_bookkeeping(k)}
        read = {k: v for k, v in headline(logged).items() if k not in logged}
        metrics.update({f"metric.{k}": f"{v:.6g}" for k, v in read.items()})
        tags = {"source_run_id": run.info.run_id, "source_run_name": run.info.run_name or "",
                **{k: run.data.tags[k] for k in ("base_model_name", "dataset_name", "param_set")
                   if k in run.data.tags},
                **({"validation_digest": run.data.params["validation_digest"]}
                   if "validation_digest" in run.data.params else {}),
                **({"metrics_read_as": ", ".join(f"{k} <- {EVAL_PREFIX}{k}" for k in read)} if read else {}),
                **({"linked_by_time": link} if link else {}),
                **metrics}
        try:
            version = self._register(uri, tags, run.info.run_id)
            self._checkpoint("registered")
            experiment = self.client.get_experiment(run.info.experiment_id).name
            self.client.update_model_version(
                self.model_name, version.version,
                description=f"From run {run.info.run_name} ({run.info.run_id}) in experiment {experiment}.")
        except MlflowException as exc:
            raise refusal(exc, "register a version of", self.model_name) or RegistryError(
                f"the registry refused to register run {run.info.run_name} as {self.model_name!r}: {exc}") from exc
        return version

    def _register(self, uri: str, tags: dict[str, str], run_id: str):
        """A new version of ``uri`` whose own ``run_id`` field names the run (MLflow's "Source run",
        ``search_model_versions("run_id = ...")``): MLflow fills it for ``runs:/`` URIs and leaves it empty for a
        ``models:/m-...`` one, as for a model linked to its run by time, so that one is given it here."""
        import mlflow

        if not uri.startswith("models:/m-"):
            return mlflow.register_model(uri, self.model_name, tags=tags)
        try:
            self.client.create_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        return self.client.create_model_version(self.model_name, uri, run_id=run_id, tags=tags,
                                                model_id=uri.removeprefix("models:/"))

    def transition_model(self, stage: str, experiment_name: str | None = None, metric: str = "accuracy",
                         version: str | int | None = None, *, reason: str = "", user: str | None = None,
                         evidence: Mapping[str, str] | None = None):
        """Move ``version`` (or, with none, the best run of ``experiment_name`` by ``metric``) to ``stage``;
        ``evidence`` as for :meth:`promote`; the decision record tests ``metric``."""
        alias_for(stage)  # refuse a bad name before registering anything
        self._refuse_direct()
        if version is None:
            if not experiment_name:
                raise RegistryError("give either a version or an experiment_name to pick the best run from.")
            registered, label = self.register_best(experiment_name, metric)
            version = registered.version
            reason = reason or f"best {label}"
        return self.promote(version, stage, reason=reason, user=user, evidence=evidence, metric=metric)

    def register_best(self, experiment_name: str, metric: str = "accuracy") -> tuple[object, str]:
        """Register the best run of ``experiment_name`` by ``metric`` that holds a model; (the version, what it is in
        words: "run NAME of EXPERIMENT by accuracy", with how its model was linked when that was by time)."""
        selector = ModelSelector(experiment_name, metric)
        best = selector.get_best_promotable()
        link = selector.links.get(best.info.run_id)
        version = self.register_run(best, selector.model_uri(best), link=link.words if link else "")
        label = f"run {best.info.run_name} of {experiment_name} by {selector.metric_label}"
        return version, label + (f" ({link.words})" if link else "")

    def register_logged_model(self, model_id: str):
        """Register an MLflow 3 logged model by its id (``m-...``): a model linked to no run, as a plain
        ``trainer.train()`` then ``log_model`` script leaves; returns the version (an existing one if made from it)."""
        import mlflow

        uri = f"models:/{model_id}"
        try:
            model = self.client.get_logged_model(model_id)
        except MlflowException:
            raise NotFoundError(f"there is no logged model {model_id!r} in this store.") from None
        for existing in self.versions():
            if existing.source == uri or getattr(existing, "model_id", None) == model_id:
                return existing
        try:
            version = mlflow.register_model(uri, self.model_name, tags={
                "logged_model_id": model_id, "source_run_name": model.name or model_id})
            self.client.update_model_version(self.model_name, version.version,
                                             description=f"From logged model {model_id} (linked to no run).")
        except MlflowException as exc:
            raise refusal(exc, "register a version of", self.model_name) or RegistryError(
                f"the registry refused to register logged model {model_id} as {self.model_name!r}: {exc}") from exc
        return version

    def promote_logged_model(self, model_id: str, stage: str = "Production", *, reason: str = "",
                             user: str | None = None):
        """Register logged model ``model_id`` (:meth:`register_logged_model`) and promote it to ``stage``."""
        self._refuse_direct()  # before anything is registered
        version = self.register_logged_model(model_id)
        return self.promote(version.version, stage, reason=reason or f"logged model {model_id}", user=user)

    # -- requests and approvals (core.registry.approvals) -------------------------------------------------------------
    def request(self, version: str | int | None = None, *, experiment_name: str | None = None,
                metric: str = "accuracy", stage: str = "Production", reason: str = "", user: str | None = None,
                model_id: str | None = None) -> approvals.PromotionRequest:
        """Ask for ``version`` (or logged model ``model_id``, or the best run of ``experiment_name`` by ``metric``)
        to go into ``stage``: it is registered and the request recorded; production does not change."""
        return approvals.request(self, version=version, experiment=experiment_name, metric=metric, stage=stage,
                                 reason=reason, user=user, model_id=model_id)

    def requests(self) -> list[approvals.PromotionRequest]:
        """Every promotion request of this model, oldest first."""
        return approvals.requests(self)

    def approve(self, request_id: str | None = None, *, reason: str = "", user: str | None = None, read=None):
        """Approve a request (the only pending one when no id is given): its candidate is promoted."""
        return approvals.approve(self, request_id, reason=reason, user=user, read=read)

    def reject(self, request_id: str | None = None, *, reason: str, user: str | None = None):
        """Reject a request: production stays, the request records who and why."""
        return approvals.reject(self, request_id, reason=reason, user=user)

    def withdraw(self, request_id: str | None = None, *, reason: str = "", user: str | None = None):
        """Withdraw a request (only its requester may)."""
        return approvals.withdraw(self, request_id, reason=reason, user=user)

    def decision_record(self, version: str | int, *, with_texts: bool = False) -> str:
        """The HTML decision record of the version's promotion (the example texts only when asked for)."""
        run_id = self._version(str(version)).tags.get(decision_record.VERSION_TAG)
        if not run_id:
            raise NotFoundError(f"version {version} of {self.model_name!r} has no decision record (it was promoted "
                                "before records were kept, or never promoted).")
        return decision_record.download(self.client, run_id, with_texts=with_texts)

    def needs_approval(self) -> bool:
        """Whether promotions of this model need a request approved by someone else (see ``approval_rule``)."""
        return self.approval_rule() is not None

    def approval_rule(self) -> str | None:
        """Why promotions of this model need an approved request, in words (None: they do not). The rule is
        ``TUNEBOARD_APPROVAL`` in this process's environment, or on the team server that runs Tuneboard's app (the
        server's rule holds for everyone, whatever this process says; ``core.registry.approval_client``):
        "required" governs every model, "marked" the models tagged ``tuneboard.approval=required``."""
        rules = self._rules()
        if "required" in rules:
            return "TUNEBOARD_APPROVAL=required"
        if "marked" in rules and self.marked():
            return f"TUNEBOARD_APPROVAL=marked, and the model is tagged {APPROVAL_TAG}={MARK}"
        return None

    def governs_marked_only(self) -> bool:
        """Whether the rule in force is "marked" (not "required", which governs every model): then marking a model
        that :meth:`approval_rule` does not govern yet makes its promotions need approval."""
        rules = self._rules()
        return "marked" in rules and "required" not in rules

    def _rules(self) -> set[str]:
        """The approval rules in force: this process's ``TUNEBOARD_APPROVAL`` and the team server's."""
        return {approval_rule(), approval_client.server_rule(self) or "off"}

    def marked(self) -> bool:
        """Whether the model carries the mark ``tuneboard.approval=required`` (False for a model not yet made)."""
        try:
            return is_marked(self.client.get_registered_model(self.model_name).tags)
        except MlflowException:
            return False

    def mark_for_approval(self) -> None:
        """Tag the model ``tuneboard.approval=required`` (made first if it does not exist): with
        ``TUNEBOARD_APPROVAL=marked`` its promotions then need someone else's approval. On the team server the
        mark cannot be removed or changed afterwards, by anyone."""
        try:
            try:
                self.client.get_registered_model(self.model_name)
            except MlflowException:
                self.client.create_registered_model(self.model_name)
            self.client.set_registered_model_tag(self.model_name, APPROVAL_TAG, MARK)
        except MlflowException as exc:
            raise approvals._refused(exc, "mark", self.model_name, "EDIT") or RegistryError(
                f"the registry refused to mark {self.model_name!r} as needing approval: {exc}") from exc

    def _refuse_direct(self) -> None:
        why = self.approval_rule()
        if why:
            raise ApprovalError(
                f"promotions of {self.model_name!r} need an approved request ({why}), so a direct promotion or "
                "move is refused and nothing was changed. Ask for one: python -m core.cli request "
                f"{self.model_name} --version N --reason \"...\" (or Request promotion on the Registry page); "
                "someone else approves it.")

    def promote(self, version: str | int, stage: str = "Production", *, reason: str = "", user: str | None = None,
                action: str = "promote", evidence: Mapping[str, str] | None = None,
                approved: approvals.PromotionRequest | None = None,
                comparison: decision_record.Comparison | None = None, record: bool = True,
                metric: str | None = None):
        """Point the stage's alias at ``version``, set the stage where supported, and record it.

        ``evidence``: the figures the promotion was decided on (``core.examples.evaluation.LikeForLike.evidence``:
        the candidate against production, its interval, p-value and verdict), written as ``evidence.*`` tags on
        the version and into the audit event.

        Safe when several people promote at once: the alias is the single source of truth (one value, last
        writer wins) and :meth:`_settle` brings the stages in line with it, so exactly one version ends in a
        stage however the calls interleave; an event whose version lost the race says so in its note.

        ``approved``: the request this promotion carries out (``core.registry.approvals``); without one, a promotion is
        refused when approval is required (a rollback is not). A promotion leaves a decision record
        (``record``; ``comparison`` is what it was decided on, worked out here when not given, testing ``metric``:
        the one the candidate was chosen by, else the one ``evidence`` tested, else accuracy).
        """
        alias, stage_name = alias_for(stage)
        if action == "promote" and approved is None:
            self._refuse_direct()
        version = str(version)
        target = self._version(version)
        previous = self.current(alias)
        replaced = str(previous.version) if previous is not None else None
        if replaced == version and (not stage_name or target.current_stage == stage_name
                                    or not self.supports_stages):
            return target
        user = user or current_user()
        keep = record and action == "promote" and alias in ("production", "champion")
        if keep and comparison is None:
            comparison = self._compare(target, previous, metric or (evidence or {}).get("metric") or "accuracy")
        if approved is not None:  # read again just before the alias moves: what the request was made against
            previous = self.current(alias)
            replaced = str(previous.version) if previous is not None else None
            approvals.still_stands(self, approved, previous)
            self._checkpoint("checked")
        try:
            self._set_alias(alias, version)
            self._checkpoint("alias set")
            self._settle(alias, stage_name, version)
            self._checkpoint("settled")
            at = _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
            holder = self.current(alias)
            note = "" if holder is not None and str(holder.version) == version else \
                f"overtaken: version {holder.version if holder else '?'} was put there at the same moment"
            event = AuditEvent(at=at, action=action, alias=alias, version=version, replaced=replaced, user=user,
                               reason=reason, note=note, evidence={str(k): str(v) for k, v in (evidence or {}).items()},
                               requested_by=approved.user if approved else "", request=approved.id if approved else "")
            if keep:
                event = AuditEvent(**{**event.__dict__, "record": self._write_record(event, target, approved,
                                                                                     comparison)})
            for key, value in {"promoted_by": user, "promoted_at": event.at, "promoted_to": alias,
                               "promotion_reason": reason, "replaced_version": replaced or "none",
                               **({"requested_by": event.requested_by, approvals.VERSION_TAG: event.request}
                                  if event.requested_by else {}),
                               **({decision_record.VERSION_TAG: event.record} if event.record else {}),
                               **{EVIDENCE_PREFIX + k: v for k, v in event.evidence.items()}}.items():
                self.client.set_model_version_tag(self.model_name, version, key, value)
            # fields left empty are not written, so readers of the older layout still read the event
            recorded = {k: v for k, v in event.__dict__.items()
                        if k not in ("evidence", "requested_by", "request", "record") or v}
            self.client.set_registered_model_tag(self.model_name, f"{AUDIT_PREFIX}{time.time_ns()}",
                                                 json.dumps(recorded))
        except MlflowException as exc:
            raise refusal(exc, action, self.model_name) or RegistryError(
                f"the registry refused to {action} version {version} of {self.model_name!r} to {stage}: "
                f"{exc.message if hasattr(exc, 'message') else exc}") from exc
        return self._version(version)

    def _compare(self, target, previous, metric: str = "accuracy") -> decision_record.Comparison:
        """What a direct promotion is decided on, for its record: never a reason to stop the promotion."""
        try:
            return decision_record.compare(self.client, self.model_name, target, previous,
                                           lambda run_id: read_predictions(self.client, run_id), metric)
        except Exception as exc:  # noqa: BLE001 - the record says the comparison could not be made
            log.warning("comparing version %s of %s for its decision record: %s", target.version, self.model_name,
                        exc)
            return decision_record.Comparison(f"version {previous.version} in production" if previous else "",
                                              why=f"The comparison could not be made: {exc}")

    def _write_record(self, event: AuditEvent, target, approved, comparison) -> str:
        """The decision record's run id, or "" when it could not be written (the promotion stands; the log says why)."""
        source = target.tags.get("source_run_name") or target.tags.get("logged_model_id") or target.run_id or "?"
        try:
            made = decision_record.record(
                model_name=self.model_name, alias=event.alias, version=event.version,
                candidate_label=f"run {source}" + (f"; {target.tags['linked_by_time']}"
                                                   if target.tags.get("linked_by_time") else ""),
                replaced=event.replaced, comparison=comparison, decided_by=event.user, reason=event.reason,
                requested_by=approved.user if approved else "", requested_at=approved.at if approved else "",
                request_reason=approved.reason if approved else "", request_id=approved.id if approved else "",
                decided_at=event.at)
            return decision_record.write(self.client, made, comparison.examples)
        except Exception as exc:  # noqa: BLE001 - e.g. no right to write runs in the Promotions experiment
            log.warning("could not keep the decision record of %s version %s: %s", self.model_name, event.version,
                        exc)
            return ""

    def problems(self) -> list[str]:
        """What an interrupted promotion can leave behind, in words (empty when the registry is consistent).

        The aliases are the truth; a stage that disagrees with its alias, or an alias holder without the
        audit event that put it there, means a promotion stopped half-way (its process was killed).
        """
        found = []
        if not self.supports_stages:
            return found
        aliases, trail = self._snapshot()  # two reads in all: the Registry page asks on every rerun
        versions = {str(v.version): v for v in self.versions()}
        for alias, stage_name in STAGES.items():
            holder = versions.get(aliases.get(alias, ""))
            in_stage = [n for n, v in versions.items() if v.current_stage == stage_name]
            if holder is not None and holder.current_stage != stage_name:
                found.append(f"version {holder.version} holds the alias {alias!r} but its stage is "
                             f"{holder.current_stage}")
            if stage_name != "Archived" and [v for v in in_stage if holder is None or v != str(holder.version)]:
                found.append(f"stage {stage_name} holds version(s) {', '.join(in_stage)} but the alias {alias!r} "
                             f"points at {holder.version if holder else 'nothing'}")
            if holder is not None and alias != "archived" and _last_holder(trail, alias) != str(holder.version):
                found.append(f"no audit event records version {holder.version} going to {alias!r}")
        return found

    def repair(self, *, user: str | None = None) -> list[str]:
        """Finish what an interrupted promotion left (stages follow the aliases; a missing audit event is
        written, marked as recorded on repair). Returns the problems it fixed."""
        found = self.problems()
        if not found:
            return found
        user = user or current_user()
        trail = self.audit_trail()
        for alias, stage_name in STAGES.items():
            holder = self.current(alias)
            if holder is None:
                continue
            self._settle(alias, stage_name, str(holder.version))
            if alias != "archived" and _last_holder(trail, alias) != str(holder.version):
                event = AuditEvent(at=_dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
                                   action="promote", alias=alias, version=str(holder.version), replaced=None,
                                   user=user, reason="completed an interrupted promotion",
                                   note="")
                self.client.set_registered_model_tag(self.model_name, f"{AUDIT_PREFIX}{time.time_ns()}",
                                                     json.dumps(event.__dict__))
        return found

    def _set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``. Two promotions that set an alias the model did not have yet, at the same
        moment, both insert its row, and the slower one fails on the store's unique key (PostgreSQL: UniqueViolation;
        SQLite: UNIQUE constraint failed); the row exists then, so setting it again moves it (the caller's check
        of what holds the alias afterwards says who was overtaken)."""
        for attempt in range(3):
            try:
                self.client.set_registered_model_alias(self.model_name, alias, version)
                return
            except MlflowException as exc:
                if attempt == 2 or not any(s in str(exc) for s in ("UniqueViolation", "UNIQUE constraint failed")):
                    raise
                log.info("%s: setting %s raced another promotion; setting it again", self.model_name, alias)

    def _settle(self, alias: str, stage_name: str | None, version: str) -> None:
        """Make the stages agree with the aliases after ``alias`` was pointed at ``version``.

        The holder of a stage alias gets that stage; other versions in Production or Staging are archived; a
        stage alias left on ``version`` from another stage is removed. Repeated until the alias stops moving
        (a concurrent promotion may move it while we work), so the last writer's view always wins.
        """
        for other in set(STAGES) - {alias}:
            holder = self.current(other)
            if holder is not None and str(holder.version) == version:
                self.client.delete_registered_model_alias(self.model_name, other)
        if not stage_name or not self.supports_stages:
            return
        for _ in range(10):
            holder = self.current(alias)
            if holder is None:
                return
            try:
                if holder.current_stage != stage_name:
                    self.client.transition_model_version_stage(self.model_name, holder.version, stage_name)
                if stage_name != "Archived":
                    for v in self.versions():
                        if v.current_stage == stage_name and str(v.version) != str(holder.version):
                            self.client.transition_model_version_stage(self.model_name, v.version, "Archived")
            except MlflowException as exc:
                if getattr(exc, "error_code", "") == "PERMISSION_DENIED":
                    raise
                # registries without stages (Unity Catalog): the alias is enough
                self.client.set_model_version_tag(self.model_name, version, "stage_note", str(exc)[:500])
                return
            again = self.current(alias)
            if again is not None and str(again.version) == str(holder.version):
                return

    def rollback(self, stage: str = "Production", *, reason: str = "", user: str | None = None):
        """Give the stage back to the version the current one replaced when it was promoted."""
        alias, _ = alias_for(stage)
        if approval_client.served(self):  # the server rolls back, as the signed-in user (MANAGE)
            done = approval_client.call(self, "rollback", stage=stage, reason=reason)
            return self._version(done["version"])
        current = self.current(alias)
        if current is None:
            raise NotFoundError(f"no version of {self.model_name!r} is in {stage}, so there is nothing to roll back.")
        promotions = [e for e in self.audit_trail()
                      if e.alias == alias and e.version == str(current.version) and e.action == "promote"
                      and not e.note]
        target = promotions[-1].replaced if promotions else None
        if not target:
            raise NotFoundError(f"version {current.version} of {self.model_name!r} replaced nothing in {stage}; "
                                "there is no earlier version to roll back to.")
        return self.promote(target, stage, reason=reason or f"rollback from version {current.version}",
                            user=user, action="rollback")

    def _version(self, version: str):
        try:
            return self.client.get_model_version(self.model_name, str(version))
        except MlflowException:
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFoundError(f"{self.model_name!r} has no version {version}. Versions: {known}.") from None


def _last_holder(trail: list[AuditEvent], alias: str) -> str | None:
    """The version the audit trail says holds ``alias`` now: its latest event that was not overtaken."""
    standing = [e.version for e in trail if e.alias == alias and not e.note]
    return standing[-1] if standing else None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def recorded_metrics(model_version) -> dict[str, float]:
    """The metric values a version carries in its ``metric.*`` tags."""
    return {k.removeprefix("metric."): float(v) for k, v in model_version.tags.items() if k.startswith("metric.")}


def registered_model_names(client) -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(m.name for m in client.search_registered_models(max_results=1000))


def predict(model, texts: list[str], pairs: list[str] | None = None):
    """Label and score for each text (and hypothesis, for a sentence-pair model)."""
    import pandas as pd

    frame = pd.DataFrame({"text": texts, **({"text_pair": pairs} if pairs else {})})
    return model.predict(frame)
