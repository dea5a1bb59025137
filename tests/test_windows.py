"""Long texts read as windows (core.models.windows): every token read, cuts at turns, no silent truncation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.errors import GridError
from core.models import windows


@pytest.fixture(scope="module", params=["demo-bert-tiny", "demo-deberta-v2-tiny"])
def tokenizer(request, demo_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_models[request.param])


def _call(seed: int, turns: int = 40) -> str:
    rng = random.Random(seed)
    words = ["hello", "thanks.", "account", "the", "please", "sure!", "number", "balance", "today", "okay,"]
    return "\n".join(f"{'Agent' if i % 2 == 0 else 'Customer'}: "
                     + " ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for i in range(turns))


def _read(text, split, owner):
    """Which characters of ``text`` lie in one of its windows."""
    covered = np.zeros(len(text), dtype=bool)
    for window, whose in zip(split.windows, split.owner, strict=True):
        if whose == owner:
            covered[window.start:window.end] = True
    return covered


@pytest.mark.parametrize("overlap", [0, 12])
def test_windows_cover_every_token_and_none_is_longer_than_the_budget(tokenizer, overlap):
    texts = [_call(seed) for seed in range(4)] + ["a short call", ""]
    split = windows.split(texts, tokenizer, 60, overlap=overlap)
    assert list(split.counts[-2:]) == [1, 1]  # a text that fits is one window, the empty one too
    assert split.counts[:4].min() > 3
    for owner, text in enumerate(texts[:4]):
        unread = [i for i, seen in enumerate(_read(text, split, owner)) if not seen and not text[i].isspace()]
        assert not unread  # every character but the blanks between windows is in some window
    for window in split.windows:  # each window's own text, re-tokenized, fits the budget: nothing is truncated
        assert windows.token_counts(tokenizer, [window.text])[0] <= 60
        assert window.text == texts[split.owner[split.windows.index(window)]][window.start:window.end]
    assert split.cut.sum() == 0 and split.summary()["tokens_cut"] == 0


def test_windows_end_at_turn_boundaries_and_overlap_by_at_most_the_overlap(tokenizer):
    text = _call(7, turns=60)
    longest = max(windows.token_counts(tokenizer, text.splitlines()))
    split = windows.split([text], tokenizer, 2 * longest + 10, overlap=10)  # room for two turns at least
    for window in split.windows[:-1]:  # a window that had to end early ends where a turn ends
        rest = text[window.end:]
        assert rest.startswith("\n") and rest.lstrip("\n").startswith(("Agent:", "Customer:")), rest[:30]
    for before, after in zip(split.windows, split.windows[1:], strict=False):
        assert before.start < after.start <= before.end  # in order, no gap
        shared = windows.token_counts(tokenizer, [text[after.start:before.end]])[0] if after.start < before.end else 0
        assert shared <= 10 + 1


def test_text_without_turns_is_cut_after_sentences_then_between_words(tokenizer):
    text = " ".join(f"Sentence number {i} is here." for i in range(80))
    split = windows.split([text], tokenizer, 50)
    assert len(split.windows) > 2
    assert all(w.text.endswith(".") for w in split.windows)
    one_word = " ".join(["word"] * 300)
    parts = windows.split([one_word], tokenizer, 40).windows
    assert all(w.text.startswith("word") and w.text.endswith("word") for w in parts)


def test_truncating_reads_the_first_window_and_counts_what_it_cut(tokenizer):
    text = _call(3)
    whole = windows.token_counts(tokenizer, [text])[0]
    split = windows.split([text, "short"], tokenizer, 50, truncate=True)
    assert list(split.counts) == [1, 1]
    assert split.cut[0] == whole - split.windows[0].tokens > 0 and split.cut[1] == 0
    assert split.summary()["texts_cut"] == 1.0


def test_budget_leaves_room_for_the_hypothesis_and_refuses_too_small_a_window(tokenizer):
    hypothesis = "This call is about a beneficiary update."
    room = windows.budget(tokenizer, 128, [hypothesis, "short"])
    assert room == 128 - windows.token_counts(tokenizer, [hypothesis])[0] - 3
    assert windows.budget(tokenizer, 128) == 126
    with pytest.raises(GridError, match="max_length 20 leaves .* raise max_length to at least"):
        windows.budget(tokenizer, 20, [hypothesis])


def test_reading_settings_are_checked_and_the_overlap_defaults_to_an_eighth_of_a_window():
    assert windows.Reading().overlap_for(240) == 30
    assert windows.Reading(overlap=500).overlap_for(100) == 50  # never more than half a window
    for bad, key in (({"max_length": 4}, "max_length"), ({"overlap": -1}, "window_overlap"),
                     ({"truncate": "yes"}, "truncate")):
        with pytest.raises(GridError, match=key):
            windows.Reading(**bad)


def test_aggregations_keep_the_deciding_window():
    owner = np.array([0, 0, 0, 1])
    values = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.1], [0.5, 0.5]])
    best, where = windows.aggregate_max(values, owner, 3)
    assert best[0].tolist() == pytest.approx([0.8, 0.9]) and where[0].tolist() == [1, 0] and where[1].tolist() == [3, 3]
    assert where[2].tolist() == [-1, -1]  # a text with no window has none
    mean = windows.aggregate_mean(values, owner, 2, weights=np.array([1, 1, 2, 1]))
    assert mean[0].tolist() == pytest.approx([(0.1 + 0.8 + 0.6) / 4, (0.9 + 0.2 + 0.2) / 4])
