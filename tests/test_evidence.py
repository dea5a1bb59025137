"""The window that decided a long call's topics, carried to where people read it: the Examples tab, a
promotion's fixes and breaks, and the decision record."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.examples import analysis, table


def _calls(tagged: list[list[str]]) -> pd.DataFrame:
    texts = ["Agent: hello.\nCustomer: I want that 40 euros back.", "Agent: hi.\nCustomer: my fees are high."]
    topics = ["refund", "fees"]
    scores = np.array([[0.9 if t in tagged[i] else 0.1 for t in topics] for i in range(2)])
    evidence = [["Customer: I want that 40 euros back.", "Agent: hello."],
                ["Agent: hi.", "Customer: my fees are high."]]
    return table.build_call_table(["line 2", "line 3"], texts, [["refund"], ["fees"]], scores, topics, 0.5, evidence)


def test_a_tagged_topic_keeps_its_window_and_an_untagged_one_does_not():
    frame = _calls([["refund"], []])
    assert frame.loc[0, "evidence: refund"] == "Customer: I want that 40 euros back."
    assert frame.loc[0, "evidence: fees"] == ""
    assert analysis.evidence_lines(frame.loc[0]) == ['refund 0.90: "Customer: I want that 40 euros back."']
    # a call with no topic tagged keeps its likeliest topic's window (refund, the first of two equal scores)
    assert analysis.evidence_lines(frame.loc[1]) == ['refund 0.10 (not tagged): "Agent: hi."']
    assert frame.loc[1, "evidence: fees"] == ""
    short = table.build_call_table(["line 2"], ["a call"], [["fees"]], np.array([[0.9]]), ["fees"], 0.5)
    assert not [c for c in short.columns if c.startswith("evidence")]  # short calls: the text is the window


def test_fixes_and_the_decision_record_show_the_candidates_evidence():
    from core.registry.decision_record import _examples

    candidate, current = _calls([["refund"], ["fees"]]), _calls([[], []])
    found = analysis.changes(candidate, current)
    assert len(found.fixes) == 2 and not len(found.breaks)
    assert analysis.evidence_lines(found.fixes.iloc[1]) == ['fees 0.90: "Customer: my fees are high."']
    kept = _examples(found.fixes)
    assert kept[0]["evidence"] == ['refund 0.90: "Customer: I want that 40 euros back."']
    assert kept[0]["candidate says"] == "refund" and kept[0]["production said"] == table.NO_TOPIC
