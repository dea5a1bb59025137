"""Four eyes that the server keeps (issue 28): `python -m core.cli server`'s app on PostgreSQL, approval required.

Users alice and bob (MANAGE on the model), carol (EDIT) and the admin. No one moves production by hand, by any
route (the MLflow client, raw HTTP to the REST and the ajax routes, with and without credentials); alice's request
is approved by bob, never by alice; a stale approval is refused; two racing approvals leave one production.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
import requests
from app_server import ADMIN, ALICE, BOB, CAROL, EVERYONE
from conftest import free_port
from mlflow.exceptions import MlflowException

from core.auth import acting_as
from core.errors import ApprovalError, AuthError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("approval_server")]
MODEL = "Governed_Model"


@pytest.fixture(scope="module")
def app_server_approval() -> str:
    return "required"


@pytest.fixture(scope="module")
def server(app_server):
    """The server as `core.cli server --auth-db` runs it (conftest's ``app_server``), TUNEBOARD_APPROVAL=required in
    its environment; users alice, bob (MANAGE) and carol (EDIT); eight versions of the model."""
    return app_server, _people(app_server)


def _people(url: str) -> list[str]:
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    with acting_as(ADMIN):
        users = get_app_client("basic-auth", tracking_uri=url)
        for person in (ALICE, BOB, CAROL):
            users.create_user(person.username, person.password)
        client = MlflowClient(url, url)
        run = client.create_run(client.create_experiment("Approval test"), run_name="trained")
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(MODEL)
        versions = [str(client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id).version)
                    for _ in range(8)]
        for person, permission in ((ALICE, "MANAGE"), (BOB, "MANAGE"), (CAROL, "EDIT")):
            users.grant_user_permission(person.username, "registered_model", MODEL, permission)
    return versions


@pytest.fixture
def on_server(server, monkeypatch, tmp_path):
    url, versions = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUNEBOARD_APPROVAL", raising=False)  # the server's setting alone decides here
    return url, versions


def transition():
    from core.registry.model_transition import ModelTransition

    return ModelTransition(MODEL)


def production() -> tuple[str | None, list[str], int]:
    """(the alias's version, the versions in stage Production, the audit trail's length), read as bob."""
    with acting_as(BOB):
        t = transition()
        holder = t.current("Production")
        return (holder.version if holder else None,
                [v.version for v in t.versions() if v.current_stage == "Production"], len(t.audit_trail()))


def test_a_request_approved_by_someone_else_is_the_way_in(on_server):
    url, versions = on_server
    with acting_as(ALICE):
        asked = transition().request(versions[0], reason="first model")
        assert asked.user == "alice" and asked.replaces is None
        with pytest.raises(ApprovalError, match="alice requested this promotion"):
            transition().approve(asked.id)
    raw = requests.post(f"{url}/tuneboard/api/requests/approve", auth=(ALICE.username, ALICE.password), timeout=60,
                        json={"name": MODEL, "request_id": asked.id})
    assert raw.status_code == 409 and "alice requested this promotion" in raw.json()["message"]
    with acting_as(CAROL), pytest.raises(AuthError, match="refused to let carol approve.*MANAGE"):
        transition().approve(asked.id)
    assert production() == (None, [], 0)
    with acting_as(BOB):
        done = transition().approve(asked.id, reason="checked the examples")
        event = transition().audit_trail()[-1]
    assert done.status == "approved" and done.decided_by == "bob"
    assert (event.user, event.requested_by, event.version, event.request) == ("bob", "alice", versions[0], asked.id)
    assert event.record and done.record == event.record  # the decision record, written by the server
    assert production() == (versions[0], [versions[0]], 1)
    with acting_as(BOB):
        assert "alice" in transition().decision_record(versions[0])


def _attempts(url: str, versions: list[str]):
    from mlflow.tracking import MlflowClient

    plain = MlflowClient(url, url)
    return {"set alias": lambda: plain.set_registered_model_alias(MODEL, "production", versions[1]),
            "set champion": lambda: plain.set_registered_model_alias(MODEL, "champion", versions[1]),
            "delete alias": lambda: plain.delete_registered_model_alias(MODEL, "production"),
            "stage into": lambda: plain.transition_model_version_stage(MODEL, versions[1], "Production"),
            "stage out of": lambda: plain.transition_model_version_stage(MODEL, versions[0], "Archived"),
            "delete version": lambda: plain.delete_model_version(MODEL, versions[0]),
            "forge a request": lambda: plain.set_registered_model_tag(MODEL, "request.x", "{}"),
            "forge who promoted": lambda: plain.set_model_version_tag(MODEL, versions[0], "promoted_by", "mallory"),
            "forge the evidence": lambda: plain.set_model_version_tag(MODEL, versions[1], "evidence.accuracy", "1"),
            "drop the record": lambda: plain.delete_model_version_tag(MODEL, versions[0], "decision_record"),
            "delete the model": lambda: plain.delete_registered_model(MODEL)}


RAW = [("POST", "registered-models/alias", {"name": MODEL, "alias": "production", "version": "2"}),
       ("DELETE", "registered-models/alias", {"name": MODEL, "alias": "production"}),
       ("POST", "model-versions/transition-stage", {"name": MODEL, "version": "2", "stage": "Production",
                                                    "archive_existing_versions": True}),
       ("DELETE", "model-versions/delete", {"name": MODEL, "version": "1"}),
       ("DELETE", "registered-models/delete", {"name": MODEL})]


def test_no_one_moves_production_by_hand_by_any_route(on_server):
    url, versions = on_server
    before = production()
    assert before[0] is not None, "runs after the first approval"
    for person in EVERYONE:
        with acting_as(person):
            for what, attempt in _attempts(url, versions).items():
                with pytest.raises(MlflowException) as refused:
                    attempt()
                assert refused.value.error_code == "PERMISSION_DENIED", (person.username, what)
                if person is not CAROL:  # EDIT may not delete aliases or the model at all: MLflow refuses first
                    assert "request a promotion" in str(refused.value).lower(), (person.username, what)
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for method, route, body in RAW:
            for person in (*EVERYONE, None):
                auth = (person.username, person.password) if person else None
                answer = requests.request(method, f"{url}{prefix}/{route}", json=body, auth=auth, timeout=30)
                assert answer.status_code == (403 if person else 401), (prefix, route, person, answer.text)
                if person and person is not CAROL:
                    assert answer.json()["error_code"] == "PERMISSION_DENIED"
                    assert "someone else with MANAGE" in answer.json()["message"]
    with acting_as(BOB), pytest.raises(AuthError, match="TUNEBOARD_APPROVAL=required"):
        _direct(versions[1])  # our own error for a refusal carries the server's words
    assert production() == before
    with acting_as(BOB):
        tags = transition().client.get_model_version(MODEL, versions[0]).tags
        assert tags["promoted_by"] == "bob" and tags.get("decision_record")  # the version's own record, as written
        transition().client.set_model_version_tag(MODEL, versions[1], "note", "any other tag is anyone's with EDIT")


def test_a_body_not_labelled_json_is_read_as_mlflow_reads_it(on_server):
    """MLflow reads a DELETE's body as JSON whatever its Content-Type says (and MLflow's sign-in check then reads the
    model's name from the query), so the gate reads it the same way: a move sent as text is refused like any other."""
    import json

    url, _ = on_server
    before = production()
    holder = before[0]
    attempts = [("registered-models/alias", {"name": MODEL, "alias": "production"}),
                ("model-versions/delete", {"name": MODEL, "version": holder}),
                ("model-versions/delete-tag", {"name": MODEL, "version": holder, "key": "decision_record"})]
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for route, body in attempts:
            for person in EVERYONE:
                for headers in ({"Content-Type": "text/plain"}, {}):
                    answer = requests.delete(f"{url}{prefix}/{route}", data=json.dumps(body), headers=headers,
                                             params={"name": MODEL}, auth=(person.username, person.password),
                                             timeout=30)
                    assert answer.status_code == 403, (prefix, route, person.username, headers, answer.text)
    assert production() == before
    with acting_as(BOB):
        assert transition().client.get_model_version(MODEL, holder).tags.get("decision_record")


def test_no_one_forges_a_record_by_giving_its_tags_at_creation(on_server):
    """The records the server alone writes cannot come in as tags given when a model or a version is made (MLflow's
    create routes take tags), nor with a copied version that carries its source's promotion record."""
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    before, count = production(), versions_now()
    source = f"models:/{MODEL}/{versions[0]}"
    forged_model = {"request.r1": '{"status": "approved"}', "audit.0001": '{"user": "bob"}'}
    forged_version = {"promoted_by": "bob", "decision_record": "run-x", "evidence.accuracy": "0.99"}
    for person in EVERYONE:
        with acting_as(person):
            plain = MlflowClient(url, url)
            for tags in ({"request.r1": "{}"}, {"audit.0001": "{}"}, forged_model):
                with pytest.raises(MlflowException) as refused:
                    plain.create_registered_model(f"Forged_{person.username}", tags=tags)
                assert refused.value.error_code == "PERMISSION_DENIED", (person.username, tags)
                assert "without these tags" in str(refused.value), person.username
            for tags in ({"promoted_by": "bob"}, {"evidence.x": "1"}, forged_version):
                with pytest.raises(MlflowException) as refused:
                    plain.create_model_version(MODEL, source, tags=tags)
                assert refused.value.error_code == "PERMISSION_DENIED", (person.username, tags)
                assert "request a promotion" in str(refused.value).lower(), person.username
            with pytest.raises(MlflowException, match="copied version carries its source's tags"):
                plain.copy_model_version(source, f"Copy_{person.username}")  # versions[0] holds a record
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for route, body in (("registered-models/create", {"name": "Forged_raw", "tags": [
                                 {"key": "audit.0001", "value": "{}"}]}),
                            ("model-versions/create", {"name": MODEL, "source": source, "tags": [
                                 {"key": "note", "value": "harmless"}, {"key": "decision_record", "value": "x"}]})):
            for person in (*EVERYONE, None):
                auth = (person.username, person.password) if person else None
                answer = requests.post(f"{url}{prefix}/{route}", json=body, auth=auth, timeout=30)
                assert answer.status_code == (403 if person else 401), (prefix, route, person, answer.text)
                if person:
                    assert answer.json()["error_code"] == "PERMISSION_DENIED", answer.text
    with acting_as(ADMIN):
        plain = MlflowClient(url, url)
        assert not plain.search_registered_models("name LIKE 'Forged%'")
        assert all(not plain.search_model_versions(f"name = 'Copy_{p.username}'") for p in EVERYONE)
    assert production() == before and versions_now() == count
    with acting_as(CAROL):  # EDIT makes versions with any other tags, and the server's own path keeps writing
        made = transition().client.create_model_version(MODEL, source, tags={"note": "mine", "team": "calls"})
    assert made.tags == {"note": "mine", "team": "calls"}


def versions_now() -> int:
    with acting_as(BOB):
        return len(transition().versions())


def _direct(version: str) -> None:
    from core.auth import refusal

    try:
        transition().client.set_registered_model_alias(MODEL, "production", version)
    except MlflowException as exc:
        raise refusal(exc, "promote", MODEL) from exc


def test_a_stale_approval_is_refused(on_server):
    _, versions = on_server
    with acting_as(ALICE):
        older = transition().request(versions[2], reason="older candidate")
        newer = transition().request(versions[3], reason="newer candidate")
    with acting_as(BOB):
        transition().approve(newer.id)
        with pytest.raises(ApprovalError, match="changed since request"):
            transition().approve(older.id)
    assert production()[:2] == (versions[3], [versions[3]])


def test_two_racing_approvals_leave_one_production(on_server):
    _, versions = on_server
    with acting_as(ALICE):
        asked = [transition().request(v, reason=f"race {v}") for v in versions[4:6]]
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def approve(req_id: str) -> None:
        with acting_as(BOB):
            start.wait()
            try:
                outcomes.append(transition().approve(req_id))
            except ApprovalError as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=approve, args=(r.id,)) for r in asked]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    won = [o for o in outcomes if not isinstance(o, Exception)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "changed since request" in str(lost[0])
    holder, in_stage, _ = production()
    assert holder == won[0].version and in_stage == [holder]


def test_rollback_is_managed_and_recorded(on_server):
    holder, _, trail = production()
    with acting_as(CAROL), pytest.raises(AuthError, match="refused to let carol rollback"):
        transition().rollback("Production")
    with acting_as(ALICE):
        back = transition().rollback("Production", reason="emergency")
        event = transition().audit_trail()[-1]
    assert back.version != holder and (event.action, event.user) == ("rollback", "alice")
    assert production() == (back.version, [back.version], trail + 1)


def test_a_trial_on_one_machine_runs_the_same_app_on_sqlite(tmp_path, monkeypatch):
    """`core.cli server --db sqlite:///... --auth-db sqlite:///...`: the same app and rule without PostgreSQL; a
    folder that does not exist is refused before anything starts."""
    from mlflow.tracking import MlflowClient

    from core.errors import TuneboardError
    from core.team import server_command, start_server

    with pytest.raises(TuneboardError, match=r"--db sqlite:///.*/nowhere/m\.db: the folder .*nowhere does not exist"):
        server_command(f"sqlite:///{tmp_path}/nowhere/m.db", str(tmp_path / "a"))
    with pytest.raises(TuneboardError, match=r"or, for a trial on one machine, sqlite:///path/to/file\.db"):
        server_command("mysql://db/mlflow", str(tmp_path / "a"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN.password)
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "required")
    proc = start_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts", port=free_port(),
                        log=tmp_path / "server.log", auth_db=f"sqlite:///{tmp_path}/users.db", workers=1)
    url = f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}"
    try:
        answer = requests.get(f"{url}/tuneboard/api/version", auth=(ADMIN.username, ADMIN.password), timeout=30).json()
        assert answer["app"] == "tuneboard" and answer["approval"] == "required"
        with acting_as(ADMIN):
            client = MlflowClient(url, url)
            client.create_registered_model("Trial")
            run = client.create_run(client.create_experiment("Trial"), run_name="trained")
            client.create_model_version("Trial", f"{run.info.artifact_uri}/model", run.info.run_id)
            refused = "PERMISSION_DENIED: setting the alias .production. is refused.*Request a promotion"
            with pytest.raises(MlflowException, match=refused):
                client.set_registered_model_alias("Trial", "production", "1")
            assert "production" not in client.get_registered_model("Trial").aliases
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
