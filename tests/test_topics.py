"""Batched inference and NLI topic tagging on the real demo models (no training: their heads are as built)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("topic_models")  # one worker builds its module fixtures

MIXED = [
    "hi",
    "I can't log in to my account, my password stopped working and the website locked me out. " * 12,
    "move my old employer plan into this one",
    "",
    "why was I charged this fee? I was billed twice this quarter and the maintenance fee seems too high.",
    "ok",
    "I want to change my beneficiary after my divorce, and update my mailing address too.",
]


@pytest.fixture(scope="module", params=["demo-bert-tiny", "demo-deberta-v2-tiny"])
def loaded(request, demo_models):
    """A demo model and its tokenizer, loaded as a user's checkpoint would be."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = demo_models[request.param]
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _forward(model, tokenizer, texts, pairs=None):
    """The HF model's own forward over all rows at once (one padded batch, in the order given)."""
    import torch

    batch = tokenizer(texts, pairs, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.softmax(dim=-1).numpy()


# -- infer.predict_proba ----------------------------------------------------------------------------------------
def test_predict_proba_matches_the_models_own_forward_and_keeps_row_order(loaded):
    from core.models.infer import predict_proba

    model, tokenizer = loaded
    pairs = [f"This call is about {t}." for t in ("fees", "rollover", "loan request", "fees", "tax forms",
                                                    "withdrawal", "address change")]
    seen = []
    got = predict_proba(model, tokenizer, MIXED, pairs, batch_size=3, device="cpu",
                        on_progress=lambda done, total: seen.append((done, total)))
    want = _forward(model, tokenizer, MIXED, pairs)
    assert got.shape == (len(MIXED), model.config.num_labels)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert seen == [(3, 7), (6, 7), (7, 7)]
    # the rows differ, so a mix-up of the order would show: each row equals its own forward alone
    for i in (0, 1, 4):
        np.testing.assert_allclose(got[i], _forward(model, tokenizer, [MIXED[i]], [pairs[i]])[0], atol=1e-5)
    assert len({tuple(np.round(row, 7)) for row in got}) > 1


def test_predict_proba_single_texts_batch_one_and_empty(loaded):
    from core.models.infer import predict_proba

    model, tokenizer = loaded
    np.testing.assert_allclose(predict_proba(model, tokenizer, MIXED, batch_size=1),
                               _forward(model, tokenizer, MIXED), atol=1e-5)
    assert predict_proba(model, tokenizer, []).shape == (0, model.config.num_labels)
    with pytest.raises(ValueError, match="7 texts but 2 pairs"):
        predict_proba(model, tokenizer, MIXED, ["a", "b"])


def test_length_limit_caps_at_what_the_model_takes(loaded):
    from core.models.infer import length_limit

    model, tokenizer = loaded
    assert length_limit(model, tokenizer, 256) == 128  # the demo models take 128 tokens
    assert length_limit(model, tokenizer, 64) == 64


# -- topics: the rules, without a model ----------------------------------------------------------------------------
@pytest.mark.parametrize("labels, index", [
    ({0: "entailment", 1: "not_entailment"}, 0),
    ({0: "not_entailment", 1: "entailment"}, 1),
    ({0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}, 2),
    ({"0": "contradiction", "1": "entail"}, 1),
    ({0: "Entailment ", 1: "Not Entailment"}, 0),
    ({0: "not_entailment", 1: "LABEL_1"}, None),
    ({0: "LABEL_0", 1: "LABEL_1"}, None),
    ({}, None),
])
def test_entailment_index_reads_the_labels(labels, index):
    from core.scoring.topics import entailment_index, is_nli

    assert entailment_index(labels) == index
    assert is_nli(labels) is (index is not None)


@pytest.mark.parametrize("template, found", [
    ("", "empty"), ("   ", "empty"), ("This call is about billing.", "found none"),
    ("{} or {}?", "found 2"), ("About {topic}.", "stray or named brace"), ("About {0}.", "stray or named brace"),
    ("About { and }", "stray or named brace"), ("About {}.{", "stray or named brace"), (None, "empty"),
])
def test_a_bad_template_is_refused_saying_what_to_write(template, found):
    from core.errors import TopicError
    from core.scoring.topics import check_template

    with pytest.raises(TopicError, match="This call is about {}.") as caught:
        check_template(template)
    assert found in str(caught.value) and caught.value.key == "template"


def test_good_templates_and_the_hypotheses_built():
    from core.scoring.topics import DEFAULT_TEMPLATE, check_template, hypotheses

    assert check_template("  The customer asks about {}.  ") == "The customer asks about {}."
    assert hypotheses([" fees", "tax forms "]) == ["This call is about fees.", "This call is about tax forms."]
    assert hypotheses(["fees"], "{}") == ["fees"]
    assert DEFAULT_TEMPLATE == "This call is about {}."


@pytest.mark.parametrize("topics, says", [
    ([], "No topics given"), (["fees", " "], "Topic 2 is empty"), (["Fees", "loans", "fees "], "listed twice"),
    ([f"topic {i}" for i in range(51)], "at most 50"), (["x" * 201], "201 characters"), ([None], "Topic 1 is empty"),
])
def test_bad_topics_are_refused_with_a_clear_message(topics, says):
    from core.errors import TopicError
    from core.scoring.topics import check_topics

    with pytest.raises(TopicError, match=says) as caught:
        check_topics(topics)
    assert caught.value.key == "topics"


def test_topics_typed_in_a_box():
    from core.scoring.topics import check_topics, parse_topics

    assert parse_topics("fees, tax forms\n\n  rollover \nloan request,") == ["fees", "tax forms", "rollover",
                                                                              "loan request"]
    assert parse_topics("") == []
    assert check_topics(["  fees ", "tax forms"]) == ["fees", "tax forms"]
    assert check_topics("fees") == ["fees"]


def test_entailment_scores_of_a_three_way_head_ignore_neutral():
    from core.errors import TopicError
    from core.scoring.topics import entailment_scores

    probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.0, 1.0, 0.0]])
    three = {0: "entailment", 1: "neutral", 2: "contradiction"}
    np.testing.assert_allclose(entailment_scores(probs, three), [6 / 7, 0.5, 0.5])
    two = {0: "not_entailment", 1: "entailment"}
    np.testing.assert_allclose(entailment_scores(probs[:, :2], two), [0.3, 0.8, 1.0])
    with pytest.raises(TopicError, match="Its labels are 'negative', 'positive'"):
        entailment_scores(probs[:, :2], {0: "negative", 1: "positive"})


def test_tagged_keeps_topics_at_or_above_the_threshold_most_likely_first():
    from core.errors import TopicError
    from core.scoring.topics import tagged

    scores = np.array([[0.2, 0.9, 0.5], [0.1, 0.0, 0.49]])
    assert tagged(scores, ["fees", "loans", "tax"], 0.5) == [["loans", "tax"], []]
    assert tagged(scores, ["fees", "loans", "tax"], 0.0) == [["loans", "tax", "fees"], ["tax", "fees", "loans"]]
    assert tagged(scores[0], ["fees", "loans", "tax"], 0.95) == [[]]
    for bad in (1.5, -0.1, "high", None):
        with pytest.raises(TopicError, match="between 0 and 1"):
            tagged(scores, ["fees", "loans", "tax"], bad)
    with pytest.raises(TopicError, match="3 scores per transcript but 2 topics"):
        tagged(scores, ["fees", "loans"], 0.5)


# -- topics on the demo NLI models -------------------------------------------------------------------------------
CALLS = [
    "hi, thanks for taking my call. I can't log in to my account, and my password stopped working. thank you.",
    "good morning. why was I charged this fee, and I was billed twice this quarter. what are my options?",
    "um, yes, I want to change my beneficiary.",
]
TOPICS = ["account access", "fees", "beneficiary update", "rollover"]


class _Watched:
    """The real tokenizer, noting each (text, text pair) it is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.pairs = tokenizer, []

    def __call__(self, texts, pairs=None, **kwargs):
        if pairs is not None:  # the pairs the model reads (windows are cut from single texts first)
            self.pairs.extend(zip(texts, pairs, strict=True))
        return self.tokenizer(texts, pairs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_topic_scores_are_the_entailment_of_each_topics_hypothesis(loaded):
    from core.models.infer import predict_proba
    from core.scoring.topics import topic_scores

    model, tokenizer = loaded
    entail = model.config.label2id["entailment"]
    seen = []
    scores = topic_scores(model, tokenizer, CALLS, TOPICS, batch_size=5, on_progress=lambda d, t: seen.append(d))
    assert scores.shape == (3, 4) and ((scores >= 0) & (scores <= 1)).all()
    # 12 (call, topic) pairs in batches of 5; progress counts calls (a long call's windows are many pairs)
    assert seen[-1] == 3 and len(seen) == 3
    for i, call in enumerate(CALLS):
        for j, topic in enumerate(TOPICS):  # the template applied: premise = the call, hypothesis = the sentence
            alone = predict_proba(model, tokenizer, [call], [f"This call is about {topic}."])[0, entail]
            assert scores[i, j] == pytest.approx(alone, abs=1e-5)
    # another template: the real tokenizer, watched, receives each call with each topic's sentence
    watched = _Watched(tokenizer)
    other = topic_scores(model, watched, CALLS, TOPICS, " The customer wants help with {} ", batch_size=5)
    assert sorted(watched.pairs) == sorted((c, f"The customer wants help with {t}") for c in CALLS for t in TOPICS)
    want = predict_proba(model, tokenizer, [CALLS[2]], ["The customer wants help with rollover"])[0, entail]
    assert other[2, 3] == pytest.approx(want, abs=1e-5)
    # multi-label: each topic on its own, never normalised across the topics
    assert not np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    assert topic_scores(model, tokenizer, [], TOPICS).shape == (0, 4)


def test_a_three_way_nli_head_scores_entailment_against_contradiction(demo_models):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.scoring.topics import topic_scores

    path = demo_models["demo-bert-tiny"]
    labels = {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}, ignore_mismatched_sizes=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    scores = topic_scores(model, tokenizer, CALLS[:1], ["fees", "rollover"])
    batch = tokenizer(CALLS[:1] * 2, ["This call is about fees.", "This call is about rollover."], padding=True,
                      return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    want = logits[:, [0, 2]].softmax(dim=-1)[:, 0].numpy()
    np.testing.assert_allclose(scores[0], want, atol=1e-5)


def test_a_model_that_is_not_nli_is_refused_in_plain_words(demo_models):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.errors import TopicError
    from core.scoring.topics import topic_scores

    path = demo_models["demo-bert-tiny"]
    model = AutoModelForSequenceClassification.from_pretrained(
        path, id2label={0: "complaint", 1: "praise"}, label2id={"complaint": 0, "praise": 1})
    with pytest.raises(TopicError, match="not an NLI \\(entailment\\) model. Its labels are 'complaint', 'praise'"):
        topic_scores(model, AutoTokenizer.from_pretrained(path), CALLS, TOPICS)


def test_bad_input_to_topic_scores_is_refused_before_the_model_runs(loaded):
    from core.errors import TopicError
    from core.scoring.topics import topic_scores

    model, tokenizer = loaded
    with pytest.raises(TopicError, match="exactly one"):
        topic_scores(model, tokenizer, CALLS, TOPICS, "This call is about billing.")
    with pytest.raises(TopicError, match="listed twice"):
        topic_scores(model, tokenizer, CALLS, ["fees", "Fees"])
    with pytest.raises(TopicError, match="Transcript 2 is not text \\(float\\)"):
        topic_scores(model, tokenizer, ["fine", float("nan")], TOPICS)


# -- the chart ----------------------------------------------------------------------------------------------------
def test_topic_chart_marks_the_threshold_and_colours_the_tagged_topics():
    from core.charts import GREEN, GREY, topic_scores_chart

    fig = topic_scores_chart({"fees": 0.2, "account access": 0.9, "<b>tax</b>": 0.5}, 0.5)
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.y) == ["fees", "&lt;b&gt;tax&lt;/b&gt;", "account access"]  # highest on top, shown as typed
    assert list(bar.x) == [0.2, 0.5, 0.9] and list(bar.marker.color) == [GREY, GREEN, GREEN]
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 0.5 and line.line.dash == "dash"
    assert "threshold 0.50" in fig.layout.annotations[0].text
    assert tuple(fig.layout.xaxis.range) == (0, 1.08)
    assert "Nothing to show" in topic_scores_chart({}, 0.5).layout.title.text
    assert not topic_scores_chart({"fees": 0.4}, float("nan")).layout.shapes


# -- the Registry's "Try it" box -------------------------------------------------------------------------------------
def _register(name: str, path, labels: dict[int, str] | None = None) -> None:
    """Log the demo model (with other labels, if given) in a run, register it and put it into production."""
    import mlflow
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core import runs as runs_mod
    from core.models.loading import log_model
    from core.registry.model_transition import ModelTransition
    from core.settings import configure_mlflow, ensure_experiment

    configure_mlflow()

    extra = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, **extra)
    mlflow.set_experiment(experiment_id=ensure_experiment("Topics_Try_It"))  # artifacts in the store's folder
    with mlflow.start_run(run_name=f"{name}-run") as run:
        info = log_model(model, AutoTokenizer.from_pretrained(path), pairs=True)
    transition = ModelTransition(name)
    version = transition.register_run(runs_mod.client().get_run(run.info.run_id), info.model_uri)
    transition.promote(version.version, "Production", reason="for the Try it test", user="tester")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, bert_model):
    """A store with the demo BERT (an NLI head) twice and a non-NLI copy of it, each registered and in production."""
    from conftest import use_store

    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, tmp_path_factory.mktemp("topics") / "home")
        _register("Topics_NLI", bert_model)
        _register("Topics_NLI_Too", bert_model)
        _register("Topics_Sentiment", bert_model, {0: "complaint", 1: "praise"})
        yield


def test_a_topic_job_on_a_model_that_is_not_nli_is_refused_before_anything_is_queued(registry, tmp_path):
    from core import runs as runs_mod
    from core.errors import TopicError
    from core.jobs import JobQueue
    from core.scoring.job import ScoreSpec

    calls = tmp_path / "calls.csv"
    calls.write_text("call_id,transcript\nc1,I want to roll my balance into an IRA\n", encoding="utf-8")
    before = {e.name for e in runs_mod.experiments(runs_mod.client())}
    spec = ScoreSpec("models:/Topics_Sentiment@production", str(calls), mode="topics", topics=("rollover", "fees"))
    with pytest.raises(TopicError, match="not an NLI \\(entailment\\) model. Its labels are 'complaint', 'praise'"):
        JobQueue().submit(spec, start=False)
    assert {e.name for e in runs_mod.experiments(runs_mod.client())} == before  # no scoring experiment, no run
    # an NLI model is queued
    (job,) = JobQueue().submit(ScoreSpec("models:/Topics_NLI@production", str(calls), mode="topics",
                                         topics=("rollover", "fees")), start=False)
    assert job.status.value == "SCHEDULED" and job.kind == "score"


@pytest.mark.slow
def test_registry_try_it_tags_a_calls_topics_with_a_chart(registry):
    from test_pages import app, texts

    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("Topics_NLI").run()
    assert [t.label for t in at.tabs] == ["Tag topics", "Premise and hypothesis"]  # topics first for NLI
    assert at.text_input(key="r_topic_template").value == "This call is about {}."
    assert "account access" in at.text_area(key="r_topic_list").value
    at.text_area(key="r_topic_list").set_value("account access, fees\n<b>billing</b>\nrollover")
    at.slider(key="r_topic_threshold").set_value(0.0)
    at.button(key="r_tag").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (chart,) = at.get("plotly_chart")
    import json

    bars = json.loads(chart.proto.spec)["data"][0]
    assert sorted(bars["y"]) == sorted(["account access", "fees", "&lt;b&gt;billing&lt;/b&gt;", "rollover"])
    assert all(0.0 <= x <= 1.0 for x in bars["x"])
    tagged = next(s.value for s in at.success if "tags this call with" in s.value)
    assert tagged.startswith("Version 1 tags this call with: **") and "**&lt;b&gt;billing&lt;/b&gt;**" in tagged

    at.slider(key="r_topic_threshold").set_value(1.0).run()  # no model run: the same scores, another threshold
    assert "No topic reaches 1.00. The most likely is **" in texts(at)
    at.text_input(key="r_topic_template").set_value("This call is about billing.").run()
    assert "click **Tag topics** again" in texts(at)
    at.button(key="r_tag").click().run()
    assert any("must contain exactly one {}" in e.value for e in at.error)

    at.button(key="r_predict").click().run()  # the plain pair mode is still there, in its tab
    assert any("Version 1 says **" in m.value for m in at.markdown)
    at.text_input(key="r_topic_template").set_value("This call is about {}.")
    at.button(key="r_tag").click().run()
    assert len(at.get("plotly_chart")) == 1
    at.selectbox(key="r_model").set_value("Topics_NLI_Too").run()  # another model's version 1: no stale scores
    assert at.button(key="r_tag") and not at.get("plotly_chart")


@pytest.mark.slow
def test_registry_try_it_offers_no_topics_for_a_model_that_is_not_nli(registry):
    from test_pages import app, texts

    at = app("pages/registry.py")
    at.selectbox(key="r_model").set_value("Topics_Sentiment").run()
    assert not at.tabs and not any(b.key == "r_tag" for b in at.button)
    assert "this one's labels are complaint, praise" in texts(at)
    at.button(key="r_predict").click().run()
    assert any("Version 1 says **" in m.value for m in at.markdown)


# -- evaluating topic tagging against true topics -------------------------------------------------------------------
def test_topic_metrics_per_topic_and_averaged():
    from core.scoring.topic_eval import split_topics, topic_metrics

    assert split_topics("fees; Tax forms | rollover,") == ["fees", "Tax forms", "rollover"]
    assert split_topics(float("nan")) == [] and split_topics(None) == [] and split_topics(["a", " "]) == ["a"]
    truth = ["fees", "FEES; rollover", "", ["rollover"]]
    scores = np.array([[0.9, 0.1, 0.2],   # fees right
                       [0.3, 0.8, 0.1],   # fees missed, rollover right
                       [0.7, 0.1, 0.1],   # fees wrong
                       [0.1, 0.6, 0.9]])  # rollover right, loans wrong
    table = topic_metrics(truth, scores, ["fees", "rollover", "loans"], 0.5).set_index("topic")
    assert table.loc["fees", ["support", "tagged"]].tolist() == [2, 2]
    assert table.loc["fees", "precision"] == 0.5 and table.loc["fees", "recall"] == 0.5
    assert table.loc["rollover", ["precision", "recall", "f1"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["loans", ["support", "tagged", "precision", "recall", "f1"]].tolist() == [0, 1, 0.0, 0.0, 0.0]
    # micro: 3 right of 5 tagged, 3 found of 4 true
    assert table.loc["micro avg", "precision"] == pytest.approx(3 / 5)
    assert table.loc["micro avg", "recall"] == pytest.approx(3 / 4)
    assert table.loc["macro avg", "f1"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_true_topics_outside_the_candidates_are_refused_naming_the_row():
    from core.errors import TopicError
    from core.scoring.topic_eval import topic_metrics

    with pytest.raises(TopicError, match="Row 2: its true topic 'billing' is not among the candidate topics"):
        topic_metrics(["fees", "billing"], np.zeros((2, 1)), ["fees"])
    with pytest.raises(TopicError, match="2 x 1 scores for 3 calls"):
        topic_metrics(["fees", "fees", "fees"], np.zeros((2, 1)), ["fees"])


def test_evaluate_topics_on_the_demo_validation_calls(loaded):
    import pandas as pd
    from conftest import DATA

    from core.demo import TOPICS
    from core.errors import TopicError
    from core.scoring.topic_eval import evaluate_topics

    model, tokenizer = loaded
    calls = pd.read_csv(DATA / "test.csv").drop_duplicates("premise").head(12)  # one true topic per call
    candidates = sorted(TOPICS)
    scores, table = evaluate_topics(model, tokenizer, list(calls["premise"]), list(calls["topic"]), candidates,
                                    threshold=0.5)
    assert scores.shape == (12, len(candidates))
    assert list(table["topic"]) == [*candidates, "micro avg", "macro avg"]
    assert table["support"].iloc[:-2].sum() == 12 and table["tagged"].iloc[-2] == int((scores >= 0.5).sum())
    assert table[["precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()
    with pytest.raises(TopicError, match="Row 1: its true topic"):
        evaluate_topics(model, tokenizer, ["a call"], ["not a topic"], candidates)
