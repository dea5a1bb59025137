"""Promotion requests and approvals (issue 20): request, approve, reject, withdraw; refusals under
``TUNEBOARD_APPROVAL=required``; stale and racing approvals; the decision record's page.

Real stores only: the module's copy of the session's shared store (tests/shared_store.py), whose ``Small``
experiment holds a baseline and three fine-tunes of the demo BERT with models and predictions tables. Each test
registers those runs under a model name of its own, so the tests do not see each other's registry.
"""

from __future__ import annotations

import threading
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import pytest
from conftest import point_at

from core.errors import ApprovalError
from core.registry.model_transition import ModelTransition

if TYPE_CHECKING:
    from shared_store import SharedStore

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store


@pytest.fixture
def small(private_store: SharedStore, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list]:
    """(the small experiment's name, its three fine-tunes oldest first) in the module's copy of the store."""
    point_at(monkeypatch, private_store)
    monkeypatch.delenv("TUNEBOARD_APPROVAL", raising=False)
    from core import runs as runs_mod

    client = runs_mod.client()
    return private_store.small, [client.get_run(r) for r in private_store.small_tunes]


def registered(name: str, runs: list) -> ModelTransition:
    transition = ModelTransition(name)
    for run in runs:
        transition.register_run(run)
    return transition


def in_production(transition: ModelTransition) -> list[str]:
    return [str(v.version) for v in transition.versions() if v.current_stage == "Production"]


class Page(HTMLParser):
    """The text of each element with an id (and of the whole page), and every tag met."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[str] = []
        self.by_id: dict[str, str] = {}
        self.text: list[str] = []
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("br", "meta"):
            self._open.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        if tag not in ("br", "meta") and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        for found in self._open:
            if found:
                self.by_id[found] = self.by_id.get(found, "") + " " + data

    def words(self, element: str) -> str:
        return " ".join(self.by_id.get(element, "").split())


def test_request_then_approve_by_another_puts_it_into_production_with_a_record(small, monkeypatch):
    experiment, _ = small
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "required")
    transition = ModelTransition("Approved_Model")

    req = transition.request(experiment_name=experiment, metric="accuracy", reason="better on billing calls",
                             user="alice")
    assert req.pending and req.replaces is None and req.user == "alice" and req.reason == "better on billing calls"
    assert transition.current("Production") is None  # production does not change
    assert [r.id for r in transition.requests()] == [req.id]
    assert req.candidate.startswith("run ") and f"of {experiment} by accuracy" in req.candidate

    # nothing in production: the comparison is with the candidate's pretrained baseline, said once
    from core.registry import approvals

    words = approvals.comparison(transition, req).words()
    assert words[0].startswith("Nothing is in production yet, so the candidate is compared with its pretrained "
                               "baseline (run ")
    assert not any("nothing in production to compare with" in w for w in words)
    assert any(w.startswith("Accuracy ") and "for its pretrained baseline" in w for w in words)

    # the requester may not approve it; nor may anyone promote directly
    with pytest.raises(ApprovalError, match="alice requested this promotion"):
        transition.approve(req.id, user="alice")
    with pytest.raises(ApprovalError, match="need an approved request"):
        transition.promote(req.version, "Production", user="alice")
    with pytest.raises(ApprovalError, match="need an approved request"):
        transition.transition_model("Production", experiment, "accuracy", user="alice")
    with pytest.raises(ApprovalError, match="need an approved request"):
        transition.promote(req.version, "Staging", user="alice")  # a move by hand too
    assert transition.current("Production") is None and in_production(transition) == []
    assert len(transition.versions()) == 1 and transition.audit_trail() == []

    done = transition.approve(req.id, reason="checked the billing examples", user="bob")
    assert done.status == "approved" and done.decided_by == "bob" and done.record
    assert str(transition.current("Production").version) == req.version == in_production(transition)[0]
    (event,) = transition.audit_trail()
    assert (event.user, event.requested_by, event.request, event.action) == ("bob", "alice", req.id, "promote")
    assert "bob approved version 1 to production, requested by alice" in event.as_text
    assert event.record == done.record
    version = transition.current("Production")
    assert version.tags["requested_by"] == "alice" and version.tags["promoted_by"] == "bob"
    assert version.tags["decision_record"] == done.record

    page = Page(transition.decision_record(req.version))
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    people = page.words("people")
    assert "Requested by alice" in people and "better on billing calls" in people
    assert "Approved by bob" in people and "checked the billing examples" in people
    assert "version 1 of Approved_Model" in page.words("summary") and "nothing was before" in page.words("summary")

    # approved once: a second approval has nothing to do
    with pytest.raises(ApprovalError, match="already approved by bob"):
        transition.approve(req.id, user="carol")


def test_reject_and_withdraw_leave_production_and_say_who_and_why(small):
    _, tunes = small
    transition = registered("Rejected_Model", tunes)
    transition.promote(1, "Production", user="tester")
    first = transition.request(2, reason="try it", user="alice")
    assert first.replaces == "1"
    with pytest.raises(ApprovalError, match="already asks for version 2"):
        transition.request(2, user="dave")
    with pytest.raises(ApprovalError, match="only alice, who made request"):
        transition.withdraw(first.id, user="bob")
    gone = transition.withdraw(first.id, user="alice")
    assert gone.status == "withdrawn"
    with pytest.raises(ApprovalError, match="already withdrawn by alice"):
        transition.approve(first.id, user="bob")

    second = transition.request(3, reason="again", user="alice")
    with pytest.raises(ApprovalError, match="say why"):
        transition.reject(second.id, reason=" ", user="bob")
    no = transition.reject(reason="breaks too many account questions", user="bob")  # the only pending one
    assert (no.id, no.status, no.decided_by, no.decision_reason) == (second.id, "rejected", "bob",
                                                                     "breaks too many account questions")
    assert str(transition.current("Production").version) == "1" and in_production(transition) == ["1"]
    assert [e.version for e in transition.audit_trail()] == ["1"]
    assert [r.status for r in transition.requests()] == ["withdrawn", "rejected"]


def test_a_stale_approval_is_refused_saying_what_changed(small):
    _, tunes = small
    transition = registered("Stale_Model", tunes)
    transition.promote(1, "Production", user="tester")
    moved = transition.request(2, user="alice")
    transition.promote(3, "Production", user="tester")  # production changes under the request
    with pytest.raises(ApprovalError, match="held version 1 then and holds version 3 .*now"):
        transition.approve(moved.id, user="bob")
    assert str(transition.current("Production").version) == "3"
    assert transition.requests()[0].pending  # still waiting: its requester withdraws it, or someone rejects it
    transition.withdraw(moved.id, user="alice")

    archived = transition.request(2, user="alice")
    transition.client.transition_model_version_stage("Stale_Model", "2", "Archived")
    with pytest.raises(ApprovalError, match="version 2 .* was archived since the request was made"):
        transition.approve(archived.id, user="bob")
    transition.reject(archived.id, reason="archived meanwhile", user="bob")
    transition.client.transition_model_version_stage("Stale_Model", "2", "None")
    deleted = transition.request(2, user="alice")
    transition.client.delete_model_version("Stale_Model", "2")
    with pytest.raises(ApprovalError, match="version 2 .* was deleted since the request was made"):
        transition.approve(deleted.id, user="bob")
    transition.reject(deleted.id, reason="its version was deleted", user="bob")
    assert str(transition.current("Production").version) == "3" and in_production(transition) == ["3"]


def test_two_racing_approvals_leave_one_production_and_one_overtaken_event(small):
    _, tunes = small
    transition = registered("Race_Model", tunes)
    transition.promote(1, "Production", user="tester")
    a, b = transition.request(2, user="alice"), transition.request(3, user="alice")
    # both approvals pass their checks before either moves the alias, and both move it before either settles
    gates = {"checked": threading.Barrier(2, timeout=60), "alias set": threading.Barrier(2, timeout=60)}

    def hold(stage, before=None):
        if stage in gates:
            gates[stage].wait()

    results: dict[str, object] = {}

    def approve(req, who):
        try:
            results[who] = ModelTransition("Race_Model", checkpoint=hold).approve(req.id, user=who)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[who] = exc

    threads = [threading.Thread(target=approve, args=(req, who)) for req, who in ((a, "bob"), (b, "carol"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    holder = str(transition.current("Production").version)
    assert in_production(transition) == [holder] and holder in ("2", "3")
    approvals = [e for e in transition.audit_trail() if e.request]
    assert len(approvals) == 2
    overtaken = [e for e in approvals if e.note.startswith("overtaken")]
    assert len(overtaken) == 1 and overtaken[0].version != holder
    assert transition.problems() == []
    notes = {r.id: r.note for r in transition.requests()}
    assert sum(n.startswith("overtaken") for n in notes.values()) == 1


def test_a_direct_promotion_leaves_a_decision_record_with_its_numbers_and_no_texts(small, private_store):
    from core import runs as runs_mod

    # the Examples experiment's two fine-tunes learn the demo task differently: they disagree on some examples
    transition = registered("Record_Model", [runs_mod.client().get_run(r) for r in private_store.tunes])
    transition.promote(1, "Production", user="tester")
    transition.promote(2, "Production", reason="direct", user="erin")
    version = transition._version(2)
    event = transition.audit_trail()[-1]
    assert event.record and version.tags["decision_record"] == event.record and "decision record" in event.as_text

    from core.examples.table import read_predictions
    from core.registry import decision_record

    compared = decision_record.compare(transition.client, "Record_Model", version, transition._version(1),
                                       lambda run_id: read_predictions(transition.client, run_id))
    page = Page(transition.decision_record(2))
    assert "Promoted by erin" in page.words("people") and "direct" in page.words("people")
    assert "replacing version 1" in page.words("summary")
    changes = page.words("changes")
    assert f"it fixes {compared.fixes} and breaks {compared.breaks}" in changes
    assert f"compared one by one: {compared.shared}" in changes
    metrics = page.words("metrics")
    for row in compared.metrics:
        assert f"{row['metric']} {row['candidate']:.4f} {row['other']:.4f} {row['change']:+.4f}" in metrics
    labels = page.words("labels")
    for row in compared.by_label:
        assert f"{row['label']} {row['support']} {row['right before']} {row['right after']}" in labels
    assert "no-texts" in page.by_id
    texts = [e["text"] for kind in ("fixes", "breaks") for e in compared.examples[kind]]
    assert texts, "the two fine-tunes should differ on some examples"
    assert not any(" ".join(t.split()) in " ".join(page.text) for t in texts)

    asked = Page(transition.decision_record(2, with_texts=True))
    assert "no-texts" not in asked.by_id
    assert all(" ".join(t.split()) in " ".join(" ".join(asked.text).split()) for t in texts)


def test_a_transcript_holding_a_script_stays_text_in_the_record():
    from core.registry import decision_record

    hostile = '<script>alert("x")</script> & <b>bold</b>'
    made = decision_record.record(model_name="M<i>", alias="production", version=2, candidate_label="run r",
                                  replaced="1", comparison=decision_record.Comparison("version 1 in production"),
                                  decided_by="bob", reason="<img src=x>")

    def shown(text: str) -> str:
        return decision_record.page(made, {"fixes": [{"text": text, "true_label": "billing",
                                                      "production said": "other", "candidate says": "billing"}],
                                           "breaks": []})

    html = shown(hostile)
    page = Page(html)
    assert page.tags == Page(shown("a plain call")).tags  # no element came from the texts
    assert "script" not in page.tags and "img" not in page.tags
    assert hostile in "".join(page.text) and "<img src=x>" in "".join(page.text)
    assert "&lt;script&gt;" in html


def test_request_on_the_registry_page_then_approve_on_home_as_another(small, monkeypatch):
    from test_pages import app, texts

    experiment, _ = small
    monkeypatch.setenv("TUNEBOARD_APPROVAL", "required")
    monkeypatch.setenv("TUNEBOARD_USER", "alice")
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("+ a new name").run()
    at.text_input(key="r_new_name").set_value("Page_Model").run()
    at.selectbox(key="r_experiment").set_value(experiment).run()
    keys = [b.key for b in at.button]
    assert "r_promote_best" not in keys and "r_request" in keys  # approval required: requests only
    assert "need someone else's approval" in texts(at)
    at.button(key="r_request").click().run()
    at.text_input(key="r_request_reason").set_value("fewer account-access mistakes").run()
    at.button(key="r_request_send").click().run()
    assert not at.exception, at.exception
    assert any("It waits on Home for someone's approval; production did not change." in s.value
               for s in at.success), texts(at)
    (req,) = ModelTransition("Page_Model").requests()

    home = app()
    body = texts(home)
    assert "Waiting for your approval" in [h.value for h in home.subheader]
    assert f"alice asks to put **version {req.version}**" in body and "fewer account-access mistakes" in body
    assert "compared with its pretrained baseline" in body
    assert "You asked for it: someone else approves it." in body
    assert f"h_approve_{req.id}" not in [b.key for b in home.button]

    monkeypatch.setenv("TUNEBOARD_USER", "bob")
    home = app()
    home.text_input(key=f"h_reason_{req.id}").set_value("looks right").run()
    home.button(key=f"h_approve_{req.id}").click().run()
    assert not home.exception, home.exception
    assert any(f"Approved: version {req.version} of Page_Model is in production" in s.value
               for s in home.success), texts(home)
    assert f"h_approve_{req.id}" not in [b.key for b in home.button]  # no longer waiting
    (event,) = ModelTransition("Page_Model").audit_trail()
    assert (event.user, event.requested_by) == ("bob", "alice")

    page = app("pages/registry.py")
    page.selectbox(key="r_model").set_value("Page_Model").run()
    assert not page.exception, page.exception
    versions = page.dataframe[0].value
    assert versions["requested by"].tolist() == ["alice"] and versions["decision record"].tolist() == [event.record]
    assert "r_record" in [b.key for b in page.get("download_button")]


def test_the_command_line_requests_approves_and_writes_the_record(small, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, child_env

    experiment, _ = small
    home = ModelTransition("Cli_Model").client.tracking_uri.removeprefix("sqlite:///").rsplit("/", 1)[0]

    def cli(user: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False,
                              env=child_env(TUNEBOARD_HOME=home, TUNEBOARD_USER=user, TUNEBOARD_APPROVAL="required"))

    asked = cli("alice", "request", "Cli_Model", "--experiment", experiment, "--metric", "accuracy", "--reason",
                "better on the small set")
    assert asked.returncode == 0, asked.stderr
    assert "Requested: request " in asked.stdout and "Production did not change." in asked.stdout
    assert "Nothing is in production yet, so the candidate is compared with its pretrained baseline" in asked.stdout
    (req,) = ModelTransition("Cli_Model").requests()
    refused = cli("alice", "approve", "Cli_Model", "--reason", "mine")
    assert refused.returncode == 2 and "alice requested this promotion" in refused.stderr
    direct = cli("alice", "promote", "Cli_Model", "--version", req.version)
    assert direct.returncode == 2 and "need an approved request" in direct.stderr
    listed = cli("bob", "requests", "Cli_Model")
    assert f"request {req.id}: alice asked" in listed.stdout
    done = cli("bob", "approve", "Cli_Model", "--request", req.id, "--reason", "ok")
    assert done.returncode == 0, done.stderr
    assert f"Approved: request {req.id}" in done.stdout and "is now in production" in done.stdout
    assert "nothing was there before" in done.stdout and "version none" not in done.stdout
    assert f"to put version {req.version} (run " in done.stdout  # the candidate named once, with its run
    history = cli("bob", "history", "Cli_Model").stdout
    assert f"bob approved version {req.version} to production, requested by alice" in history
    out = tmp_path / "record.html"
    wrote = cli("bob", "record", "Cli_Model", "--version", req.version, str(out))
    assert wrote.returncode == 0 and "no example texts" in wrote.stdout
    assert "Requested by" in out.read_text(encoding="utf-8")
