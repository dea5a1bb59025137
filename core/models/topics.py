"""Topics over whole texts with an NLI model: does the text entail "This call is about {topic}."?

For each text and each candidate topic the premise is the text and the hypothesis is ``template.format(topic)``;
the score is the probability of entailment:

- a head with an ``entailment`` and a ``contradiction`` label (MNLI's entailment / neutral / contradiction):
  the softmax over those two alone, ``p(e) / (p(e) + p(c))``, as the zero-shot pipelines do when several
  labels may be true; "neutral" then counts for neither side;
- any other head with an entailment label (the zero-shot ``entailment`` / ``not_entailment`` models, the demo
  models): the entailment column of the softmax over all its labels.

A text longer than the model's window is read as windows (``core.models.windows``); a topic's score is the
largest over them, and the window that gave it is the evidence. Topics are scored independently (multi-label):
a text may be about several topics, or none. Evaluation, scoring, the Registry's "Try it" (``core.scoring.
topics``) and the served model (``core.models.served``) all read topics here, so they agree to the digit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import TopicError
from core.models import windows
from core.models.infer import length_limit, predict_proba
from core.models.windows import Reading, Split, Window
from core.topic_pairs import (
    DEFAULT_TEMPLATE,
    DEFAULT_THRESHOLD,
    MAX_TOPICS,
    check_template,
    check_threshold,
    contradiction_index,
    entailment_index,
)

MAX_TOPIC_CHARS = 200


def parse_topics(text: str) -> list[str]:
    """Topics typed in a box: one per line or comma-separated; blanks dropped (not yet checked)."""
    return [part.strip() for line in (text or "").splitlines() for part in line.split(",") if part.strip()]


def check_topics(topics: Sequence[str]) -> list[str]:
    """The candidate topics, stripped: at least one, at most MAX_TOPICS, no blank and no duplicate."""
    if isinstance(topics, str):
        topics = [topics]
    cleaned, seen = [], {}
    for position, topic in enumerate(topics or [], start=1):
        if not isinstance(topic, str) or not topic.strip():
            raise TopicError(f"Topic {position} is empty: give each topic a few words, e.g. 'account access'.",
                             key="topics")
        topic = topic.strip()
        if len(topic) > MAX_TOPIC_CHARS:
            raise TopicError(f"Topic {position} ({topic[:40]!r}...) is {len(topic)} characters long: keep a topic "
                             f"under {MAX_TOPIC_CHARS}, a few words naming it.", key="topics")
        if topic.casefold() in seen:
            raise TopicError(f"Topic {topic!r} is listed twice (topics {seen[topic.casefold()]} and {position}): "
                             f"keep it once.", key="topics")
        seen[topic.casefold()] = position
        cleaned.append(topic)
    if not cleaned:
        raise TopicError("No topics given: type the candidate topics, one per line or separated by commas.",
                         key="topics")
    if len(cleaned) > MAX_TOPICS:
        raise TopicError(f"{len(cleaned)} topics given; at most {MAX_TOPICS} can be scored at once (each topic "
                         f"is one more pass of the model over every call). Keep the ones that matter.",
                         key="topics")
    return cleaned


def check_nli(id2label: Mapping) -> int:
    """The entailment index of a model that can tag topics; a plain-language TopicError for one that cannot."""
    index = entailment_index(id2label)
    if index is None:
        labels = ", ".join(repr(str(v)) for _, v in sorted((id2label or {}).items())) or "none"
        raise TopicError(f"This model cannot tag topics: it is not an NLI (entailment) model. Its labels are "
                         f"{labels}; topic tagging needs a model with an 'entailment' label, such as a zero-shot "
                         f"NLI model. Use it to score texts instead.", key="model")
    return index


def hypotheses(topics: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The hypothesis for each topic: ``template`` with the topic in place of ``{}``."""
    template = check_template(template)
    return [template.format(topic) for topic in check_topics(topics)]


def entailment_scores(probabilities: np.ndarray, id2label: Mapping) -> np.ndarray:
    """Each row's entailment score from its class probabilities (the rule in the module docstring)."""
    entail = check_nli(id2label)
    contra = contradiction_index(id2label)
    p_entail = probabilities[:, entail]
    if contra is None or probabilities.shape[1] < 3:
        return p_entail
    both = p_entail + probabilities[:, contra]
    # the two-way softmax of the logits equals the ratio of the full softmax's probabilities
    return np.divide(p_entail, both, out=np.full_like(p_entail, 0.5), where=both > 0)


@dataclass(frozen=True)
class TopicReading:
    """Calls read window by window against each topic: ``scores`` (calls x topics, in [0, 1]) is, per topic, the
    largest entailment score over the call's windows, and ``deciding`` (calls x topics) the window that gave it,
    an index into ``split.windows`` (the evidence a person reads)."""

    scores: np.ndarray
    deciding: np.ndarray
    split: Split
    aggregation: str = "max"

    def evidence(self, call: int, topic: int) -> Window:
        return self.split.windows[int(self.deciding[call, topic])]

    def params(self) -> dict[str, object]:
        """How the calls were read, as run params."""
        return {"windows.budget_tokens": self.split.budget, "windows.overlap": self.split.overlap,
                "windows.aggregation": self.aggregation}


def read_topics(model, tokenizer, transcripts: Sequence[str], topics: Sequence[str],
                template: str = DEFAULT_TEMPLATE, *, reading: Reading | None = None, batch_size: int = 32,
                device: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> TopicReading:
    """Each topic's entailment score for each whole transcript, with the window that decided it.

    Each transcript is read as overlapping windows (``core.models.windows``: every token read, cuts at turns);
    each window is scored against each topic's hypothesis, and a topic's score for the call is the largest
    over its windows (a topic is discussed somewhere in the call, not everywhere: SummaC's max over chunks).
    ``on_progress(done, total)`` counts transcripts. The model is refused unless its labels include entailment.
    """
    id2label = dict(getattr(model.config, "id2label", None) or {})
    check_nli(id2label)
    said = hypotheses(topics, template)
    transcripts = list(transcripts)
    for position, text in enumerate(transcripts, start=1):
        if not isinstance(text, str):
            raise TopicError(f"Transcript {position} is not text ({type(text).__name__}): give each call as text.",
                             key="transcripts")
    reading = reading or Reading()
    limit = length_limit(model, tokenizer, reading.max_length)
    room = windows.budget(tokenizer, limit, said)
    parts = windows.split(transcripts, tokenizer, room, overlap=reading.overlap_for(room), truncate=reading.truncate)
    premises = [window.text for window in parts.windows for _ in said]
    probabilities = predict_proba(model, tokenizer, premises, said * len(parts.windows), batch_size=batch_size,
                                  max_length=limit, device=device, on_progress=windows._per_text(on_progress,
                                                                                                len(transcripts)))
    per_window = entailment_scores(probabilities, id2label).reshape(len(parts.windows), len(said))
    scores, deciding = windows.aggregate_max(per_window, parts.owner, len(transcripts))
    return TopicReading(scores.reshape(len(transcripts), len(said)), deciding.reshape(len(transcripts), len(said)),
                        parts)


def topic_scores(model, tokenizer, transcripts: Sequence[str], topics: Sequence[str],
                 template: str = DEFAULT_TEMPLATE, *, batch_size: int = 32, max_length: int = 256,
                 device: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Each topic's entailment probability for each transcript: n_transcripts x n_topics, in [0, 1]; whole
    transcripts are read as windows of ``max_length`` tokens (:func:`read_topics`, which also says which window
    decided each score)."""
    return read_topics(model, tokenizer, transcripts, topics, template, reading=Reading(int(max_length)),
                       batch_size=batch_size, device=device, on_progress=on_progress).scores


def tagged(scores: np.ndarray, topics: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> list[list[str]]:
    """For each transcript, the topics scored at or above ``threshold``, the most likely first."""
    threshold = check_threshold(threshold)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    topics = list(topics)
    if scores.shape[1] != len(topics):
        raise TopicError(f"{scores.shape[1]} scores per transcript but {len(topics)} topics.", key="topics")
    return [[topics[j] for j in np.argsort(-row, kind="stable") if row[j] >= threshold] for row in scores]
