"""Whole calls (the scoring parts): a scoring job reads every token of a long text, window by window, says how it
read them, and shows the window that decided as the evidence.

The session's store (tests/shared_store.py) holds a short fine-tune of the demo BERT, registered as Score_Topic
and in production: an NLI model whose window is 128 tokens. A call here is ~60 turns, over 1,000 of its tokens.
The tiny model learns nothing worth asserting on, so nothing here says which topic or label wins: the tests check
shapes, that the evidence is the window that decided (recomputed through ``core.scoring.topics`` and
``core.models.windows``), and what the run records.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import point_at
from shared_store import MODEL

if TYPE_CHECKING:
    from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store

PRODUCTION = f"models:/{MODEL}@production"
TOPICS = ("fees", "account access", "refund")
SHORT = "Customer: I can't log in to my account.\nAgent: Let me reset your password."


def long_call(turns: int = 60, opening: str = "") -> str:
    """A call of ``turns`` alternating turns, far longer than the demo model's 128-token window."""
    said = [f"Agent: Thanks for holding, this is turn {i}. How can I help you with your account today?" if i % 2 == 0
            else f"Customer: I was charged a fee of {i + 10} euros last month and I want that money back, please."
            for i in range(turns)]
    return opening + "\n".join(said)


@pytest.fixture
def scoring(private_store, monkeypatch) -> Settings:
    """The module's copy of the session's store, with Score_Topic version 1 in production."""
    return point_at(monkeypatch, private_store)


def calls_file(folder: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("call_id", "transcript")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "calls.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def finished(settings: Settings, run_id: str):
    from core import runs

    return runs.client(settings.tracking_uri).get_run(run_id)


def test_a_long_call_is_read_whole_and_each_tagged_topic_shows_the_window_that_decided(scoring, tmp_path):
    import numpy as np
    import pandas as pd

    from core.models import sources as models
    from core.models.windows import Reading
    from core.scoring import topics
    from core.scoring.job import TRUNCATED_TAG, ScoreSpec, score

    calls = [long_call(), SHORT]
    source = calls_file(tmp_path / "in", [("c1", calls[0]), ("c2", calls[1])])
    model, tokenizer, _ = models.load(PRODUCTION)
    expected = topics.read_topics(model, tokenizer, calls, list(TOPICS), reading=Reading(256))
    # a threshold in the widest gap between the scores: some topics tagged, some not, whatever the model says
    ordered = np.sort(expected.scores.ravel())
    gap = int(np.argmax(np.diff(ordered)))
    threshold = float(ordered[gap] + ordered[gap + 1]) / 2
    seen: list[tuple[int, int]] = []
    out = tmp_path / "tagged.parquet"
    result = score(ScoreSpec(PRODUCTION, str(source), mode="topics", topics=TOPICS, threshold=threshold,
                             output_path=str(out)), on_progress=lambda done, total: seen.append((done, total)))
    assert result.status == "FINISHED", result.error
    assert seen and seen[-1] == (2, 2)  # progress counts rows (calls), not windows or pairs

    frame = pd.read_parquet(out)
    evidence = [f"evidence: {t}" for t in TOPICS]
    assert list(frame.columns) == ["call_id", "transcript", *[f"score_{t}" for t in TOPICS], "topics", *evidence]
    assert np.allclose(frame[[f"score_{t}" for t in TOPICS]].to_numpy(), expected.scores, atol=1e-5)
    tagged = expected.scores >= threshold
    assert tagged.any() and not tagged.all()
    for i, call in enumerate(calls):
        for j, column in enumerate(evidence):
            shown = frame[column][i]
            if tagged[i, j]:
                assert shown == expected.evidence(i, j).text and shown in call  # the deciding window, a slice
            else:
                assert shown == ""
    assert len(expected.evidence(0, 0).text) < len(calls[0])  # the long call's evidence is a part of it

    run = finished(scoring, result.run_id)
    metrics, params = run.data.metrics, run.data.params
    assert metrics["windows_per_text_max"] > 1 and metrics["text_tokens_max"] > 128
    assert metrics["tokens_cut"] == 0 and metrics["texts_cut"] == 0
    assert metrics["windows"] == len(expected.split.windows)
    assert params["windows.aggregation"] == "max" and params["truncate"] == "False"
    assert int(params["windows.budget_tokens"]) == expected.split.budget < 128
    assert int(params["windows.overlap"]) == expected.split.overlap > 0
    assert TRUNCATED_TAG not in run.data.tags


def test_truncating_reads_the_first_window_only_and_the_run_says_what_it_did_not_read(scoring, tmp_path):
    import pandas as pd

    from core.scoring.job import TRUNCATED_TAG, ScoreSpec, score

    calls = [long_call(), SHORT]
    source = calls_file(tmp_path / "in", [("c1", calls[0]), ("c2", calls[1])])
    said: list[str] = []
    out = tmp_path / "tagged.csv"
    result = score(ScoreSpec(PRODUCTION, str(source), mode="topics", topics=TOPICS, threshold=0.0, truncate=True,
                             window_overlap=0, output_path=str(out)), on_status=said.append)
    assert result.status == "FINISHED", result.error

    run = finished(scoring, result.run_id)
    metrics = run.data.metrics
    assert metrics["tokens_cut"] > 0 and metrics["texts_cut"] == 1 and metrics["windows_per_text_max"] == 1
    note = run.data.tags[TRUNCATED_TAG]
    assert note == f"read the first window only: {int(metrics['tokens_cut']):,} tokens of 1 text not read"
    assert note in said  # said on the job's status too
    assert run.data.params["truncate"] == "True" and run.data.params["window_overlap"] == "0"
    frame = pd.read_csv(out, keep_default_na=False)
    for topic in TOPICS:  # every topic is tagged at 0.0: each shows the one window read, the call's start
        first = frame[f"evidence: {topic}"][0]
        assert first and calls[0].startswith(first) and len(first) < len(calls[0])
        assert frame[f"evidence: {topic}"][1] == SHORT


@pytest.mark.parametrize("pairs", [False, True], ids=["texts", "pairs"])
def test_classify_mode_reads_long_texts_whole_one_row_per_text(scoring, tmp_path, pairs):
    import numpy as np
    import pandas as pd

    from core.models import sources as models
    from core.models import windows
    from core.models.windows import Reading
    from core.scoring.job import ScoreSpec, score

    texts = [long_call(), SHORT, long_call(40)]
    hypothesis = "This call is about fees."
    if pairs:
        source = calls_file(tmp_path / "in", [(f"c{i}", t, hypothesis) for i, t in enumerate(texts)],
                            ("call_id", "premise", "hypothesis"))
    else:
        source = calls_file(tmp_path / "in", [(f"c{i}", t) for i, t in enumerate(texts)], ("call_id", "text"))
    out = tmp_path / "scored.jsonl"
    result = score(ScoreSpec(PRODUCTION, str(source), output_path=str(out), batch_size=8))
    assert result.status == "FINISHED", result.error

    frame = pd.read_json(out, lines=True, dtype=False)
    assert len(frame) == 3 and list(frame.columns)[-4:] == ["predicted_label", "score_entailment",
                                                             "score_not_entailment", "evidence"]
    probabilities = frame[["score_entailment", "score_not_entailment"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    model, tokenizer, id2label = models.load(PRODUCTION)
    entailment = next(i for i, label in id2label.items() if label == "entailment") if pairs else None
    expected = windows.predict(model, tokenizer, texts, [hypothesis] * 3 if pairs else None, reading=Reading(256),
                               batch_size=8, entailment=entailment)
    assert np.allclose(probabilities, expected.probabilities, atol=1e-5)
    assert expected.split.counts[0] > 1 and expected.split.counts[1] == 1
    for i, text in enumerate(texts):  # a long text shows its deciding window; a short one nothing more
        shown = frame["evidence"][i]
        assert shown == (expected.evidence(i).text if expected.split.counts[i] > 1 else "")
        assert shown in text
    run = finished(scoring, result.run_id)
    assert run.data.params["windows.aggregation"] == ("max" if pairs else "mean")
    assert run.data.metrics["windows_per_text_max"] > 1 and run.data.metrics["tokens_cut"] == 0


def test_evidence_a_spreadsheet_would_run_is_neutralised_in_every_format(tmp_path):
    import numpy as np
    import pandas as pd

    from core.scoring import files

    table = files.Table("calls.csv", pd.DataFrame({"call_id": ["c1", "c2"], "transcript": ["=1+1 hi", "fine"]}),
                        ("line 2", "line 3"), "csv")
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    frame = files.tagged(table, scores, ["fees", "refund"], 0.5, evidence=[["=1+1 hi", "x"], ["y", "@fine"]])
    assert list(frame["evidence: fees"]) == ["=1+1 hi", ""] and list(frame["evidence: refund"]) == ["", "@fine"]
    for name in ("out.csv", "out.tsv", "out.jsonl", "out.parquet"):
        files.write(frame, tmp_path / name)
        back = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else \
            pd.read_json(tmp_path / name, lines=True, dtype=False) if name.endswith("jsonl") else \
            pd.read_csv(tmp_path / name, sep="\t" if name.endswith("tsv") else ",", keep_default_na=False)
        assert list(back["evidence: fees"]) == ["'=1+1 hi", ""], name
        assert list(back["evidence: refund"]) == ["", "'@fine"], name
    plain = files.classified(table, scores, {0: "a", 1: "b"}, evidence=["-3+4", ""])
    files.write(plain, tmp_path / "plain.csv")
    assert list(pd.read_csv(tmp_path / "plain.csv", keep_default_na=False)["evidence"]) == ["'-3+4", ""]


def test_the_windows_settings_are_checked_and_survive_json_and_older_specs_still_load():
    from core.errors import ScoreError
    from core.jobs import job_spec
    from core.scoring.job import ScoreSpec

    spec = ScoreSpec(PRODUCTION, "calls.csv", window_overlap=16, truncate=True)
    assert job_spec(spec.to_json()) == spec and ScoreSpec.from_dict(spec.to_dict()) == spec
    assert spec.reading.overlap == 16 and spec.reading.truncate and spec.reading.max_length == 256
    assert spec.params()["window_overlap"] == 16 and spec.params()["truncate"] is True
    older = {k: v for k, v in ScoreSpec(PRODUCTION, "calls.csv").to_dict().items()
             if k not in ("window_overlap", "truncate")}
    loaded = ScoreSpec.from_dict(older)
    assert loaded.window_overlap is None and loaded.truncate is False and "window_overlap" not in loaded.params()
    for kwargs, key in (({"window_overlap": -1}, "window_overlap"), ({"window_overlap": True}, "window_overlap"),
                        ({"window_overlap": 2.5}, "window_overlap"), ({"truncate": "yes"}, "truncate"),
                        ({"max_length": 4}, "max_length")):
        with pytest.raises(ScoreError) as refused:
            ScoreSpec(PRODUCTION, "calls.csv", **kwargs)
        assert refused.value.key == key


def test_the_page_warns_when_a_job_truncated_and_shows_the_evidence(scoring, tmp_path):
    from test_pages import app, texts

    from core.scoring.job import ScoreSpec, score

    source = calls_file(tmp_path / "in", [("c1", long_call()), ("c2", SHORT)])
    result = score(ScoreSpec(PRODUCTION, str(source), mode="topics", topics=TOPICS, threshold=0.0, truncate=True))
    assert result.status == "FINISHED", result.error
    at = app("pages/score.py")
    at.session_state["s_job"] = result.run_id
    at.run()
    assert not at.exception, at.exception
    warning = next(w.value for w in at.warning if "Not every word was read" in w.value)
    assert "read the first window only" in warning and "of 1 text not read" in warning
    shown = at.dataframe[-1].value
    assert list(shown.columns)[-3:] == [f"evidence: {t}" for t in TOPICS]
    assert shown["evidence: fees"][1] == SHORT
    assert "The **evidence** columns hold the part of each text that decided" in texts(at)


def test_registry_try_it_shows_each_tagged_topics_window_and_how_many_windows_were_read(scoring):
    from test_pages import app, texts

    from core.scoring.job import read_call, snippet

    call = long_call()
    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value(MODEL).run()
    at.text_area(key="r_topic_text").set_value(call)
    at.text_area(key="r_topic_list").set_value(", ".join(TOPICS))
    at.slider(key="r_topic_threshold").set_value(0.0)
    at.button(key="r_tag").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    read = read_call(PRODUCTION, call, list(TOPICS))
    assert read.windows > 1 and list(read.frame.index) == list(TOPICS)
    body = texts(at)
    assert f"The call was read whole, in {read.windows} windows of at most {read.budget_tokens} tokens" in body
    lines = [m.value for m in at.markdown if m.value.startswith("**") and '"' in m.value]
    assert len(lines) == len(TOPICS)  # every topic is tagged at 0.0: one line each, the likeliest first
    for line, topic in zip(lines, read.frame["score"].sort_values(ascending=False, kind="stable").index,
                           strict=True):
        shown = snippet(read.frame.at[topic, "evidence"])  # the call has no Markdown marks to escape
        assert line == f'**{topic}** {read.frame.at[topic, "score"]:.2f}: "{shown}"'
        assert shown in " ".join(call.split()) or shown.endswith(" ...")
    assert snippet("word " * 100) == ("word " * 60).strip() + " ..." and snippet(SHORT) == " ".join(SHORT.split())


def test_the_cli_reads_whole_texts_and_says_when_truncate_cut_them(scoring, tmp_path, capsys):
    from core.cli import main

    source = calls_file(tmp_path / "in", [("c1", long_call()), ("c2", SHORT)])
    out = tmp_path / "tagged.csv"
    assert main(["score", PRODUCTION, str(source), str(out), "--topics", ", ".join(TOPICS), "--max-length", "96",
                 "--window-overlap", "8"]) == 0
    said = capsys.readouterr().out
    assert "Wrote" in said and "Note:" not in said  # every token read: nothing to say
    assert main(["score", PRODUCTION, str(source), str(out), "--topics", ", ".join(TOPICS), "--truncate"]) == 0
    said = capsys.readouterr().out
    assert "Note: read the first window only:" in said and "tokens of 1 text not read." in said
