"""The long demo calls (``core.demo.make_long_calls``): as long as real calls, the topic a few turns among
neutral ones. Pure Python: no model, no MLflow, a second or two in all."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from core import demo
from core.demo import LONG_CALL_SECTIONS, TOPICS, long_call_words, make_long_calls, make_long_calls_annotated

SPEAKERS = ("Agent: ", "Customer: ")
# Words of the TOPICS phrases that any call may say: function words and what identity checks, holds and
# contact confirmations need ("account", "security", "email", "date", "last"). Every other word of a phrase or
# a topic name gives a topic away and must stay out of the neutral turns.
GENERIC = {
    "a", "after", "against", "an", "and", "another", "are", "as", "be", "being", "by", "can", "can't", "date", "do",
    "don't", "down", "each", "early", "email", "explain", "for", "from", "go", "got", "here", "high", "how", "i",
    "i'm", "if", "in", "into", "is", "it", "last", "less", "like", "me", "much", "my", "need", "never", "next", "not",
    "now", "of", "on", "one", "out", "please", "second", "security", "seems", "send", "should", "start", "take",
    "the", "there", "this", "to", "too", "was", "we", "what", "where", "which", "who", "why", "working", "would",
    "year", "you", "account", "want",
}
GIVEAWAYS = {word for topic, phrases in TOPICS.items() for text in (topic, *phrases)
             for word in re.findall(r"[a-z0-9'-]+", text.lower())} - GENERIC


@pytest.fixture(scope="module")
def calls() -> list[tuple[dict[str, str], list[tuple[str, str]]]]:
    return make_long_calls_annotated(400, seed=21, prefix="L")


def _about(row: dict[str, str]) -> list[str]:
    return row["topic"].split("; ")


def _says(line: str, topic: str) -> bool:
    return any(phrase.lower() in line.lower() for phrase in TOPICS[topic])


def test_same_seed_same_calls_other_seed_other_calls():
    first = make_long_calls(30, seed=5, prefix="L")
    assert make_long_calls(30, seed=5, prefix="L") == first
    assert [row["transcript"] for row in make_long_calls(30, seed=6, prefix="L")] != [r["transcript"] for r in first]
    assert [row["call_id"] for row in first[:2]] == ["L-0001", "L-0002"]
    assert all(set(row) == {"call_id", "transcript", "topic"} for row in first)


def test_annotations_are_the_transcripts(calls):
    rows = make_long_calls(400, seed=21, prefix="L")
    assert [row for row, _ in calls] == rows
    for row, turns in calls:
        assert "\n".join(line for _, line in turns) == row["transcript"]
        assert {section for section, _ in turns} <= set(LONG_CALL_SECTIONS)


def test_lengths_are_drawn_from_the_bounds(calls):
    words = [long_call_words(row["transcript"]) for row, _ in calls]
    assert all(300 <= w <= 1500 for w in words)
    # Uniform over the range: calls near both ends and around the middle.
    assert min(words) < 350 and max(words) > 1450 and 750 < sorted(words)[len(words) // 2] < 1050
    narrow = make_long_calls(40, seed=2, prefix="N", min_words=400, max_words=450)
    assert all(400 <= long_call_words(row["transcript"]) <= 450 for row in narrow)
    exact = make_long_calls(20, seed=3, prefix="E", min_words=600, max_words=600)
    assert {long_call_words(row["transcript"]) for row in exact} == {600}


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        make_long_calls(3, seed=1, prefix="L", min_words=500, max_words=400)
    with pytest.raises(ValueError, match="too few"):
        make_long_calls(3, seed=1, prefix="L", min_words=40, max_words=60)


def test_one_turn_a_line_each_with_its_speaker(calls):
    for row, _ in calls:
        lines = row["transcript"].split("\n")
        assert all(line.startswith(SPEAKERS) and line.split(": ", 1)[1].strip() for line in lines)


def test_the_call_runs_opening_checks_talk_closing(calls):
    for _, turns in calls:
        sections = [section for section, _ in turns]
        lines = [line for _, line in turns]
        assert sections[:2] == ["opening", "opening"] and sections[2] == "identity"
        assert lines[0].startswith("Agent: ") and lines[1].startswith("Customer: ")
        assert sections[-3:] == ["closing"] * 3 and "closing" not in sections[:-3]
        assert "Is there anything else" in lines[-3] and lines[-1].startswith("Agent: ")
        checks = max(i for i, section in enumerate(sections) if section in ("identity", "hold"))
        assert set(sections[2:checks + 1]) <= {"identity", "hold"}
        assert set(sections[checks + 1:-3]) == {"chatter", "topic"}
        asked = " ".join(lines[2:checks + 1])
        assert "full name" in asked or "first and last name" in asked or "speaking with" in asked
    holds = [turns for _, turns in calls if any(section == "hold" for section, _ in turns)]
    assert 0.2 < len(holds) / len(calls) < 0.5
    for turns in holds:
        said = [line for section, line in turns if section == "hold"]
        assert said[0] == "Agent: Let me put you on a brief hold while I pull up your account."
        assert said[-1] == "Agent: Thank you for holding."


def test_topic_sits_after_the_checks_anywhere_in_the_talk(calls):
    where = []
    for row, turns in calls:
        checks = max(i for i, (section, _) in enumerate(turns) if section in ("identity", "hold"))
        topical = [i for i, (_, line) in enumerate(turns) if any(_says(line, topic) for topic in _about(row))]
        assert topical and min(topical) > checks
        assert all(turns[i][0] == "topic" for i in topical)
        first = min(i for i, (section, _) in enumerate(turns) if section == "topic")
        where.append(first / len(turns))
    # Sometimes right after the checks, sometimes in the last third, and everywhere between.
    assert min(where) < 0.2 and sum(w > 2 / 3 for w in where) > len(where) / 10
    assert len({round(w, 1) for w in where}) >= 8


def test_no_other_topic_is_ever_said(calls):
    for row, _ in calls:
        text = row["transcript"].lower()
        for topic in TOPICS:
            if topic not in _about(row):
                assert not _says(text, topic), (row["call_id"], topic)
                assert not re.search(rf"\b{re.escape(topic)}\b", text), (row["call_id"], topic)


def test_about_one_call_in_eight_has_two_topics_in_separate_blocks(calls):
    two = [(row, turns) for row, turns in calls if len(_about(row)) == 2]
    assert 0.08 < len(two) / len(calls) < 0.18
    assert all(set(_about(row)) <= set(TOPICS) and len(set(_about(row))) == len(_about(row)) for row, _ in calls)
    for row, turns in two:
        sections = "".join("T" if section == "topic" else "." for section, _ in turns)
        blocks = re.findall(r"T+", sections)
        assert len(blocks) == 2, row["call_id"]
        starts = [m.start() for m in re.finditer(r"T+", sections)]
        spoken = [next(t for t in _about(row) if _says(turns[s][1], t)) for s in starts]
        assert sorted(spoken) == sorted(_about(row))


def test_neutral_turns_give_no_topic_away(calls):
    names = re.compile("|".join(rf"\b{re.escape(topic)}\b" for topic in TOPICS))
    for _, turns in calls:
        for section, line in turns:
            if section == "topic":
                continue
            text = line.split(": ", 1)[1].lower()
            assert not names.search(text), line
            assert not any(_says(text, topic) for topic in TOPICS), line
            words = set(re.findall(r"[a-z0-9'-]+", text)) - ({"address"} if section == "identity" else set())
            assert not words & GIVEAWAYS, (line, words & GIVEAWAYS)


def test_talk_varies_within_and_across_calls(calls):
    transcripts = [row["transcript"] for row, _ in calls]
    assert len(set(transcripts)) == len(transcripts)
    longest = max(calls, key=lambda call: len(call[1]))[1]
    chatter = [line for section, line in longest if section == "chatter" and long_call_words(line) > 4]
    # A 1500-word call is mostly chatter; its lines are drawn from decks, not one sentence over and over.
    assert len(chatter) > 40 and Counter(chatter).most_common(1)[0][1] <= 3
    assert len(set(chatter)) > 0.8 * len(chatter)
    openings = {turns[0][1] for _, turns in calls}
    assert len(openings) > 30


def test_long_call_files_are_named_not_written(tmp_path):
    assert demo.LONG_CALL_FILES == ("long_calls_train.csv", "long_calls_test.csv")
    written = {path.name for path in demo.write_dataset(tmp_path)}
    assert not written & set(demo.LONG_CALL_FILES)
    assert not any((tmp_path / name).exists() for name in demo.LONG_CALL_FILES)
    assert long_call_words("Agent: Hello there.\nCustomer: Hi.") == 5
