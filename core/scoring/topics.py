"""Zero-shot topic tagging of whole calls with a registered (or any loaded) NLI model.

The reading itself (windows, entailment scores, the max over windows, tags) is ``core.models.topics``, shared
with the served model; named here too for scoring's callers. Here: a model named by reference (``models:/NAME@
production``...) reading one call, with the window that decided each topic (the Registry's "Try it").
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from core.errors import TopicError
from core.models.sources import load
from core.models.topics import (  # noqa: F401 - named here for scoring's callers
    MAX_TOPIC_CHARS,
    TopicReading,
    check_nli,
    check_topics,
    entailment_scores,
    hypotheses,
    parse_topics,
    read_topics,
    tagged,
    topic_scores,
)
from core.models.windows import Reading
from core.topic_pairs import (  # noqa: F401 - shared with training, named here for scoring's callers
    DEFAULT_TEMPLATE,
    DEFAULT_THRESHOLD,
    MAX_TOPICS,
    check_template,
    check_threshold,
    contradiction_index,
    entailment_index,
    is_nli,
)


def model_labels(ref: str) -> dict[int, str]:
    """The class labels of the model ``ref`` names (``models:/NAME/3``...), read from its loaded config."""
    return load(ref)[2]


def call_topics(ref: str, transcript: str, topics: Sequence[str], template: str = DEFAULT_TEMPLATE) -> pd.Series:
    """One whole call's topic probabilities (topic -> score, in the order given) from the model ``ref`` names;
    ``call_evidence`` gives the windows that decided them too."""
    return call_evidence(ref, transcript, topics, template)["score"].rename("score")


def call_evidence(ref: str, transcript: str, topics: Sequence[str], template: str = DEFAULT_TEMPLATE,
                  reading: Reading | None = None) -> pd.DataFrame:
    """One whole call against each topic: a frame indexed by topic with its ``score`` and the ``evidence``
    (the text of the window that decided the score), in the order given; ``attrs``: the ``windows`` the call was
    read in and the ``budget_tokens`` of text each held."""
    if not isinstance(transcript, str) or not transcript.strip():
        raise TopicError("The transcript is empty: paste the text of a call first.", key="transcripts")
    topics = check_topics(topics)
    template = check_template(template)
    model, tokenizer, _ = load(ref)
    read = read_topics(model, tokenizer, [transcript], topics, template, reading=reading)
    frame = pd.DataFrame({"score": read.scores[0], "evidence": [read.evidence(0, j).text for j in range(len(topics))]},
                         index=pd.Index(topics, name="topic"))
    frame.attrs.update(windows=int(read.split.counts[0]), budget_tokens=int(read.split.budget))  # how it was read
    return frame


