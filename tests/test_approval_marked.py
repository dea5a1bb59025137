"""Approval for the models a team marks (issue 28): ``TUNEBOARD_APPROVAL=marked``.

On the team server (conftest's ``app_server`` on PostgreSQL, ``TUNEBOARD_APPROVAL=marked`` in its environment only;
alice and bob with MANAGE on every model, carol with EDIT): a model tagged ``tuneboard.approval=required`` refuses a
direct move into production by anyone and goes in through a request someone else approves; an unmarked model moves
directly; nobody removes, changes or renames away the mark. On the embedded store the in-process path reads the
same mark.
"""

from __future__ import annotations

import pytest
import requests
from app_server import ADMIN, ALICE, BOB, CAROL, EVERYONE
from mlflow.exceptions import MlflowException

from core.auth import acting_as
from core.errors import ApprovalError
from core.settings import APPROVAL_TAG, MARK

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("approval_marked")]
MARKED, OPEN, LATER = "Marked_Model", "Open_Model", "Later_Model"


@pytest.fixture(scope="module")
def app_server_approval() -> str:
    return "marked"


@pytest.fixture(scope="module")
def server(app_server, tmp_path_factory):
    """Three models of four versions each, made by the admin; alice marks MARKED (the Python API), LATER and OPEN
    stay unmarked; {model: versions}."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    url = app_server
    with acting_as(ADMIN):
        users = get_app_client("basic-auth", tracking_uri=url)
        for person in (ALICE, BOB, CAROL):
            users.create_user(person.username, person.password)
        client = MlflowClient(url, url)
        run = client.create_run(client.create_experiment("Marked test"), run_name="trained")
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.set_terminated(run.info.run_id)
        versions = {}
        for name in (MARKED, OPEN, LATER):
            client.create_registered_model(name)
            versions[name] = [str(client.create_model_version(name, f"{run.info.artifact_uri}/model",
                                                              run.info.run_id).version) for _ in range(4)]
            for person, permission in ((ALICE, "MANAGE"), (BOB, "MANAGE"), (CAROL, "EDIT")):
                users.grant_user_permission(person.username, "registered_model", name, permission)
    with pytest.MonkeyPatch.context() as mp:
        on(mp, url, tmp_path_factory.mktemp("marked-home"))
        with acting_as(ALICE):
            transition(MARKED).mark_for_approval()
    return url, versions


def on(mp: pytest.MonkeyPatch, url: str, home) -> None:
    """Point the library at the server; this process keeps no approval rule of its own (the server's decides)."""
    mp.setenv("MLFLOW_TRACKING_URI", url)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mp.setenv("TUNEBOARD_HOME", str(home))
    mp.delenv("TUNEBOARD_APPROVAL", raising=False)


@pytest.fixture
def on_server(server, monkeypatch, tmp_path):
    url, versions = server
    on(monkeypatch, url, tmp_path / "home")
    return url, versions


def transition(name: str):
    from core.registry.model_transition import ModelTransition

    return ModelTransition(name)


def production(name: str) -> tuple[str | None, list[str], int]:
    """(the alias's version, the versions in stage Production, the audit trail's length), read as bob."""
    with acting_as(BOB):
        t = transition(name)
        holder = t.current("Production")
        return (holder.version if holder else None,
                [v.version for v in t.versions() if v.current_stage == "Production"], len(t.audit_trail()))


def mark_of(name: str) -> str | None:
    with acting_as(BOB):
        return transition(name).client.get_registered_model(name).tags.get(APPROVAL_TAG)


def test_the_server_says_its_rule_and_which_models_it_governs(on_server):
    url, _ = on_server
    answer = requests.get(f"{url}/tuneboard/api/version", auth=(BOB.username, BOB.password), timeout=30).json()
    assert answer["approval"] == "marked"
    with acting_as(BOB):
        assert transition(MARKED).needs_approval() and transition(MARKED).marked()
        assert "TUNEBOARD_APPROVAL=marked" in transition(MARKED).approval_rule()
        assert not transition(OPEN).needs_approval() and not transition(LATER).needs_approval()
    assert mark_of(MARKED) == MARK


def test_a_marked_model_refuses_a_direct_move_and_goes_in_through_an_approved_request(on_server):
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    chosen = versions[MARKED][0]
    for person in EVERYONE:
        with acting_as(person), pytest.raises(MlflowException) as refused:
            MlflowClient(url, url).set_registered_model_alias(MARKED, "production", chosen)
        assert refused.value.error_code == "PERMISSION_DENIED", person.username
        assert "tagged tuneboard.approval=required" in str(refused.value), person.username
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        answer = requests.post(f"{url}{prefix}/registered-models/alias", auth=(ADMIN.username, ADMIN.password),
                               json={"name": MARKED, "alias": "production", "version": chosen}, timeout=30)
        assert answer.status_code == 403 and "Request a promotion" in answer.json()["message"], answer.text
    with acting_as(BOB), pytest.raises(ApprovalError, match="TUNEBOARD_APPROVAL=marked, and the model is tagged"):
        transition(MARKED).promote(chosen, "Production")  # refused here, before the server is asked
    assert production(MARKED) == (None, [], 0)

    with acting_as(ALICE):
        asked = transition(MARKED).request(chosen, reason="the marked model's first version")
        with pytest.raises(ApprovalError, match="alice requested this promotion"):
            transition(MARKED).approve(asked.id)
    with acting_as(BOB):
        done = transition(MARKED).approve(asked.id, reason="checked")
        event = transition(MARKED).audit_trail()[-1]
    assert done.status == "approved" and done.decided_by == "bob" and done.record
    assert (event.user, event.requested_by, event.version) == ("bob", "alice", chosen)
    assert production(MARKED) == (chosen, [chosen], 1)


def test_an_unmarked_model_moves_directly(on_server):
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    first, second = versions[OPEN][:2]
    with acting_as(ALICE):
        MlflowClient(url, url).set_registered_model_alias(OPEN, "production", first)  # MLflow's own route
        assert transition(OPEN).current("Production").version == first
        moved = transition(OPEN).promote(second, "Production", reason="no approval needed here")
        event = transition(OPEN).audit_trail()[-1]
    assert "production" in moved.aliases and (event.user, event.version, event.replaced) == ("alice", second, first)
    assert production(OPEN)[:2] == (second, [second])


def _unmarkings(plain) -> dict:
    """Each way to take the mark off the model's name, through the plain MLflow client."""
    return {"remove": lambda: plain.delete_registered_model_tag(MARKED, APPROVAL_TAG),
            "change": lambda: plain.set_registered_model_tag(MARKED, APPROVAL_TAG, "off"),
            "rename": lambda: plain.rename_registered_model(MARKED, "Unmarked_Now"),
            "delete": lambda: plain.delete_registered_model(MARKED)}


def test_nobody_removes_changes_or_renames_away_the_mark(on_server):
    from mlflow.tracking import MlflowClient

    url, _ = on_server
    before = production(MARKED)
    for person in EVERYONE:
        with acting_as(person):
            plain = MlflowClient(url, url)
            for what, attempt in _unmarkings(plain).items():
                with pytest.raises(MlflowException) as refused:
                    attempt()
                assert refused.value.error_code in ("PERMISSION_DENIED", "INVALID_PARAMETER_VALUE"), \
                    (person.username, what)
                if what == "remove":
                    assert "once marked" in str(refused.value), person.username
            plain.set_registered_model_tag(MARKED, APPROVAL_TAG, MARK)  # marking again changes nothing
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for person in (*EVERYONE, None):
            auth = (person.username, person.password) if person else None
            answer = requests.delete(f"{url}{prefix}/registered-models/delete-tag", auth=auth, timeout=30,
                                     json={"name": MARKED, "key": APPROVAL_TAG})
            assert answer.status_code == (403 if person else 401), (prefix, person, answer.text)
    assert mark_of(MARKED) == MARK and production(MARKED) == before


def test_a_model_made_marked_is_governed_and_its_records_are_not_given_at_creation(on_server):
    """The mark may be given when a model is made (it only tightens); the records the server alone writes may not come
    in with it, nor a promotion record with a new version of a marked model; the mark has no other value."""
    from mlflow.tracking import MlflowClient

    url, versions = on_server
    source = f"models:/{MARKED}/{versions[MARKED][1]}"
    with acting_as(CAROL):
        plain = MlflowClient(url, url)
        plain.create_registered_model("Made_Marked", tags={APPROVAL_TAG: MARK, "team": "calls"})
        plain.create_model_version("Made_Marked", source, tags={"note": "any other tag"})
    assert mark_of("Made_Marked") == MARK
    with acting_as(ADMIN), pytest.raises(MlflowException, match="tagged tuneboard.approval=required"):
        MlflowClient(url, url).set_registered_model_alias("Made_Marked", "production", "1")
    for person in EVERYONE:
        with acting_as(person):
            plain = MlflowClient(url, url)
            with pytest.raises(MlflowException) as refused:
                plain.create_registered_model("Forged_Marked", tags={APPROVAL_TAG: MARK, "audit.0001": "{}"})
            assert refused.value.error_code == "PERMISSION_DENIED", person.username
            assert "tagged tuneboard.approval=required" in str(refused.value), person.username
            with pytest.raises(MlflowException) as refused:
                plain.create_model_version(MARKED, source, tags={"promoted_by": person.username})
            assert refused.value.error_code == "PERMISSION_DENIED", person.username
            with pytest.raises(MlflowException) as refused:
                plain.create_registered_model("Off_Marked", tags={APPROVAL_TAG: "off"})
            assert refused.value.error_code == "INVALID_PARAMETER_VALUE", person.username
    answer = requests.post(f"{url}/ajax-api/2.0/mlflow/registered-models/create", auth=(ADMIN.username, ADMIN.password),
                           json={"name": "Forged_Marked", "tags": [{"key": "request.r1", "value": "{}"},
                                                                   {"key": APPROVAL_TAG, "value": MARK}]}, timeout=30)
    assert answer.status_code == 403 and "without these tags" in answer.json()["message"], answer.text
    with acting_as(ADMIN):
        plain = MlflowClient(url, url)
        assert [m.name for m in plain.search_registered_models("name LIKE '%_Marked'")] == ["Made_Marked"]
        assert len(plain.search_model_versions(f"name = '{MARKED}'")) == len(versions[MARKED])


def test_a_model_marked_from_the_command_line_is_governed_from_then_on(on_server, capsys):
    from mlflow.tracking import MlflowClient

    from core.cli import main

    url, versions = on_server
    with acting_as(CAROL):  # EDIT on the model is enough to mark it: the safe direction
        assert main(["mark", LATER]) == 0
    assert "its promotions need someone else's approval (TUNEBOARD_APPROVAL=marked" in capsys.readouterr().out
    with acting_as(BOB), pytest.raises(MlflowException, match="tagged tuneboard.approval=required"):
        MlflowClient(url, url).set_registered_model_alias(LATER, "production", versions[LATER][0])
    assert production(LATER)[0] is None and mark_of(LATER) == MARK


def test_the_embedded_store_reads_the_same_mark(store, monkeypatch):
    """The in-process path (one user, the local SQLite store): the marked model refuses a direct promotion and its
    requester's own approval; the unmarked one promotes directly."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("TUNEBOARD_APPROVAL", "marked")
    client = MlflowClient(store.tracking_uri, store.registry_uri)
    run = client.create_run(client.create_experiment("Marked here"), run_name="trained")
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    client.set_terminated(run.info.run_id)
    for name in (MARKED, OPEN):
        client.create_registered_model(name)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    transition(MARKED).mark_for_approval()
    with pytest.raises(ApprovalError, match="TUNEBOARD_APPROVAL=marked, and the model is tagged"):
        transition(MARKED).promote("1", "Production")
    asked = transition(MARKED).request("1", reason="first", user="alice")
    with pytest.raises(ApprovalError, match="alice requested this promotion"):
        transition(MARKED).approve(asked.id, user="alice")
    assert transition(MARKED).approve(asked.id, user="bob").status == "approved"
    assert str(transition(MARKED).current("Production").version) == "1"
    assert "production" in transition(OPEN).promote("1", "Production", reason="unmarked").aliases


def test_a_rule_the_server_cannot_read_is_refused_before_it_starts(tmp_path, monkeypatch):
    from core.errors import TuneboardError
    from core.team import auth_environment

    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "x")
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "some")
    with pytest.raises(TuneboardError, match="TUNEBOARD_APPROVAL='some' is not a rule: use 'required'.*'marked'"):
        auth_environment(f"sqlite:///{tmp_path}/users.db", tmp_path / "auth")
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "marked")
    assert auth_environment(f"sqlite:///{tmp_path}/users.db", tmp_path / "auth")["MLFLOW_AUTH_CONFIG_PATH"]


def test_the_registry_page_marks_a_model_for_approval(store, monkeypatch):
    """Under ``TUNEBOARD_APPROVAL=marked`` the Registry page offers to mark an unmarked model (saying that the team
    server keeps the mark for good); once marked, it says promotions need someone else's approval and offers the
    mark no more. Under ``required`` (every model governed already) it is not offered."""
    from conftest import ROOT
    from mlflow.tracking import MlflowClient
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TUNEBOARD_APPROVAL", "marked")
    MlflowClient(store.tracking_uri, store.registry_uri).create_registered_model("Page_Marked")

    def page() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/registry.py")
        at.run()
        at.selectbox(key="r_model").set_value("Page_Marked").run()
        assert not at.exception, at.exception
        return at

    at = page()
    assert any("kept for good" in str(m.value) for m in at.markdown)
    at.button(key="r_mark").click().run()
    assert not at.exception, at.exception
    assert transition("Page_Marked").marked()
    assert any("is marked: its promotions now need someone else's approval" in s.value for s in at.success)
    assert any("need someone else's approval (TUNEBOARD\\_APPROVAL=marked" in c.value or
               "need someone else's approval (TUNEBOARD_APPROVAL=marked" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "r_mark"]
    assert any("no versions yet: request a promotion of the best run above" in i.value for i in at.info)
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "required")
    MlflowClient(store.tracking_uri, store.registry_uri).delete_registered_model_tag("Page_Marked", APPROVAL_TAG)
    assert not [b for b in page().button if b.key == "r_mark"]
