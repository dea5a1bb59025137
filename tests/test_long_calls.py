"""A topic said only in a call's last window is tagged by every path that reads calls, with a model that really
recognises it.

The model is the demo BERT taught to recognise one word (``marker_model``, tests/conftest.py): for "This call is about
rollover." it entails when "rollover" is anywhere in a window of call turns, and not otherwise; it never entails
"This call is about other topic.". Each call here is about 600 tokens of such turns, five or six 128-token windows,
and says the word only in its last turn; its twin is the same call with another word there. Tagging, a baseline
run's evaluation, scoring a file and the served model must each find the word in the last window, name that window
as the evidence, and leave the twin untagged; reading the first window only (``truncate``) must miss it.
No mocks: real windows, a real model, real MLflow stores.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import MARKER, marker_turns, use_store

from core.models import windows
from core.models.windows import Reading

# the marker model trains for about 20 s, once per session: one worker runs the module
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("marker_model")]

OTHER = "other topic"
TOPICS = [MARKER, OTHER]
TEMPLATE = "This call is about {}."
MAX_LENGTH = 128
SEEDS = (11, 12, 13)  # one long call and its twin each


def long_call(seed: int, tokenizer, *, marker: bool) -> str:
    """About 600 tokens of call turns; the last, the customer's, says MARKER (or, in the twin, another word)."""
    last = f"Customer: please start the {MARKER if marker else 'form'} today."
    return "\n".join([*marker_turns(seed, tokenizer, 600), last])


def last_windows(calls: list[str], tokenizer) -> tuple[list[windows.Window], windows.Split]:
    """Each call's last window as evaluation cuts them (the budget of the longest hypothesis), and the split."""
    room = windows.budget(tokenizer, MAX_LENGTH, [TEMPLATE.format(t) for t in TOPICS])
    split = windows.split(calls, tokenizer, room, overlap=Reading(MAX_LENGTH).overlap_for(room))
    last = {int(owner): window for owner, window in zip(split.owner, split.windows, strict=True)}
    return [last[i] for i in range(len(calls))], split


@pytest.fixture(scope="module")
def loaded(marker_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(marker_model).eval()
    return model, AutoTokenizer.from_pretrained(marker_model)


@pytest.fixture(scope="module")
def calls(loaded) -> list[tuple[str, str, str]]:
    """(call_id, transcript, topic): each long call with the marker in its last turn, then its twin."""
    _, tokenizer = loaded
    rows = []
    for seed in SEEDS:
        rows.append((f"m{seed}", long_call(seed, tokenizer, marker=True), MARKER))
        rows.append((f"o{seed}", long_call(seed, tokenizer, marker=False), OTHER))
    return rows


def test_the_calls_are_long_and_only_their_last_window_says_the_word(loaded, calls):
    _, tokenizer = loaded
    texts = [text for _, text, _ in calls]
    assert all(580 <= n <= 620 for n in windows.token_counts(tokenizer, texts))
    last, split = last_windows(texts, tokenizer)
    assert split.counts.min() >= 5  # five or more windows of at most 116 tokens
    for i, (_, text, topic) in enumerate(calls):
        said = [MARKER in w.text for w, owner in zip(split.windows, split.owner, strict=True) if owner == i]
        assert said == [False] * (len(said) - 1) + [topic == MARKER]
        assert text.endswith(last[i].text) and len(last[i].text) < len(text) / 3


def test_tagging_finds_the_word_in_the_last_window_and_truncation_misses_it(loaded, calls):
    from core.scoring.topics import read_topics

    model, tokenizer = loaded
    call, twin = calls[0][1], calls[1][1]
    read = read_topics(model, tokenizer, [call, twin], TOPICS, TEMPLATE, reading=Reading(MAX_LENGTH))
    assert read.scores[0, 0] > 0.9, read.scores  # the call is about the marker...
    evidence = read.evidence(0, 0)
    windows_of_call = [w for w, owner in zip(read.split.windows, read.split.owner, strict=True) if owner == 0]
    assert len(windows_of_call) >= 5 and evidence == windows_of_call[-1]  # ...decided by its last window
    assert MARKER in evidence.text and call.endswith(evidence.text)
    assert read.scores[1, 0] < 0.1  # the twin is not, nor is either about the other topic
    assert read.scores[:, 1].max() < 0.1

    cut = read_topics(model, tokenizer, [call], TOPICS, TEMPLATE, reading=Reading(MAX_LENGTH, truncate=True))
    assert cut.scores[0, 0] < 0.5, "reading the first window only should miss the last turn"
    assert len(cut.split.windows) == 1 and cut.split.cut[0] > 400 and MARKER not in cut.evidence(0, 0).text


def test_a_baseline_run_tags_each_call_by_its_last_window(marker_model, loaded, calls, store, tmp_path):
    from core import runs as runs_mod
    from core.examples import read_predictions
    from core.examples.table import EVIDENCE_PREFIX, SCORE_PREFIX
    from core.grid import GridSpec
    from core.training.run import execute

    _, tokenizer = loaded
    validation = _calls_file(tmp_path / "long_calls.csv", calls)
    grid = GridSpec(base_name="Long", data_src="Calls", dataset_versions=("long_calls.csv",),
                    hyperparameters=({"n_epochs": 1},), base_model_versions=(str(marker_model),),
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
                    validation_file=str(validation), evaluate_pretrained_model=True, user_id="tester",
                    columns={"text": "transcript", "label": "topic"}, topic_pairs=True)
    baseline = grid.expand()[0]
    assert baseline.kind == "baseline" and baseline.hyperparameters["max_length"] == MAX_LENGTH
    result = execute(baseline)
    assert result.status == "FINISHED", result.error

    client = runs_mod.client()
    table = read_predictions(client, result.run_id).set_index("text")
    texts = [text for _, text, _ in calls]
    last, split = last_windows(texts, tokenizer)
    for (call_id, text, topic), window in zip(calls, last, strict=True):
        row = table.loc[text]
        if topic == MARKER:  # tagged with the marker, by the last window, and with nothing else
            assert row[SCORE_PREFIX + MARKER] > 0.9 and row["predicted_label"] == MARKER, (call_id, row)
            assert row[EVIDENCE_PREFIX + MARKER] == window.text and MARKER in window.text
            assert row[EVIDENCE_PREFIX + OTHER] == ""
        else:  # tagged with nothing (the evidence may show the likeliest topic's window: one of the call's)
            assert row[SCORE_PREFIX + MARKER] < 0.1 and row["predicted_label"] == "(no topic)", (call_id, row)
            shown = [row[EVIDENCE_PREFIX + t] for t in TOPICS if row[EVIDENCE_PREFIX + t]]
            assert len(shown) <= 1 and all(w in text for w in shown), shown
        assert row[SCORE_PREFIX + OTHER] < 0.1
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["validation_windows_per_text_max"] == split.counts.max() > 1
    assert metrics["topic_eval_forward_passes"] == len(split.windows) * len(TOPICS)
    assert metrics["validation_tokens_cut"] == 0


@pytest.fixture(scope="module")
def logged(tmp_path_factory, loaded):
    """The marker model logged to a store of the module's own (as a fine-tune logs its model, read as windows of
    128 tokens): {"home", "run_id", "uri"}."""
    import mlflow

    from core.models import loading
    from core.settings import configure_mlflow, ensure_experiment

    model, tokenizer = loaded
    home = tmp_path_factory.mktemp("long-calls-store") / "home"
    with pytest.MonkeyPatch.context() as mp:
        settings = configure_mlflow(use_store(mp, home))
        with mlflow.start_run(experiment_id=ensure_experiment("Marker model", settings), run_name="marker") as run:
            info = loading.log_model(model, tokenizer, pairs=True, max_length=MAX_LENGTH)
    return {"home": home, "run_id": run.info.run_id, "uri": info.model_uri}


def test_scoring_a_file_tags_each_call_by_its_last_window(logged, loaded, calls, tmp_path, monkeypatch):
    import pandas as pd

    from core.scoring.job import ScoreSpec, score

    _, tokenizer = loaded
    use_store(monkeypatch, logged["home"])
    path = _calls_file(tmp_path / "in" / "calls.csv", calls)
    spec = ScoreSpec(logged["run_id"], str(path), mode="topics", topics=tuple(TOPICS), max_length=MAX_LENGTH,
                     output_path=str(tmp_path / "out" / "calls_scored.csv"))
    result = score(spec)
    assert result.status == "FINISHED", result.error
    scored = pd.read_csv(result.output, keep_default_na=False)
    last, _ = last_windows([text for _, text, _ in calls], tokenizer)
    assert list(scored["call_id"]) == [call_id for call_id, _, _ in calls]
    for (call_id, _, topic), window, (_, row) in zip(calls, last, scored.iterrows(), strict=True):
        if topic == MARKER:
            assert row[f"score_{MARKER}"] > 0.9 and row["topics"] == MARKER, (call_id, dict(row))
            assert row[f"evidence: {MARKER}"] == window.text
        else:
            assert row[f"score_{MARKER}"] < 0.1 and row["topics"] == "", (call_id, dict(row))
            assert MARKER not in row[f"evidence: {MARKER}"]
        assert row[f"score_{OTHER}"] < 0.1

    truncated = score(ScoreSpec(logged["run_id"], str(path), mode="topics", topics=tuple(TOPICS),
                                max_length=MAX_LENGTH, truncate=True,
                                output_path=str(tmp_path / "out" / "calls_truncated.csv")))
    assert truncated.status == "FINISHED", truncated.error
    assert (pd.read_csv(truncated.output)[f"score_{MARKER}"] < 0.5).all()  # the first window only: missed


def test_the_served_model_tags_each_call_by_its_last_window(logged, loaded, calls, monkeypatch):
    import mlflow

    from core.settings import configure_mlflow

    _, tokenizer = loaded
    configure_mlflow(use_store(monkeypatch, logged["home"]))
    served = mlflow.pyfunc.load_model(logged["uri"])
    texts = [text for _, text, _ in calls]
    out = served.predict(texts, params={"topics": TOPICS})  # read as it was logged: windows of 128 tokens
    last, _ = last_windows(texts, tokenizer)
    for i, ((call_id, _, topic), window) in enumerate(zip(calls, last, strict=True)):
        row = out.iloc[i]
        if topic == MARKER:
            assert row[f"score: {MARKER}"] > 0.9 and row["tags"] == MARKER, (call_id, dict(row))
            assert row[f"evidence: {MARKER}"] == window.text
        else:
            assert row[f"score: {MARKER}"] < 0.1 and row["tags"] == "", (call_id, dict(row))
        assert row[f"score: {OTHER}"] < 0.1


def _calls_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("call_id", "transcript", "topic"), *rows])
    return path
