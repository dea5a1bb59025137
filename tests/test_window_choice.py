"""Which windows of a long call a pair labelled for the whole call trains on (core.training.bags): a new head's
first choice by the calls' own words, the model's choice after, k windows per pair, the same choice for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from core import demo
from core.data import Examples, LabelMapping
from core.models.windows import Reading
from core.topic_pairs import TopicPairs, all_topics
from core.training import bags

NLI = {0: "entailment", 1: "not_entailment"}
MAPPING = LabelMapping({"entailment": 0, "not_entailment": 1}, keeps_head=False)


@pytest.fixture(scope="module")
def tokenizer(demo_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_models["demo-bert-tiny"])


@pytest.fixture(scope="module")
def annotated():
    return demo.make_long_calls_annotated(120, seed=11, prefix="W", min_words=500, max_words=900)


@pytest.fixture(scope="module")
def encoded(annotated, tokenizer):
    rows = [row for row, _ in annotated]
    calls = Examples("calls.csv", tuple(r["call_id"] for r in rows), tuple(r["transcript"] for r in rows), None,
                     tuple(tuple(t.strip() for t in r["topic"].split(";")) for r in rows),
                     ("transcript", None, "topic"), "d")
    pairs = TopicPairs(negatives=2, seed=3).build(calls, all_topics(calls), NLI)
    return pairs, bags.encode(pairs, tokenizer, MAPPING, bags.room(tokenizer, 128, pairs), Reading(128))


@pytest.fixture(scope="module")
def untrained(demo_models):
    """The demo BERT with a new NLI head, and a collator for its windows."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    path = demo_models["demo-bert-tiny"]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, id2label=NLI,
                                                               label2id={v: k for k, v in NLI.items()})
    return model, DataCollatorWithPadding(AutoTokenizer.from_pretrained(path))


def _topic_lines(annotated) -> dict[str, set[str]]:
    return {row["transcript"]: {line for section, line in turns if section == "topic"} for row, turns in annotated}


def test_a_new_heads_first_choice_is_the_window_whose_words_speak_for_the_topic(annotated, encoded):
    pairs, enc = encoded
    chosen = bags.Chosen(enc, 1, seed=5)
    assert chosen.several, "the calls are longer than one window"
    chosen.draw(0)
    topical = _topic_lines(annotated)
    hits = []
    for slot, (bag, _) in enumerate(chosen.slots):
        if enc.labels[bag] != enc.entail or len(chosen.rows[bag]) < 2:
            continue
        window = enc.split.windows[int(chosen.choice[slot])].text
        hits.append(any(line in window or window in line for line in topical[pairs.text_a[bag]]))
    # a random window holds the topic in about one call of six (windows per call here: 6 to 10)
    assert len(hits) > 100 and np.mean(hits) >= 0.9, f"{np.mean(hits):.2f} of {len(hits)} first choices hold the topic"


def test_a_topic_the_call_lacks_first_trains_on_the_calls_own_topic(annotated, encoded):
    """The negative's first window is the call's own topic read against another (not the talk around it)."""
    pairs, enc = encoded
    chosen = bags.Chosen(enc, 1, seed=5)
    chosen.draw(0)
    topical = _topic_lines(annotated)
    hits = [any(line in window or window in line for line in topical[pairs.text_a[bag]])
            for slot, (bag, _) in enumerate(chosen.slots)
            if enc.labels[bag] != enc.entail and len(chosen.rows[bag]) > 1
            for window in [enc.split.windows[int(chosen.choice[slot])].text]]
    assert len(hits) > 200 and np.mean(hits) >= 0.9, f"{np.mean(hits):.2f} of {len(hits)} negatives on own topic"


def test_short_training_windows_choose_the_topics_own_lines(annotated, encoded, tokenizer):
    """topic_pairs.train_window: the same pairs cut into windows of 32 tokens; the first choice of a true pair is
    then mostly the topic's own lines (at 128 tokens, mostly the chatter around them)."""
    pairs, whole = encoded
    short = bags.encode(pairs, tokenizer, MAPPING, 32, Reading(128))
    assert short.split.budget == 32 and short.split.counts.mean() > 3 * whole.split.counts.mean()
    topical = _topic_lines(annotated)

    def topical_share(enc) -> float:
        chosen = bags.Chosen(enc, 1, seed=5)
        chosen.draw(0)
        shares = []
        for slot, (bag, _) in enumerate(chosen.slots):
            if enc.labels[bag] == enc.entail and len(chosen.rows[bag]) > 1:
                lines = enc.split.windows[int(chosen.choice[slot])].text.splitlines()
                lines = [line for line in lines if line.strip()]
                shares.append(np.mean([any(line in t or t in line for t in topical[pairs.text_a[bag]])
                                       for line in lines]))
        return float(np.mean(shares))

    narrow, wide = topical_share(short), topical_share(whole)
    assert narrow >= 0.8 and narrow > wide + 0.2, (narrow, wide)


def test_the_opening_and_identity_checks_count_for_little(annotated, encoded):
    pairs, enc = encoded
    scores, topical = bags.evidence(enc), _topic_lines(annotated)
    opening, topic = [], []
    for row, window in enumerate(enc.split.windows):
        bag = int(enc.owner[row])
        if enc.labels[bag] == enc.entail:
            if window.start == 0:  # a call's first window: its opening and identity checks
                opening.append(scores[row])
            elif any(line in window.text for line in topical[pairs.text_a[bag]]):
                topic.append(scores[row])
    assert np.median(topic) > 3 * np.median(opening), (np.median(topic), np.median(opening))
    assert bags.evidence(bags.Encoded(enc.features, enc.owner, enc.labels, enc.split, None)).sum() == 0  # no pairs


def test_pairs_train_on_k_windows_of_their_own_call_the_same_for_a_seed(encoded):
    pairs, enc = encoded
    one, again = bags.Chosen(enc, 2, seed=5), bags.Chosen(enc, 2, seed=5)
    for chosen in (one, again):
        chosen.draw(0)
    assert one.choice.tolist() == again.choice.tolist()
    for bag, rows in enumerate(one.rows):
        mine = [int(one.choice[i]) for i, (b, _) in enumerate(one.slots) if b == bag]
        assert len(mine) == min(2, len(rows)) and len(set(mine)) == len(mine) and set(mine) <= set(rows.tolist())
    # every window a pair trains on carries the pair's label: the call's own topics entail, others do not
    for slot in range(len(one)):
        bag = int(enc.owner[int(one.choice[slot])])
        assert one[slot]["labels"] == enc.labels[bag]
        assert (enc.labels[bag] == enc.entail) == (pairs.labels[bag] == "entailment")


def test_after_the_first_epoch_the_model_chooses_with_the_words(encoded, untrained):
    _, enc = encoded
    model, collator = untrained
    chosen = bags.Chosen(enc, 1, seed=5)
    chosen.choose(model, collator)
    words = bags.evidence(enc)
    seen = {True: 0, False: 0}
    for bag in chosen.several:
        positive = bool(enc.labels[bag] == enc.entail)
        if seen[positive] == 8:
            continue
        seen[positive] += 1
        rows = chosen.rows[bag]
        scores = bags.entailment_of(model, [enc.features[r] for r in rows], collator, enc.entail)
        scores = scores + words[rows] / (words[rows].max() or 1.0)  # plus the words' evidence, scaled in the call
        slot = next(i for i, (b, _) in enumerate(chosen.slots) if b == bag)
        assert int(chosen.choice[slot]) == int(rows[int(np.argmax(scores))])
    assert seen == {True: 8, False: 8}


def test_hard_negatives_add_the_windows_the_model_scores_highest(encoded, untrained):
    _, enc = encoded
    model, collator = untrained
    plain, hard = bags.Chosen(enc, 1, seed=5), bags.Chosen(enc, 1, seed=5, hard=1)
    negatives = sum(1 for bag in range(len(enc.labels)) if enc.labels[bag] != enc.entail)
    assert len(hard) == len(plain) + negatives  # one window more for each pair with a topic its call lacks
    hard.choose(model, collator)
    checked = 0
    for bag in hard.several:
        slots = [i for i, (b, _) in enumerate(hard.slots) if b == bag]
        if enc.labels[bag] == enc.entail:
            assert len(slots) == 1
            continue
        first, extra = (int(hard.choice[i]) for i in slots)
        rest = [r for r in hard.rows[bag].tolist() if r != first]
        scores = bags.entailment_of(model, [enc.features[r] for r in rest], collator, enc.entail)
        assert extra == rest[int(np.argmax(scores))] and hard[slots[1]]["labels"] == enc.labels[bag]
        checked += 1
        if checked == 8:
            break
    assert checked == 8


def test_an_encoder_given_nli_labels_but_no_head_counts_as_a_new_head(demo_models, tmp_path):
    """Its labels match, so its config is kept, yet its head is made at random: its first choice must not be
    its own (the long-calls bench's all-MiniLM-L6-v2 trained on random windows that way, and learned 'never')."""
    from transformers import AutoModelForSequenceClassification

    from core.models.loading import load_for_classification

    nli = LabelMapping({"entailment": 0, "not_entailment": 1}, keeps_head=True)
    _, _, new = load_for_classification(str(demo_models["demo-bert-tiny"]), nli, with_new=True)
    assert new == []
    full = AutoModelForSequenceClassification.from_pretrained(demo_models["demo-bert-tiny"])
    full.bert.save_pretrained(tmp_path / "encoder")  # the encoder alone, its config still naming the NLI labels
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "encoder" / name).write_bytes((demo_models["demo-bert-tiny"] / name).read_bytes())
    _, _, new = load_for_classification(str(tmp_path / "encoder"), nli, with_new=True)
    assert {"classifier.weight", "classifier.bias"} <= set(new)
