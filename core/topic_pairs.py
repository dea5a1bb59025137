"""Labelled calls as NLI pairs: how a zero-shot (entailment) model learns a team's topics.

A call labelled with its topics (``"fees; rollover"``) becomes one pair per true topic, labelled entailment
(premise: the call; hypothesis: ``template.format(topic)``, e.g. "This call is about fees."), and ``negatives``
pairs with topics it does not have, labelled with the model's not-entailment label (``not_entailment``, or
``contradiction`` for a three-way MNLI head). The negatives are drawn with one seeded generator, so every run of
a grid trains on the same pairs. The labels are the base model's own names, so its pretrained head is kept and
the baseline is the real zero-shot model. An encoder with no classification head (``bert-base-uncased``,
``microsoft/deberta-v3-base``, all-MiniLM-L6-v2 as the hub ships it) trains the pairs with a new two-way NLI head
(``NLI_LABELS``; :func:`pair_config`): its baseline then scores at random, and the fine-tune is what learns.

Also here, shared with scoring (``core.scoring.topics``): the hypothesis template's check and which of a
model's labels means entailment.
"""

from __future__ import annotations

import copy
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.data import MAX_TOPICS, Examples
from core.errors import GridError, TopicError, TuneboardError

DEFAULT_TEMPLATE = "This call is about {}."
DEFAULT_THRESHOLD = 0.5
DEFAULT_TRAIN_WINDOW = 64  # a few turns: a positive is the topic's own lines (bench/bench_long_calls.py)
MIN_TRAIN_WINDOW = 16  # tokens: a turn or two; a shorter training window would cut the topic's own lines
NLI_LABELS = ("entailment", "not_entailment")  # a new NLI head's labels (an encoder that comes without a head)


def _whole(value, low: int, high: int) -> bool:
    """A whole number (not a bool) from ``low`` to ``high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _normalised(label) -> str:
    return str(label).strip().lower().replace("-", "_").replace(" ", "_")


def _index_of(id2label: Mapping, accept: Callable[[str], bool]) -> int | None:
    for key, label in (id2label or {}).items():
        if accept(_normalised(label)):
            return int(key)
    return None


def entailment_index(id2label: Mapping) -> int | None:
    """The class index whose label means entailment ("entailment", "ENTAILMENT", "entail"...); None if none.

    "not_entailment" and the like are the opposite, not a match.
    """
    return _index_of(id2label, lambda name: name.startswith("entail"))


def contradiction_index(id2label: Mapping) -> int | None:
    """The class index labelled contradiction ("contradiction", "CONTRADICTION", "contradict"); None if none."""
    return _index_of(id2label, lambda name: name.startswith("contradict"))


def not_entailment_index(id2label: Mapping) -> int | None:
    """The class index labelled as the opposite of entailment ("not_entailment", "non-entailment"); None if none."""
    return _index_of(id2label, lambda name: name.startswith(("not_entail", "non_entail", "no_entail")))


def is_nli(id2label: Mapping) -> bool:
    """Whether a model with these labels can tag topics (one of its labels means entailment)."""
    return entailment_index(id2label) is not None


def has_trained_head(config: Any) -> bool:
    """Whether a checkpoint's config says it holds a trained classification head (a ``...ForSequenceClassification``
    architecture); an encoder as pretrained (``BertModel``, ``DebertaV2ForMaskedLM``, none named) holds none."""
    return any(str(a).endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ())


def pair_config(config: Any) -> Any:
    """The config whose labels topic pairs train with: the base model's own where they are NLI or where it has a
    trained head (refused in words when it is not NLI: :meth:`TopicPairs.labels`); else a copy with a new two-way
    NLI head's labels (``NLI_LABELS``), so an encoder that comes without a head learns the pairs on a new one."""
    if is_nli(getattr(config, "id2label", None) or {}) or has_trained_head(config):
        return config
    fresh = copy.deepcopy(config)
    fresh.id2label = dict(enumerate(NLI_LABELS))
    fresh.label2id = {name: i for i, name in enumerate(NLI_LABELS)}
    return fresh


def check_template(template: str) -> str:
    """The hypothesis template, stripped; it must hold exactly one ``{}`` where the topic goes."""
    if not isinstance(template, str) or not template.strip():
        raise TopicError(f"The hypothesis template is empty. Write a sentence with {{}} where the topic goes, "
                         f"e.g. {DEFAULT_TEMPLATE!r}.", key="template")
    template = template.strip()
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        fields = None  # a lone "{" or "}"
    if fields is None or len(fields) != 1 or fields[0] != ("", "", None):
        found = "none" if fields == [] else "a stray or named brace" if fields is None or len(fields) == 1 \
            else f"{len(fields)}"
        raise TopicError(f"The hypothesis template {template!r} must contain exactly one {{}} where the topic "
                         f"goes (found {found}), e.g. {DEFAULT_TEMPLATE!r}.", key="template")
    return template


def check_threshold(threshold: Any) -> float:
    """The tagging threshold as a float in [0, 1]."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(threshold, bool) or not 0.0 <= value <= 1.0:
        raise TopicError(f"The threshold must be a number between 0 and 1, not {threshold!r}.", key="threshold")
    return value


@dataclass(frozen=True)
class TopicPairs:
    """How calls become pairs: the hypothesis ``template``, ``negatives`` per call, the ``seed`` they are drawn
    with, and the ``threshold`` at which topic-level evaluation tags a topic."""

    template: str = DEFAULT_TEMPLATE
    negatives: int = 2
    seed: int = 0
    threshold: float = DEFAULT_THRESHOLD
    top_windows: int = 1  # a long call's pair trains on the windows the model scores highest for it (k)
    # tokens of call per training window of a long call's pair (None: the reading's window); evaluation, tagging
    # and serving still read windows of max_length (core.training.bags: why a shorter one trains better)
    train_window: int | None = DEFAULT_TRAIN_WINDOW
    # more windows a pair with a topic its call lacks trains on: those the model scores highest (hard negatives)
    hard_negatives: int = 0

    @classmethod
    def parse(cls, given: Mapping[str, Any] | TopicPairs | bool | None, *,
              key: str = "topic_pairs") -> TopicPairs | None:
        """``{template: ..., negatives: 2}`` (or ``true`` for the defaults) from a grid; None when not asked for."""
        if given is None or given is False or isinstance(given, TopicPairs):
            return given or None
        if given is True:
            return cls()
        if not isinstance(given, Mapping):
            raise GridError(f"must be true, or settings like {{template: \"{DEFAULT_TEMPLATE}\", negatives: 2}}; "
                            f"got {type(given).__name__}.", key=key)
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise GridError("not a setting; the settings are template, negatives, seed, threshold, top_windows, "
                            "train_window and hard_negatives.", key=f"{key}.{unknown[0]}")
        settings = {**cls().__dict__, **given}
        for name in ("negatives", "seed"):
            value = settings[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GridError(f"must be a whole number, 0 or more, not {value!r}.", key=f"{key}.{name}")
        if not _whole(settings["top_windows"], 1, 64):
            raise GridError(f"must be a whole number from 1 to 64 (the windows of a long call each pair trains on), "
                            f"not {settings['top_windows']!r}.", key=f"{key}.top_windows")
        window = settings["train_window"]
        if window is not None and not _whole(window, MIN_TRAIN_WINDOW, 4096):
            raise GridError(f"must be a whole number of tokens from {MIN_TRAIN_WINDOW} to 4096 (the part of a long "
                            f"call each pair trains on; {DEFAULT_TRAIN_WINDOW} when left out), or null for the "
                            f"reading's whole window; not {window!r}.", key=f"{key}.train_window")
        if not _whole(settings["hard_negatives"], 0, 8):
            raise GridError(f"must be a whole number from 0 to 8 (more windows of a call each pair with a topic it "
                            f"lacks trains on), not {settings['hard_negatives']!r}.", key=f"{key}.hard_negatives")
        if settings["negatives"] > MAX_TOPICS:
            raise GridError(f"at most {MAX_TOPICS} (one per other topic), not {settings['negatives']}.",
                            key=f"{key}.negatives")
        try:
            settings["template"] = check_template(settings["template"])
            settings["threshold"] = check_threshold(settings["threshold"])
        except TopicError as exc:
            raise GridError(str(exc), key=f"{key}.{exc.key}") from None
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def params(self) -> dict[str, Any]:
        """How a run records it (MLflow params)."""
        return {f"topic_pairs.{k}": v for k, v in self.to_dict().items()}

    def labels(self, id2label: Mapping) -> tuple[str, str]:
        """The base model's (entailment, not-entailment) label names; refused for a model that is not NLI."""
        entail = entailment_index(id2label)
        other = not_entailment_index(id2label)
        if other is None:
            other = contradiction_index(id2label)
        if entail is None or other is None:
            names = ", ".join(repr(str(v)) for _, v in sorted((id2label or {}).items())) or "none"
            raise TuneboardError(f"topic_pairs needs an NLI base model (labels such as 'entailment' and "
                                 f"'not_entailment'), or an encoder with no classification head, which gets a new "
                                 f"NLI head; this one has a trained head for other classes ({names}). Train on the "
                                 "topics as plain labels instead (leave topic_pairs out), or start from the encoder "
                                 "it was trained from.")
        return str(id2label[entail]), str(id2label[other])

    def build(self, calls: Examples, topics: Sequence[str], id2label: Mapping) -> Examples:
        """Each call's pairs: its true topics (entailment), then ``negatives`` others (not entailment)."""
        entail, other = self.labels(id2label)
        rng = random.Random(self.seed)
        rows, premises, hypotheses, labels = [], [], [], []
        for row, text, own in zip(calls.rows, calls.text_a, calls.labels, strict=True):
            have = {t.casefold() for t in own}
            others = [t for t in topics if t.casefold() not in have]
            drawn = rng.sample(others, min(self.negatives, len(others)))
            for topic, label in [*((t, entail) for t in own), *((t, other) for t in drawn)]:
                rows.append(row)
                premises.append(text)
                hypotheses.append(self.template.format(topic))
                labels.append(label)
        return replace(calls, rows=tuple(rows), text_a=tuple(premises), text_b=tuple(hypotheses),
                       labels=tuple(labels), columns=(calls.columns[0], "hypothesis", calls.columns[2]))


def all_topics(*files: Examples | None) -> list[str]:
    """Every topic named in the files' label cells, once (first spelling kept), sorted; at most MAX_TOPICS."""
    seen: dict[str, str] = {}
    for examples in files:
        for own in examples.labels if examples is not None else ():
            for topic in own:
                seen.setdefault(topic.casefold(), topic)
    topics = sorted(seen.values(), key=str.casefold)
    if len(topics) > MAX_TOPICS:
        raise TuneboardError(f"the calls name {len(topics)} topics; at most {MAX_TOPICS} can be trained as pairs "
                             "(each topic is one more pass of the model over every validation call).")
    if len(topics) < 2:
        raise TuneboardError(f"the calls name {len(topics)} topic ({', '.join(topics) or 'none'}); pairs need at "
                             "least two, so a call has a topic it is not about.")
    return topics


def without_calls_of(train: Examples, validation: Examples) -> tuple[Examples, int]:
    """The training calls less those whose text is also a validation call (it would be graded on what it learnt);
    and how many were left out."""
    held_out = set(validation.text_a)
    keep = [i for i, text in enumerate(train.text_a) if text not in held_out]
    if len(keep) == len(train.text_a):
        return train, 0
    if not keep:
        raise TuneboardError(f"{train.path}: every training call is also in the validation file {validation.path}; "
                             "train and validate on different calls.")
    pick = (lambda values: tuple(values[i] for i in keep))
    return replace(train, rows=pick(train.rows), text_a=pick(train.text_a), labels=pick(train.labels)), \
        len(train.text_a) - len(keep)
