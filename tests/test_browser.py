"""End to end in a real browser: compose a demo grid, launch, watch it finish, compare (with which runs are within
noise of the best), read a run's mistakes, promote after seeing whether the candidate's lead is real and what it
fixes and breaks against production.

Debian's chromium (/usr/bin/chromium) driven by Playwright; the dashboard is the real
``streamlit run app.py`` with a real local worker on a fresh store. Screenshots of each
page go to ``$E2E_SCREENSHOTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, child_env, copy_data, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard")]  # one worker builds its fixture
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]
MODEL_NAME = "Consumer_Topic_Classifier"
# Version 1: the fine-tune that is not the best, put into production from Python (as a team's script would)
PROMOTE_THE_WEAKER = f"""
from core import runs
from core.registry.model_selector import ModelSelector
from core.registry.model_transition import ModelTransition
client = runs.client()
experiment = runs.experiments(client)[0]
best = ModelSelector(experiment.name, "accuracy").get_best_model().info.run_id
weaker = next(r for r in runs.search_all(client, [experiment.experiment_id])
              if r.data.tags.get("run_type") == "fine_tune" and r.info.run_id != best)
transition = ModelTransition("{MODEL_NAME}")
transition.promote(transition.register_run(weaker).version, "Production", reason="the weaker fine-tune")
"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    copy_data(tmp / "data")
    env = child_env(TUNEBOARD_HOME=str(tmp / "home"), TUNEBOARD_DATA_DIR=str(tmp / "data"), TUNEBOARD_USER="e2e-user")
    subprocess.run([sys.executable, "-m", "core.cli", "prepare"], cwd=ROOT, env=env, check=True, timeout=300,
                   capture_output=True)
    server, url = start_dashboard(env, tmp / "streamlit.log")
    yield url, tmp, env
    server.terminate()
    server.wait(20)
    subprocess.run([sys.executable, "-m", "core.cli", "worker", "stop"], cwd=ROOT, env=env, timeout=120,
                   capture_output=True, check=False)


def click_until(page, button: str, shows: str, tries: int = 6) -> None:
    """Click until the text appears: a click that lands while an upload is still reaching the server is lost,
    and on a loaded machine a click that did land may take longer to show its result than to hide the button
    (then the next try waits for the result instead of clicking a button that is gone)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    result = page.get_by_text(shows).first
    for _ in range(tries):
        if result.is_visible():
            return
        try:
            page.get_by_role("button", name=button).click(timeout=10_000)
        except PlaywrightTimeout:
            pass  # no such button now: the page is rerunning on an earlier click
        try:
            result.wait_for(state="visible", timeout=15_000)
            return
        except PlaywrightTimeout:
            continue
    shown = page.get_by_role("main").inner_text(timeout=10_000)[:3000]
    shot = Path(os.environ.get("E2E_SCREENSHOTS") or tempfile.gettempdir()) / "failed-click-until.png"
    page.screenshot(path=str(shot), full_page=True)
    raise AssertionError(f"clicking {button!r} never showed {shows!r} (screenshot: {shot}); the page shows:\n{shown}")


def download_by_clicking(page, button, tries: int = 4, tab=None):
    """Click ``button`` (a locator) until the browser gets a download: a click that lands while the page reruns
    (Streamlit replaces the button) is lost, and a deferred download is made only by a click the server saw.
    ``tab``: the tab holding the button, chosen again when the button is hidden (a rerun showed the first tab:
    a CI run spent its four clicks waiting for a button in a tab no longer shown)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def once():
        if tab is not None and not button.is_visible():
            tab.click()
        with page.expect_download(timeout=20_000) as download:
            button.click(timeout=10_000)
        return download.value

    for _ in range(tries - 1):
        try:
            return once()
        except PlaywrightTimeout:
            continue
    return once()


def grid_file(tmp: Path, name: str, base_name: str, model: str, dataset: str, sets: list[str],
              validation: str) -> Path:
    """A grid file as a person saves one: the seed's arguments, files in the test's data folder."""
    grid = tmp / name
    grid.write_text("\n".join([
        f"base_name: {base_name}", "data_src: CallTranscript", "user_id: e2e-user",
        f'base_model_versions: ["{tmp / "home" / "demo-models" / model}"]', f"dataset_versions: [{dataset}]",
        "hyperparameters:", *[f"  - {{{s}}}" for s in sets], f'train_file: "{tmp / "data"}/{{data_version}}"',
        f'validation_file: "{tmp / "data" / validation}"', f'output_dir: "{tmp / "home" / "out"}"',
        "evalute_pretrained_model: true", ""]), encoding="utf-8")
    return grid


def open_page(p, **options):
    """Debian's chromium, one page of the dashboard's size, a minute for anything to show."""
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, **options)
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    return browser, page


def load_grid(page, grid: Path, tries: int = 3) -> None:
    """On Compose & launch: load a saved grid file. A file set while the page is still running its script can be
    dropped with the widget Streamlit replaces (a CI run's page showed an empty uploader a minute later), so the
    file is set once the page is idle, and again while the uploader does not hold it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.get_by_role("link", name="Compose & launch").first.click()
    expect(page.get_by_role("heading", name="Compose & launch")).to_be_visible()
    page.get_by_text("Start from a saved grid or a past experiment").click()
    loaded = page.get_by_text(f"Loaded {grid.name}.")
    held = page.get_by_test_id("stFileChipName").filter(has_text=grid.name)
    for _ in range(tries):
        wait_idle(page)
        page.locator("input[type=file]").first.set_input_files(str(grid))
        try:
            loaded.or_(held).first.wait_for(state="visible", timeout=30_000)  # the upload reached the server
            break
        except PlaywrightTimeout:
            continue
    try:
        loaded.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        click_until(page, "Load this file again", f"Loaded {grid.name}.")  # says what the page shows if not


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until the page's script has finished its run (Streamlit's running icon is gone)."""
    page.get_by_test_id("stStatusWidgetRunningIcon").wait_for(state="hidden", timeout=timeout)


def test_from_an_empty_store_to_a_model_in_production_by_clicking(dashboard):
    from playwright.sync_api import expect, sync_playwright

    url, tmp, env = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    grid = grid_file(tmp, "tiny_grid.yaml", "Consumer_Topics", "demo-bert-tiny", "full_dataset.csv",
                     ["n_epochs: 3, learning_rate: 0.0005, train_batch_size: 8, eval_batch_size: 64",
                      "n_epochs: 1, learning_rate: 0.002, train_batch_size: 16, eval_batch_size: 64"], "test.csv")

    with sync_playwright() as p:
        browser, page = open_page(p)
        page.goto(url)
        expect(page.get_by_role("heading", name="Tuneboard", level=1)).to_be_visible()
        expect(page.get_by_text("No model is registered yet")).to_be_visible()
        page.screenshot(path=str(shots / "1-home-empty.png"), full_page=True)

        load_grid(page, grid)
        expect(page.get_by_text("3 runs").first).to_be_visible()  # .first: a rerun may briefly show it twice
        page.screenshot(path=str(shots / "2-compose.png"), full_page=True)

        page.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Queued 3 runs").first).to_be_visible()
        # the grid's ETA line: how many jobs are left, and when it should end once jobs like its own have ended
        # (the figure itself is core.jobs.eta's, unit-tested; here a job's end can outrun the page's refresh)
        expect(page.get_by_text(re.compile(r"^Grid of .*Consumer_Topics.*: [123] of 3 jobs left \(\d running\); "
                                           r"(it should end at|its end is estimated once)")).first).to_be_visible()
        expect(page.get_by_text("3 finished").first).to_be_visible(timeout=240_000)
        page.screenshot(path=str(shots / "3-jobs.png"), full_page=True)

        page.get_by_role("link", name="Compare").first.click()
        expect(page.get_by_text("Best run overall by accuracy")).to_be_visible()
        # is the lead real? the other fine-tune is within what chance gives, or clearly behind
        expect(page.get_by_text(re.compile(r"(\d+ runs? (is|are)|No other run is) within what chance gives on 400 "
                                           r"examples"))).to_be_visible()
        expect(page.get_by_text("differences in accuracy under about")).to_be_visible()
        expect(page.locator(".js-plotly-plot").first).to_be_visible()
        expect(page.get_by_text("95% interval of each group's best").first).to_be_visible()  # the chart's bars
        page.screenshot(path=str(shots / "4-compare.png"), full_page=True)
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()  # Streamlit scrolls inside its main block
        page.screenshot(path=str(shots / "4a-compare-intervals.png"))
        # the runs table's export is made when clicked (deferred): the browser gets the file
        export_tab = page.get_by_role("tab", name="Table & export")
        export_tab.click()
        exported = tmp / "runs.csv"
        download_by_clicking(page, page.get_by_role("button", name="Export this table as CSV"),
                             tab=export_tab).save_as(str(exported))
        with open(exported, newline="", encoding="utf-8") as f:
            runs = list(csv.DictReader(f))
        assert len(runs) == 3 and {r["status"] for r in runs} == {"FINISHED"} and "run_name" in runs[0]

        # the transcripts behind the numbers: one run's mistakes
        page.get_by_role("tab", name="Examples").click()
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).click()
        page.get_by_role("option", name="demo-bert-tiny_full_dataset_param_set1").click()
        page.get_by_text("Wrong only").click()
        # only the mistakes are listed: as many shown as the run gets wrong
        expect(page.get_by_text(re.compile(r"^(\d+) of 400 examples shown; the run gets \1 of 400 wrong"))
               ).to_be_visible()
        expect(page.get_by_text("They disagree on")).to_be_visible()
        # Streamlit scrolls inside its main block: bring the listed mistakes into the screenshot
        page.get_by_text("Per label, on every example of this run").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "4b-examples.png"))

        # the weaker fine-tune goes into production first, so the promotion has something to compare with
        subprocess.run([sys.executable, "-c", PROMOTE_THE_WEAKER], cwd=ROOT, env=env, check=True, timeout=300,
                       capture_output=True)
        page.get_by_role("link", name="Registry & promotion").first.click()
        expect(page.get_by_role("heading", name="Registry & promotion")).to_be_visible()
        page.get_by_role("button", name="Promote the best run").click()
        expect(page.get_by_text("Promoting replaces version 1 now in production")).to_be_visible()
        expect(page.get_by_text("validation examples, the candidate fixes")).to_be_visible()
        expect(page.get_by_text("it got right (net")).to_be_visible()
        # whether the candidate's lead is more than chance, in words, before the confirm button
        verdict = page.get_by_text(re.compile(r"^Against version 1 in production: (better|worse|the same) .* on "
                                              r"these 400 examples"))
        expect(verdict).to_be_visible()
        verdict.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "5a-registry-noise.png"))
        page.get_by_text("examples it fixes").click()
        page.get_by_text("Per label (by true label), before and after").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "5-registry-confirm.png"))
        page.get_by_role("button", name="Confirm: put it into production").click()
        expect(page.get_by_text(f"Version 2 of {MODEL_NAME} is now in production.")).to_be_visible()
        # try it: tag one call's topics (the NLI demo model opens on that tab), then the premise/hypothesis mode
        page.get_by_role("button", name="Tag topics").click()
        expect(page.locator(".js-plotly-plot").last).to_be_visible()
        expect(page.get_by_text(re.compile(r"Version 2 tags this call with|No topic reaches"))).to_be_visible()
        page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "6b-registry-topics.png"))
        pair_tab = page.get_by_role("tab", name="Premise and hypothesis")
        expect(pair_tab).to_have_count(1)  # while the page reruns, the old tabs can still be in the page
        pair_tab.click()
        page.get_by_role("button", name="Predict").click()
        expect(page.get_by_text("Version 2 says")).to_be_visible()
        page.screenshot(path=str(shots / "6-registry-promoted.png"), full_page=True)

        page.get_by_role("link", name="Home").first.click()
        expect(page.get_by_text(f"{MODEL_NAME}: version 2")).to_be_visible()
        page.screenshot(path=str(shots / "7-home.png"), full_page=True)
        browser.close()

    # the registry agrees with what the page said
    check = subprocess.run([sys.executable, "-m", "core.cli", "history", MODEL_NAME], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120, check=True)
    assert "e2e-user promoted version 2 to production" in check.stdout
    assert "    evidence: " in check.stdout and "on these 400 examples" in check.stdout  # what it was decided on


def test_score_a_file_and_download_it(dashboard):
    """After the test above (a model in production): score a small file by clicking, download the result."""
    import re

    from playwright.sync_api import expect, sync_playwright

    url, tmp, _ = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    calls = tmp / "calls.csv"
    with open(calls, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([
            ("call_id", "premise", "hypothesis"),
            ("c1", "I can't log in to my account", "This call is about account access."),
            ("c2", "I would like to borrow from my plan", "This call is about withdrawal."),
            ("c3", "=1+1 roll my balance into an IRA", "This call is about rollover.")])

    with sync_playwright() as p:
        browser, page = open_page(p, accept_downloads=True)

        page.goto(url)
        page.get_by_role("link", name="Score a file").first.click()
        expect(page.get_by_role("heading", name="Score a file")).to_be_visible()
        # whichever version the test above left in production
        expect(page.get_by_text(re.compile(rf"{MODEL_NAME} version \d+ \(production\)")).first).to_be_visible()
        page.locator("input[type=file]").first.set_input_files(str(calls))
        expect(page.get_by_text("3 rows; the first 3")).to_be_visible()
        click_until(page, "Score this file", "3. The result")
        expect(page.get_by_text("Scored 3 rows")).to_be_visible(timeout=180_000)
        button = page.get_by_role("button", name="Download calls_scored.csv")
        button.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "score.png"))  # Streamlit scrolls inside the page: the result in view
        saved = tmp / "downloaded.csv"
        download_by_clicking(page, button).save_as(str(saved))
        browser.close()

    with open(saved, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["call_id", "premise", "hypothesis", "predicted_label", "score_entailment",
                             "score_not_entailment"]
    assert [r["call_id"] for r in rows] == ["c1", "c2", "c3"]
    assert rows[2]["premise"] == "'=1+1 roll my balance into an IRA"  # neutralised for spreadsheets
    assert all(r["predicted_label"] in ("entailment", "not_entailment") for r in rows)


def test_calls_as_the_team_labels_them_train_from_compose_and_read_as_calls(dashboard, short_calls):
    """A team's own ``call_id, transcript, topic`` file (several topics in a cell), as it is: Compose guesses the
    mapping, offers topic pairs for the NLI demo model, launches; Compare ranks by topic_f1_macro; the Examples
    tab lists calls with their true and tagged topics."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from core.demo import CALL_FILES

    url, tmp, _ = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    for name in CALL_FILES:  # short calls: the flow, not the reading of long calls, is what this test is about
        shutil.copy(short_calls / name, tmp / "data" / name)
    grid = grid_file(tmp, "calls_grid.yaml", "Call_Topics", "demo-deberta-v2-tiny", "calls_train.csv",
                     ["n_epochs: 2, learning_rate: 0.002, train_batch_size: 16, eval_batch_size: 64"],
                     "calls_test.csv")  # names the files only: the page reads their columns

    with sync_playwright() as p:
        browser, page = open_page(p)
        page.goto(url)
        load_grid(page, grid)
        # the mapping, guessed from the file as the team wrote it
        expect(page.get_by_text("names its columns call_id, transcript, topic").first).to_be_visible()
        page.get_by_text("to tag the calls' topics").first.click()
        expect(page.get_by_text("Each run is judged by").first).to_be_visible()
        expect(page.get_by_text("2 runs").first).to_be_visible()
        page.get_by_text("Which columns hold what.").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "12-compose-calls.png"))

        page.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Queued 2 runs").first).to_be_visible()
        expect(page.get_by_text("2 finished").first).to_be_visible(timeout=300_000)

        page.get_by_role("link", name="Compare").first.click()  # the newest experiment is shown first
        expect(page.get_by_text("Best run overall by topic_f1_macro")).to_be_visible()
        page.screenshot(path=str(shots / "13-compare-calls.png"), full_page=True)

        page.get_by_role("tab", name="Examples").click()
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).click()
        page.get_by_role("option", name="demo-deberta-v2-tiny_calls_train_param_set1").click()
        expect(page.get_by_text(re.compile(r"^\d+ of 100 calls shown; the run gets \d+ of 100 wrong"))).to_be_visible()
        expect(page.get_by_text("One row per validation call: its true topics")).to_be_visible()
        page.get_by_text(re.compile(r"of 100 calls shown")).scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "14-examples-calls.png"))
        browser.close()


def test_compose_shows_what_long_calls_cost_before_launch(dashboard):
    """Calls as long as real ones: before anything is launched, Compose says how long they are in the model's
    tokens, in how many windows each is read, and the forward passes topic evaluation will make."""
    from playwright.sync_api import expect

    from core.demo import LONG_CALL_FILES, make_long_calls

    url, tmp, _ = dashboard
    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(LONG_CALL_FILES, (make_long_calls(12, 3, "T"), make_long_calls(6, 4, "V")), strict=True):
        with open(tmp / "data" / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
            writer.writeheader()
            writer.writerows(rows)
    grid = grid_file(tmp, "long_calls_grid.yaml", "Long_Calls", "demo-bert-tiny", LONG_CALL_FILES[0],
                     ["n_epochs: 1, learning_rate: 0.002, train_batch_size: 16, eval_batch_size: 64"],
                     LONG_CALL_FILES[1])
    with sync_playwright_page() as page:
        page.goto(url)
        load_grid(page, grid)
        # a team's small file: the mapping is guessed from it (the text is the transcript, not the call's id)
        expect(page.get_by_text("long_calls_train.csv names its columns call_id, transcript, topic").first) \
            .to_be_visible()
        page.get_by_text("to tag the calls' topics").first.click()
        expect(page.get_by_text("What the models will read.").first).to_be_visible()
        expect(page.get_by_text(re.compile(r"is read window by window: long_calls_\w+\.csv averages"))
               .first).to_be_visible()
        expect(page.get_by_text(re.compile(r"Tagging topics reads 6 validation calls x their windows x \d+ "
                                           r"topics: [\d,]+ forward passes per run")).first).to_be_visible()
        page.get_by_text("What the models will read.").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "15-compose-long-calls.png"))


@contextlib.contextmanager
def sync_playwright_page():
    """One browser page of the dashboard's size, closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p)
        try:
            yield page
        finally:
            browser.close()


def start_dashboard(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """The real ``streamlit run app.py`` on a free port, its output in ``log``; (the process, its address)."""
    port = free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}",
                                   "--server.headless=true"], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return server, url
        except OSError:
            time.sleep(0.5)  # the server is starting: nothing to wait on but its answer
    server.kill()
    pytest.fail("the dashboard did not start within 90 s")


def test_request_as_one_user_approve_as_another_and_download_the_decision_record(private_store, tmp_path):
    """Approval required: alice requests on the Registry page, Home shows it waiting, bob approves it there, and
    the decision record is downloaded (issue 20). On the module's copy of the session's shared store: Score_Topic
    version 1 in production, the Examples experiment's fine-tunes to request."""
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("E2E_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    env = child_env(TUNEBOARD_HOME=str(private_store.home), TUNEBOARD_DATA_DIR=str(private_store.data_dir),
                    TUNEBOARD_APPROVAL="required")
    # a store without sign-in names whoever runs the dashboard: one dashboard process per person
    servers = [start_dashboard({**env, "TUNEBOARD_USER": who}, tmp_path / f"streamlit-{who}.log")
               for who in ("alice", "bob")]
    (_, alice), (_, bob) = servers
    try:
        with sync_playwright() as p:
            browser, page = open_page(p, accept_downloads=True)

            page.goto(alice)
            page.get_by_role("link", name="Registry & promotion").first.click()
            expect(page.get_by_role("heading", name="Registry & promotion")).to_be_visible()
            expect(page.get_by_text("Promotions here need someone else's approval")).to_be_visible()
            expect(page.get_by_role("button", name="Promote the best run")).to_have_count(0)
            page.get_by_label("From experiment").click()
            page.get_by_role("option", name=private_store.examples).click()
            click_until(page, "Request promotion", "Send the request")
            page.get_by_label("Why (the person approving reads it)").fill("fewer account-access mistakes")
            page.get_by_label("Why (the person approving reads it)").press("Enter")
            page.get_by_role("button", name="Send the request").click()
            expect(page.get_by_text("It waits on Home for someone's approval")).to_be_visible()
            page.screenshot(path=str(shots / "8-registry-requested.png"))

            page.goto(bob)
            expect(page.get_by_role("heading", name="Waiting for your approval")).to_be_visible()
            expect(page.get_by_text("alice asks to put version 2")).to_be_visible()
            expect(page.get_by_text("validation examples, the candidate fixes").first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^Per label: "))).to_be_visible()
            expect(page.get_by_role("button", name="Approve")).to_be_visible()
            page.screenshot(path=str(shots / "9-home-waiting-for-approval.png"), full_page=True)
            page.get_by_label("Why (kept with the decision)").fill("checked the account-access examples")
            page.get_by_label("Why (kept with the decision)").press("Enter")
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_text("Approved: version 2 of Score_Topic is in production")).to_be_visible()

            page.get_by_role("link", name="Registry & promotion").first.click()
            expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
            page.get_by_label("Version", exact=True).click()
            page.get_by_role("option", name="2", exact=True).click()
            button = page.get_by_role("button", name="Download version 2's decision record")
            button.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "10-registry-approved.png"))
            saved = tmp_path / "record.html"
            download_by_clicking(page, button).save_as(str(saved))

            page.goto(saved.as_uri())
            expect(page.get_by_role("heading", name="Decision record: Score_Topic version 2")).to_be_visible()
            page.screenshot(path=str(shots / "11-decision-record.png"), full_page=True)
            browser.close()
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(20)

    record = saved.read_text(encoding="utf-8")
    assert "Requested by" in record and "alice" in record and "Approved by" in record and "bob" in record
    assert "fewer account-access mistakes" in record and "checked the account-access examples" in record
    assert "replacing version <b>1</b>" in record and "<script" not in record
    assert 'id="no-texts"' in record  # the example texts only when asked for
    history = subprocess.run([sys.executable, "-m", "core.cli", "history", "Score_Topic"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert "bob approved version 2 to production, requested by alice" in history
