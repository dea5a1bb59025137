"""A team's own files in the browser (issue 27): a new user uploads a training and a validation file of calls and
the grid trains on those alone, the mapping guessed from them; another has one labelled file and holds out a share
of it. The real dashboard and worker on a fresh store (``dashboard`` from test_browser), short calls, one epoch."""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import pytest
import test_browser
from test_browser import open_page, wait_idle

dashboard = test_browser.dashboard  # the real dashboard on a fresh store, this module's own

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard_uploads")]  # one worker builds its fixture
TEAM_UPLOADER = "Your labelled data, to train on"
VALIDATION_UPLOADER = "Your validation file, if you have one"
TODAY = datetime.date.today().strftime("%Y%m%d")


def upload(page, uploader: str, file: Path, shows: str) -> None:
    """Set ``file`` on the uploader labelled ``uploader`` once the page is idle, until the page says ``shows``
    (a file set while the script runs can be dropped with the widget Streamlit replaces)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    said = page.get_by_text(shows).first
    for _ in range(3):
        wait_idle(page)
        page.get_by_test_id("stFileUploader").filter(has_text=uploader).locator("input[type=file]") \
            .set_input_files(str(file))
        try:
            said.wait_for(state="visible", timeout=30_000)
            return
        except PlaywrightTimeout:
            continue
    said.wait_for(state="visible", timeout=10_000)  # says what the page shows if not


def shot_from(page, top, path: Path) -> None:
    """A screenshot with ``top`` at the top of the view (Streamlit scrolls inside its main block)."""
    wait_idle(page)
    top.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(path))


def one_tiny_set_without_baselines(page) -> None:
    """The grid made small: no baseline, one set of one epoch (from the value lists), both demo models."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.get_by_text("Evaluate each pretrained base model first").click()
    wait_idle(page)
    first = page.get_by_label("n_epochs values (comma-separated)")
    for _ in range(4):  # a click that lands while the page reruns is lost with the expander Streamlit replaces
        wait_idle(page)  # mid-rerun the page shows the old expander and the new one
        page.get_by_text("Generate sets from value lists").first.click()
        try:
            first.wait_for(state="visible", timeout=15_000)
            break
        except PlaywrightTimeout:
            wait_idle(page)
    for key, value in (("n_epochs", "1"), ("learning_rate", "0.002"), ("train_batch_size", "16"),
                       ("eval_batch_size", "64")):
        field = page.get_by_label(f"{key} values (comma-separated)")
        field.fill(value)
        field.press("Enter")
        wait_idle(page)
    test_browser.click_until(page, "Fill the table", "2 runs")  # a click lost to a rerun is made again
    expect(page.get_by_text("2 runs", exact=True).first).to_be_visible()  # 2 demo models x 1 file x 1 set


def finished_runs(tmp: Path, experiment: str) -> tuple:
    """(a client of the dashboard's store, the experiment's finished runs)."""
    from mlflow.tracking import MlflowClient

    from core.settings import default_tracking_uri

    client = MlflowClient(default_tracking_uri((tmp / "home").resolve()))
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'")


def test_a_new_user_uploads_train_and_validation_calls_and_trains_on_them_alone(dashboard, short_calls):
    from playwright.sync_api import expect, sync_playwright

    url, tmp, _ = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    train, validation = tmp / "bank_calls_train.csv", tmp / "bank_calls_val.csv"
    shutil.copy(short_calls / "calls_train.csv", train)
    shutil.copy(short_calls / "calls_test.csv", validation)

    with sync_playwright() as p:
        browser, page = open_page(p)
        page.goto(url)
        page.get_by_role("link", name="Compose & launch").first.click()
        expect(page.get_by_role("heading", name="Compose & launch")).to_be_visible()
        expect(page.get_by_text("10 runs", exact=True).first).to_be_visible()  # the demo's grid, as it starts
        upload(page, TEAM_UPLOADER, train, "it replaces the demo's files")
        upload(page, VALIDATION_UPLOADER, validation, "every run is checked on it")
        # the mapping, guessed from the team's file; the check counts the team's one file, no demo file
        expect(page.get_by_text("uploads/bank_calls_train.csv names its columns call_id, transcript, topic")
               .first).to_be_visible()
        expect(page.get_by_text("6 runs", exact=True).first).to_be_visible()  # 2 models x 1 file x 2 sets + 2
        shot_from(page, page.get_by_role("heading", name="3. Data"), shots / "16-compose-team-files.png")
        shot_from(page, page.get_by_text("Which columns hold what.").first, shots / "16a-compose-team-mapping.png")

        one_tiny_set_without_baselines(page)
        page.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Queued 2 runs").first).to_be_visible()
        expect(page.get_by_text("2 finished").first).to_be_visible(timeout=300_000)
        browser.close()

    _, runs = finished_runs(tmp, f"/Users/e2e-user/ConsumerTopic_FineTune_CallTranscript_{TODAY}")
    assert len(runs) == 2
    for run in runs:
        params = run.data.params
        assert Path(params["train_file"]) == tmp / "data" / "uploads" / "bank_calls_train.csv"
        assert Path(params["validation_file"]) == tmp / "data" / "uploads" / "bank_calls_val.csv"
        assert (params["columns.text"], params["columns.label"]) == ("transcript", "topic")
        assert not any(k.startswith("split.") for k in params)


def test_one_labelled_file_with_a_share_held_out_for_validation(dashboard, short_calls):
    from playwright.sync_api import expect, sync_playwright

    from core.training.kind import past_grid

    url, tmp, _ = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    labelled = tmp / "team_calls.csv"
    shutil.copy(short_calls / "calls_train.csv", labelled)

    with sync_playwright() as p:
        browser, page = open_page(p)
        page.goto(url)
        page.get_by_role("link", name="Compose & launch").first.click()
        expect(page.get_by_role("heading", name="Compose & launch")).to_be_visible()
        page.get_by_role("textbox", name="Experiment theme (base_name)").fill("Held_Out")
        page.get_by_role("textbox", name="Experiment theme (base_name)").press("Enter")
        upload(page, TEAM_UPLOADER, labelled, "it replaces the demo's files")
        wait_idle(page)
        page.get_by_text("on a share held out of a training file").click()
        expect(page.get_by_text("rows of uploads/team_calls.csv are held out for validation").first).to_be_visible()
        expect(page.get_by_text("stratified by each row's rarest topic").first).to_be_visible()
        shot_from(page, page.get_by_text("Which columns hold what.").first, shots / "17-compose-held-out.png")

        one_tiny_set_without_baselines(page)
        page.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Queued 2 runs").first).to_be_visible()
        expect(page.get_by_text("2 finished").first).to_be_visible(timeout=300_000)
        browser.close()

    uploads = tmp / "data" / "uploads"
    client, runs = finished_runs(tmp, f"/Users/e2e-user/Held_Out_CallTranscript_{TODAY}")
    assert len(runs) == 2
    for run in runs:
        params = run.data.params
        assert Path(params["train_file"]) == uploads / "team_calls.holdout-s42-p20.train.csv"
        assert Path(params["validation_file"]) == uploads / "team_calls.holdout-s42-p20.validation.csv"
        assert Path(params["split.source"]) == uploads / "team_calls.csv" and params["split.seed"] == "42"
        assert params["split.share"] == "0.2" and params["split.validation_rows"] == runs[0].data.params[
            "split.validation_rows"]
        assert Path(params["split.record"]) == uploads / "team_calls.holdout-s42-p20.split.yaml"
    # a later grid started from this experiment holds out the same rows
    assert past_grid(client, runs[0].info.experiment_id)["split"]["rows_sha256"] == \
        runs[0].data.params["split.rows_sha256"]
