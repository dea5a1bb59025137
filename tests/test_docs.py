"""The documentation site: it builds strictly, it names only commands and options that exist, it covers every
grid key, setting and command, and it opens offline.

The site is built once per module (``mkdocs build --strict`` into a temporary folder); the tests that need
the built pages share it. Broken links and made-up options are shown to fail on copies, never on the real docs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from functools import lru_cache
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import ROOT

pytestmark = pytest.mark.xdist_group("docs")  # one worker builds the site once
DOCS = ROOT / "docs"
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]
CLI = "python -m core.cli"
# read by the code but set by Tuneboard itself for its own processes, or by the tests: no reader sets them
INTERNAL_VARIABLES = {"TUNEBOARD_WORKER_PID", "TUNEBOARD_TEST_HOLD_AT", "TUNEBOARD_TEST_HOLD_FILE"}


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site``."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_the_docs_build_strictly(site):
    for page in ("index.html", "getting-started.html", "approve/index.html", "admin/index.html",
                 "train/index.html", "reference/cli.html", "reference/python-api.html", "benchmarks.html",
                 "reliability.html", "contributors.html", "screenshots/4-compare.png"):
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings of the seed's classes
    api = (site / "reference" / "python-api.html").read_text(encoding="utf-8")
    for name in ("ExperimentManager", "run_experiments", "ModelSelector", "get_best_model", "ModelTransition",
                 "transition_model", "rollback"):
        assert name in api, name


def copy_docs(tmp_path: Path) -> Path:
    """docs/ and mkdocs.yml copied into ``tmp_path``, with what the build reads from beside them (the code for
    the API reference, the tests' screenshots) linked in; returns the copy's mkdocs.yml."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "core").symlink_to(ROOT / "core")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "screenshots").symlink_to(SHOTS)
    return tmp_path / "mkdocs.yml"


def test_a_broken_link_fails_the_strict_build(tmp_path):
    config = copy_docs(tmp_path)
    page = tmp_path / "docs" / "approve" / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the old page](no-such-page.md) and "
                    "[a section](../train/grids.md#no-such-section).\n", encoding="utf-8")
    done = build(config, tmp_path / "site")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "no-such-page.md" in said and "no-such-section" in said, said
    assert "Aborted" in said and "strict" in said


# -- the command line, as the docs show it -------------------------------------------------------------------


def _help(*argv: str) -> str:
    from core import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return out.getvalue()


@lru_cache(maxsize=1)
def cli_options() -> dict[str, frozenset[str]]:
    """Each subcommand of ``python -m core.cli`` and the options its ``--help`` lists."""
    top = _help()
    commands = re.search(r"\{([a-z,-]+)\}", top).group(1).split(",")
    found = {}
    for command in commands:
        text = _help(command)
        options = text[text.index("options:"):] if "options:" in text else ""
        found[command] = frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", options))
    return found


FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")


def cli_commands(markdown: str) -> list[str]:
    """Every ``python -m core.cli ...`` command a page shows: in its code blocks (continued lines joined) and in
    its inline code."""
    blocks = [m.group(1).replace("\\\n", " ") for m in FENCE.finditer(markdown)]
    prose = FENCE.sub("", markdown)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += [m.group(1) for m in INLINE.finditer(prose)]
    return [line[line.index(CLI) + len(CLI):] for line in lines if CLI in line]


def cli_problems(markdown: str, where: str) -> list[str]:
    """What is wrong with the commands a page shows: a subcommand that does not exist, an option its subcommand
    does not take."""
    known = cli_options()
    problems = []
    for rest in cli_commands(markdown):
        rest = re.split(r"\s(?:\||&&|;|>|2>)\s", rest)[0]  # the command alone, not what it is piped into
        try:
            words = shlex.split(rest, comments=True)
        except ValueError:  # an unbalanced quote: the words as they stand
            words = rest.split()
        words = [w.strip("[]") for w in words]
        if not words or words[0] in ("COMMAND",):  # the page's own placeholder for any command
            continue
        command = words[0]
        if command not in known:
            problems.append(f"{where}: `{CLI} {command}`: no such command (there are {', '.join(known)})")
            continue
        for word in words[1:]:
            if word.startswith("-") and word.split("=")[0] not in known[command]:
                problems.append(f"{where}: `{CLI} {command}` has no option {word.split('=')[0]} "
                                f"(it takes {', '.join(sorted(known[command]))})")
    return problems


def doc_pages() -> dict[str, str]:
    pages = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))}
    pages["README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    return pages


def test_every_command_the_docs_show_exists_with_the_options_shown():
    pages = doc_pages()
    shown = sum(len(cli_commands(text)) for text in pages.values())
    assert shown > 40  # the check reads the pages' commands
    problems = [p for where, text in pages.items() for p in cli_problems(text, where)]
    assert not problems, "\n".join(problems)


def auth_problems(text: str, where: str) -> list[str]:
    """The calls on MLflow's user-admin client (``auth = get_app_client("basic-auth", ...)``) a page's Python
    blocks show that this MLflow's client does not have (its methods were renamed in MLflow 3)."""
    from mlflow.server.auth.client import AuthServiceClient

    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    called = {m for block in blocks if "get_app_client" in block for m in re.findall(r"\bauth\.(\w+)\(", block)}
    return [f"{where}: auth.{m}(...): MLflow's AuthServiceClient has no such method" for m in sorted(called)
            if not callable(getattr(AuthServiceClient, m, None))]


def test_the_user_admin_calls_the_docs_show_exist():
    pages = doc_pages()
    assert sum("get_app_client" in text for text in pages.values()) >= 2  # README and the users page
    problems = [p for where, text in pages.items() for p in auth_problems(text, where)]
    assert not problems, "\n".join(problems)
    old = '```python\nauth = get_app_client("basic-auth")\nauth.create_registered_model_permission(name="M")\n```'
    assert auth_problems(old, "old.md") == [
        "old.md: auth.create_registered_model_permission(...): MLflow's AuthServiceClient has no such method"]


def test_a_made_up_option_or_command_in_a_page_is_caught(tmp_path):
    page = tmp_path / "cli.md"
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    page.write_text(text + "\n```bash\n.venv/bin/python -m core.cli score models:/M@production in.csv out.csv "
                    "--topics 'a, b' --made-up-option 3\n```\n\nOr `python -m core.cli promote MODEL --approve-too` "
                    "and `python -m core.cli deploy MODEL`.\n", encoding="utf-8")
    problems = cli_problems(page.read_text(encoding="utf-8"), "cli.md")
    assert len(problems) == 3, problems
    assert "`python -m core.cli score` has no option --made-up-option" in problems[0]
    assert "`python -m core.cli promote` has no option --approve-too" in problems[1]
    assert "`python -m core.cli deploy`: no such command" in problems[2]
    assert not cli_problems(text, "cli.md")  # the page as it is


def test_the_cli_reference_has_every_command_and_option():
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### ([a-z-]+)\n(.*?)(?=^##|\Z)", text, re.MULTILINE | re.DOTALL))
    missing = []
    for command, options in cli_options().items():
        if command not in sections:
            missing.append(f"the command {command}")
            continue
        missing += [f"{command} {option}" for option in sorted(options - {"-h", "--help"})
                    if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", sections[command])]
    assert not missing, f"docs/reference/cli.md does not name: {', '.join(missing)}"


# -- grids and settings -----------------------------------------------------------------------------------


def test_the_grid_reference_names_every_key():
    import dataclasses

    from core import grid, holdout, hyperparameter_sets
    from core.data import Columns
    from core.topic_pairs import TopicPairs

    keys = {f.name for f in dataclasses.fields(grid.GridSpec)} | {"evalute_pretrained_model"}
    keys |= set(grid.SEED_ALIASES) | set(grid.SEED_ALIASES.values()) | set(grid.OWN_KEYS) | set(grid.DEFAULTS)
    keys |= set(grid.RESERVED) | set(grid.RENAMED) | set(grid._RANGES)
    keys |= {f.name for f in dataclasses.fields(TopicPairs)} | set(Columns.ROLES) | set(holdout.SUMMARY_KEYS)
    keys |= set(hyperparameter_sets.COLUMNS)
    text = (DOCS / "train" / "grids.md").read_text(encoding="utf-8")
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/train/grids.md does not name: {', '.join(missing)}"


def test_the_configuration_page_names_every_variable_the_code_reads():
    read = set()
    for path in (ROOT / "core").rglob("*.py"):
        if path.name != "faults.py":  # test seams only
            read |= set(re.findall(r"TUNEBOARD_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    text = (DOCS / "admin" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(v for v in read - INTERNAL_VARIABLES if f"`{v}`" not in text)
    assert len(read) > 20
    assert not missing, f"docs/admin/configuration.md does not name: {', '.join(missing)}"


# -- offline ----------------------------------------------------------------------------------------------

LOADS = re.compile(r"<(script|link|img|source|iframe|video|audio)\b[^>]*?\b(src|href)=\"([^\"]*)\"", re.IGNORECASE)


def test_the_built_pages_load_nothing_from_outside(site):
    """No script, style, font or picture of a built page comes from another machine."""
    outside = []
    for page in site.rglob("*.html"):
        for tag, _, url in LOADS.findall(page.read_text(encoding="utf-8")):
            if re.match(r"(https?:)?//", url):
                outside.append(f"{page.relative_to(site)}: <{tag}> {url}")
    for sheet in site.rglob("*.css"):
        outside += [f"{sheet.relative_to(site)}: {url}" for url in
                    re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", sheet.read_text(encoding="utf-8"))]
    assert not outside, "\n".join(outside)


@contextlib.contextmanager
def serving(folder: Path):
    """The built site on 127.0.0.1, on a free port, in a thread."""
    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):  # the test's output stays readable
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _local(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme in ("file", "data", "blob", "about") or parts.hostname in ("127.0.0.1", "localhost")


@pytest.mark.slow
def test_the_built_pages_open_in_chromium_with_no_request_leaving_the_machine(site):
    """Every page, served from 127.0.0.1, and the home page opened as a file: every request the browser makes is
    counted, and any leaving the machine is refused. Screenshots of the home page, the approver's guide and the
    command-line reference go to tests/screenshots/ (the contributors' page shows them)."""
    from playwright.sync_api import expect, sync_playwright

    outside: list[str] = []
    requests = 0

    def guard(route):
        nonlocal requests
        requests += 1
        if _local(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if p.name != "404.html")
    shots = {"index.html": "docs-home.png", "approve/index.html": "docs-approvers.png",
             "reference/cli.html": "docs-cli.png"}
    with serving(site) as address, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", guard)
            page = context.new_page()
            page.on("request", lambda r: None if _local(r.url) else outside.append(r.url))
            for name in pages:
                page.goto(f"{address}/{name}", wait_until="load")
                expect(page.locator("article h1").first).to_be_visible()
                if name in shots:
                    page.screenshot(path=str(SHOTS / shots[name]))
            # the approver's guide is two clicks from home: its link on the home page, then a task on its page
            page.goto(f"{address}/index.html")
            page.locator("article").get_by_role("link", name="Guide for the people who approve").click()
            page.locator("article").get_by_role("link", name="Roll back a model that turned out worse").click()
            expect(page.get_by_role("heading", name="Roll back")).to_be_in_viewport()
            # opened as a file, with no server: the search works too
            page.goto((site / "index.html").as_uri())
            page.get_by_role("textbox", name="Search").fill("rollback")
            expect(page.locator(".md-search-result__item").first).to_be_visible()
        finally:
            browser.close()
    assert requests > len(pages)  # every request went through the guard
    assert not outside, f"requests leaving the machine: {sorted(set(outside))}"
