"""Four eyes on the team server, in a real browser (issue 28): alice requests, bob approves, the record is downloaded.

The dashboard (``streamlit run app.py``) points at Tuneboard's server app on PostgreSQL (conftest's ``app_server``,
``TUNEBOARD_APPROVAL=required`` in the *server's* environment only), users alice and bob with MANAGE on the model.
Each person signs in with the dashboard's own sign-in, in a browser session of their own, on one dashboard
process; the dashboard's request and approval go through the server's ``/tuneboard/api`` endpoints, and the
server moves production. Screenshots go to ``$E2E_SCREENSHOTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from app_server import ADMIN, ALICE, BOB
from conftest import child_env, copy_data
from test_browser import click_until, download_by_clicking, open_page, start_dashboard, wait_idle

from core.auth import Credentials, acting_as

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser_team")]  # one worker builds its fixture
MODEL = "Team_Topic_Model"


@pytest.fixture(scope="module")
def app_server_approval() -> str:
    return "required"


@pytest.fixture(scope="module")
def team(app_server, tmp_path_factory, demo_models):
    """The server with alice and bob (MANAGE on the model, which the admin registers empty) and one experiment
    trained through it by the admin: the pretrained baseline and one short fine-tune of the demo BERT."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    from core.experiment_manager import ExperimentManager
    from core.grid import GridSpec
    from core.paths import DATA_ROOTS, MODEL_ROOTS

    url, tmp = app_server, tmp_path_factory.mktemp("browser-team")
    data = copy_data(tmp / "data")
    with acting_as(ADMIN):
        users = get_app_client("basic-auth", tracking_uri=url)
        for person in (ALICE, BOB):
            users.create_user(person.username, person.password)
        MlflowClient(url, url).create_registered_model(MODEL)
        for person in (ALICE, BOB):
            users.grant_user_permission(person.username, "registered_model", MODEL, "MANAGE")
    base = str(tmp_path_factory.getbasetemp())
    with pytest.MonkeyPatch.context() as mp:  # the admin trains, as a team's service account would
        for key, value in {"MLFLOW_TRACKING_URI": url, "TUNEBOARD_HOME": str(tmp / "trainer-home"),
                           "TUNEBOARD_DATA_DIR": str(data), "MLFLOW_TRACKING_USERNAME": ADMIN.username,
                           "MLFLOW_TRACKING_PASSWORD": ADMIN.password, DATA_ROOTS: base, MODEL_ROOTS: base}.items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        spec = GridSpec(base_name="Team_Calls", data_src="Team", dataset_versions=("train_sample.csv",),
                        hyperparameters=({"n_epochs": 1, "max_steps": 5},),
                        base_model_versions=(str(demo_models["demo-bert-tiny"]),), output_dir=str(tmp / "out"),
                        train_file=str(data / "{data_version}"), validation_file=str(data / "test.csv"),
                        evaluate_pretrained_model=True, user_id="admin")
        manager = ExperimentManager.from_spec(spec)
        summary = manager.run_experiments()
    assert [r.status for r in summary.results] == ["FINISHED", "FINISHED"], summary.results
    return url, tmp, manager.experiment_name


def sign_in(page, url: str, who: Credentials) -> None:
    """Open the dashboard in this browser session and sign in with the dashboard's own form."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("User name").fill(who.username)
    page.get_by_label("Password", exact=True).fill(who.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {who.username}").first).to_be_visible()


def test_request_as_alice_approve_as_bob_and_download_the_record_on_the_team_server(team, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, tmp, experiment = team
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    # the dashboard knows the rule only from the server: nothing about approval in its own environment
    env = {k: v for k, v in child_env(MLFLOW_TRACKING_URI=url, TUNEBOARD_HOME=str(tmp / "dashboard-home"),
                                      TUNEBOARD_DATA_DIR=str(tmp / "data")).items()
           if k not in ("TUNEBOARD_APPROVAL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    dashboard, address = start_dashboard(env, tmp_path / "streamlit.log")
    saved = tmp_path / "record.html"
    try:
        with sync_playwright() as p:
            browser, alice = open_page(p, accept_downloads=True)
            sign_in(alice, address, ALICE)
            alice.get_by_role("link", name="Registry & promotion").first.click()
            expect(alice.get_by_role("heading", name="Registry & promotion")).to_be_visible()
            expect(alice.get_by_text("You (alice) may promote and roll back")).to_be_visible()
            expect(alice.get_by_text("Promotions here need someone else's approval")).to_be_visible()
            expect(alice.get_by_role("button", name="Promote the best run")).to_have_count(0)
            alice.get_by_label("From experiment").click()
            alice.get_by_role("option", name=experiment).click()
            click_until(alice, "Request promotion", "Send the request")
            alice.get_by_label("Why (the person approving reads it)").fill("fewer account-access mistakes")
            alice.get_by_label("Why (the person approving reads it)").press("Enter")
            alice.get_by_role("button", name="Send the request").click()
            expect(alice.get_by_text("It waits on Home for someone's approval")).to_be_visible()
            expect(alice.get_by_role("button", name="Withdraw my request")).to_be_visible()
            wait_idle(alice)
            alice.screenshot(path=str(shots / "18-team-alice-requested.png"))
            alice.get_by_role("link", name="Home").first.click()  # her own request: no Approve for her
            expect(alice.get_by_text("You asked for it: someone else approves it")).to_be_visible()
            expect(alice.get_by_role("button", name="Approve")).to_have_count(0)

            bob = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            bob.set_default_timeout(60_000)
            sign_in(bob, address, BOB)
            expect(bob.get_by_role("heading", name="Waiting for your approval")).to_be_visible()
            expect(bob.get_by_text("alice asks to put version 1")).to_be_visible()
            expect(bob.get_by_text("validation examples, the candidate fixes").first).to_be_visible()
            bob.get_by_label("Why (kept with the decision)").fill("checked the account-access examples")
            bob.get_by_label("Why (kept with the decision)").press("Enter")
            wait_idle(bob)
            bob.screenshot(path=str(shots / "19-team-bob-approves.png"), full_page=True)
            bob.get_by_role("button", name="Approve").click()
            expect(bob.get_by_text(f"Approved: version 1 of {MODEL} is in production")).to_be_visible()

            bob.get_by_role("link", name="Registry & promotion").first.click()
            expect(bob.get_by_role("heading", name="Audit trail")).to_be_visible()
            expect(bob.get_by_text("In production: version 1")).to_be_visible()
            button = bob.get_by_role("button", name="Download version 1's decision record")
            button.scroll_into_view_if_needed()
            wait_idle(bob)
            bob.screenshot(path=str(shots / "20-team-registry-approved.png"))
            download_by_clicking(bob, button).save_as(str(saved))
            bob.goto(saved.as_uri())
            expect(bob.get_by_role("heading", name=f"Decision record: {MODEL} version 1")).to_be_visible()
            browser.close()
    finally:
        dashboard.terminate()
        dashboard.wait(20)

    record = saved.read_text(encoding="utf-8")
    assert "Requested by" in record and "alice" in record and "Approved by" in record and "bob" in record
    assert "fewer account-access mistakes" in record and "checked the account-access examples" in record
    with acting_as(BOB):  # the server moved it: its audit event names both people
        from core.registry.model_transition import ModelTransition

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", url)
            mp.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
            mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
            event = ModelTransition(MODEL).audit_trail()[-1]
    assert (event.user, event.requested_by, event.version, event.alias) == ("bob", "alice", "1", "production")
