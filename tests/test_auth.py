"""Who may promote: a real `mlflow server --app-name basic-auth` on PostgreSQL, real users, real refusals.

The server decides: a READ user's promotion is refused by the server through every route (our API, the
plain MLflow client, raw HTTP), the dashboard offers promote / rollback only to MANAGE, the audit trail
names the signed-in user, and ten promotions racing for one model leave exactly one version in production.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest
import requests
from app_server import ADMIN
from conftest import ROOT
from mlflow.exceptions import MlflowException
from streamlit.testing.v1 import AppTest

from core.auth import Credentials, acting_as, may_promote, model_permission, server_auth, sign_in
from core.errors import AuthError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("auth_server")]  # one worker builds its fixture
MODEL = "Topic_Model"
OWNER = Credentials("owner", "owner-" + secrets.token_hex(8))
READER = Credentials("reader", "reader-" + secrets.token_hex(8))
EDITOR = Credentials("editor", "editor-" + secrets.token_hex(8))


@pytest.fixture(scope="module")
def server(app_server):
    """A basic-auth MLflow server (conftest's ``app_server``: tracking and users each in their own PostgreSQL
    database, no approval rule); the users and the model of ``_people``."""
    return app_server, _people(app_server)


def _people(url: str) -> list[str]:
    """Users owner / reader / editor; the owner's model with eleven versions; EDIT granted to the editor."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    with acting_as(ADMIN):
        users = get_app_client("basic-auth", tracking_uri=url)
        for person in (OWNER, READER, EDITOR):
            users.create_user(person.username, person.password)
    with acting_as(OWNER):
        client = MlflowClient(url, url)
        experiment = client.create_experiment("Auth test")
        run = client.create_run(experiment, run_name="trained")
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(MODEL)
        versions = [client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id).version
                    for _ in range(11)]
    with acting_as(ADMIN):
        users.grant_user_permission(EDITOR.username, "registered_model", MODEL, "EDIT")
    return [str(v) for v in versions]


@pytest.fixture
def on_server(server, monkeypatch, tmp_path):
    url, versions = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNEBOARD_USER", "process-user")  # never what the audit records for a signed-in user
    return url, versions


def transition():
    from core.registry.model_transition import ModelTransition

    return ModelTransition(MODEL)


def test_sign_in_is_checked_by_the_server(on_server):
    url, _ = on_server
    assert server_auth(url).required
    assert not server_auth("sqlite:////tmp/x.db").required
    assert sign_in(url, OWNER.username, OWNER.password).username == "owner"
    assert sign_in(url, ADMIN.username, ADMIN.password).is_admin
    with pytest.raises(AuthError, match="did not accept user 'owner'"):
        sign_in(url, "owner", "wrong")
    with pytest.raises(AuthError, match="user name and password"):
        sign_in(url, "", "")


def test_permissions_read_from_the_server(on_server):
    url, _ = on_server
    seen = {c.username: model_permission(url, c, MODEL) for c in (ADMIN, OWNER, READER, EDITOR)}
    assert seen == {"admin": "MANAGE", "owner": "MANAGE", "reader": "READ", "editor": "EDIT"}
    assert [may_promote(p) for p in seen.values()] == [True, True, False, False]
    # the server's own line is EDIT: an editor may set an alias (the dashboard still offers promotion to MANAGE only)
    from mlflow.tracking import MlflowClient

    with acting_as(EDITOR):
        MlflowClient(url, url).set_registered_model_alias(MODEL, "canary", on_server[1][0])
        assert MlflowClient(url, url).get_model_version_by_alias(MODEL, "canary").version == on_server[1][0]


def test_a_signed_in_session_downloads_artifacts_as_itself(on_server, tmp_path, monkeypatch):
    """MLflow downloads on a thread pool of its own: the session's credentials travel into it (the dashboard's
    Home could not compare a waiting request's candidate on a server with sign-in: 401 on the download)."""
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)  # the process itself has no identity
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with acting_as(READER):
        client = MlflowClient(url, url)
        run_id = client.get_model_version(MODEL, versions[0]).run_id
        local = client.download_artifacts(run_id, "model/weights.txt", str(tmp_path))
    assert Path(local).read_text(encoding="utf-8") == "weights"


def test_a_reader_cannot_move_a_model_into_production_by_any_route(on_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    with acting_as(OWNER):
        transition().promote(versions[0], "Production", reason="first")
        transition().promote(versions[1], "Production", reason="second")
        before = len(transition().audit_trail())
    # the process's own identity is an admin: a session acting as the reader must never borrow it
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN.password)
    with acting_as(READER):
        with pytest.raises(AuthError, match="refused to let reader promote 'Topic_Model'.*MANAGE"):
            transition().promote(versions[2], "Production")
        with pytest.raises(AuthError, match="refused to let reader rollback"):
            transition().rollback("Production")
        plain = MlflowClient(url, url)
        for attempt in (lambda: plain.set_registered_model_alias(MODEL, "production", versions[2]),
                        lambda: plain.transition_model_version_stage(MODEL, versions[2], "Production"),
                        lambda: plain.delete_registered_model_alias(MODEL, "production")):
            with pytest.raises(MlflowException) as refused:
                attempt()
            assert refused.value.error_code == "PERMISSION_DENIED"
    raw = requests.post(f"{url}/api/2.0/mlflow/registered-models/alias", timeout=10,
                        json={"name": MODEL, "alias": "production", "version": versions[2]})
    assert raw.status_code == 401  # no credentials at all
    raw = requests.post(f"{url}/api/2.0/mlflow/registered-models/alias", timeout=10,
                        auth=(READER.username, READER.password),
                        json={"name": MODEL, "alias": "production", "version": versions[2]})
    assert raw.status_code == 403
    with acting_as(OWNER):
        assert transition().current("Production").version == versions[1]
        assert [v.version for v in transition().versions() if v.current_stage == "Production"] == [versions[1]]
        assert len(transition().audit_trail()) == before


def test_audit_names_the_signed_in_user_not_the_process(on_server):
    _, versions = on_server
    with acting_as(OWNER):
        transition().promote(versions[3], "Staging", reason="try it")
        event = transition().audit_trail()[-1]
    assert (event.user, event.version, event.alias) == ("owner", versions[3], "staging")


def test_ten_racing_promotions_leave_exactly_one_in_production(on_server):
    _, versions = on_server
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def promote(version: str) -> None:
        with acting_as(OWNER):
            try:
                start.wait()
                transition().promote(version, "Production", reason=f"race {version}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    with acting_as(OWNER):
        before = len(transition().audit_trail())
        holding = transition().current("Production")
    racers = [v for v in versions if holding is None or v != holding.version][:10]
    threads = [threading.Thread(target=promote, args=(v,)) for v in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with acting_as(OWNER):
        holder = transition().current("Production")
        in_production = [v.version for v in transition().versions() if v.current_stage == "Production"]
        trail = transition().audit_trail()[before:]
    assert in_production == [holder.version]
    races = [e for e in trail if e.reason.startswith("race ")]
    assert len(races) == 10
    standing = [e for e in races if not e.note]
    assert standing and standing[-1].version == holder.version  # the last promotion that held is the one in place
    assert all("overtaken" in e.note for e in races if e.note)


def test_the_server_decides_who_may_request_and_who_may_approve(on_server, monkeypatch):
    from core.errors import ApprovalError

    _, versions = on_server
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "required")
    with acting_as(OWNER):  # two fresh versions: the races above archived the others
        holding = transition().current("Production")
        before = len(transition().audit_trail())
        source = transition().client.get_model_version(MODEL, versions[0])
        ours = [str(transition().client.create_model_version(MODEL, source.source, source.run_id).version)
                for _ in range(2)]
    with acting_as(READER), pytest.raises(AuthError, match="refused to let reader request a promotion of "
                                                           "'Topic_Model'.*needs EDIT"):
        transition().request(ours[0], reason="reader asks")
    with acting_as(EDITOR):
        asked = transition().request(ours[0], reason="fewer mistakes on billing")
        assert asked.user == "editor" and asked.replaces == (holding.version if holding else None)
    with acting_as(OWNER):
        mine = transition().request(ours[1], reason="the owner's own candidate")
        with pytest.raises(ApprovalError, match="owner requested this promotion"):
            transition().approve(mine.id)
        with pytest.raises(ApprovalError, match="need an approved request"):
            transition().promote(ours[1], "Production")
    with acting_as(EDITOR):  # EDIT may ask, never decide: the server refuses, whatever the dashboard shows
        with pytest.raises(AuthError, match="refused to let editor approve a promotion of 'Topic_Model'.*MANAGE"):
            transition().approve(mine.id)
        with pytest.raises(AuthError, match="refused to let editor reject a promotion of 'Topic_Model'.*MANAGE"):
            transition().reject(mine.id, reason="not mine to say")
    with acting_as(OWNER):
        done = transition().approve(asked.id, reason="checked")
        transition().reject(mine.id, reason="superseded")
        assert transition().current("Production").version == ours[0]
        event = transition().audit_trail()[-1]
        assert len(transition().audit_trail()) == before + 1
    assert (event.user, event.requested_by, event.version) == ("owner", "editor", ours[0])
    assert done.status == "approved" and done.record == event.record and event.record
    with acting_as(OWNER):
        statuses = {r.id: r.status for r in transition().requests()}
        page = transition().decision_record(ours[0])
    assert statuses[asked.id] == "approved" and statuses[mine.id] == "rejected"
    assert "editor" in page and "owner" in page


# -- the dashboard --------------------------------------------------------------------------------------------
def registry_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "registry.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("title", "markdown", "info", "warning", "error", "caption")
                     for e in at.get(kind))


def sign_in_as(at: AppTest, who: Credentials) -> AppTest:
    at.text_input(key="auth_user").input(who.username)
    at.text_input(key="auth_password").input(who.password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_page_asks_for_sign_in_and_offers_promotion_only_to_manage(on_server):
    at = registry_page()
    assert "Sign in" in texts(at) and "Registry" not in texts(at)
    sign_in_as(at, Credentials("reader", "wrong"))
    assert "did not accept user" in texts(at)

    at = sign_in_as(registry_page(), READER)
    assert at.session_state["auth_creds"].username == "reader"
    assert "have READ permission on Topic_Model" in texts(at) and "need MANAGE" in texts(at)
    keys = {b.key for b in at.button}
    assert not keys & {"r_promote_best", "r_move", "r_rollback", "r_confirm_btn"}

    at = sign_in_as(registry_page(), OWNER)
    assert "may promote and roll back" in texts(at)
    assert {"r_promote_best", "r_move"} <= {b.key for b in at.button}


def test_page_says_plainly_when_there_is_no_sign_in(store):
    at = registry_page()
    assert "anyone who can open this dashboard can promote" in texts(at)
