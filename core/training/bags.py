"""Training and evaluating on texts longer than the model's window.

Every example is read as windows (``core.models.windows``: overlapping, covering every token, cut at turns).
How windows become what the Trainer sees:

- **A plain example** (a text and its label): each window is a training row with the text's label, since the
  label holds for all of the text; evaluation averages the windows' probabilities, weighted by their tokens.
- **A pair labelled for a whole call** (topic pairs, "This call is about refunds." -> entailment): the label says
  the topic is somewhere in the call, not where. Multiple-instance learning in its cheap form: each epoch the
  pair trains on the ``k`` windows the model itself now scores highest for entailment (``topic_pairs.
  top_windows``): for a true topic the window that holds it; for a topic the call does not have, the windows
  most easily mistaken for it (hard negatives: greetings, identity checks, holds). Negatives only ever come from
  calls without the topic (the pairs are built that way, ``core.topic_pairs``). The first epoch chooses by the
  calls' own words (:func:`evidence`): a word counts for a topic as much as it is more common in the training
  calls labelled with the topic than in the others, and a window scores the sum of its words' counts;
  greetings and identity checks, said in every call, count for no topic. A pair with a topic the call lacks
  adds the words' evidence for the call's own topics: its window is the call's own topic read against another
  topic, the contrast that teaches which topic a line is about (with the evidence for the missing topic alone,
  the negatives' first windows held the call's topic in 12% of pairs, mostly chatter otherwise, and
  all-MiniLM-L6-v2 read long calls at topic_f1_macro 0.193; with this rule and 6 epochs, 0.528). Ties go to the
  window a pretrained head scores higher (a new head's: at random, seeded). From the second epoch on, the model
  chooses with the words: a pair's windows ranked by the model's entailment probability plus the words'
  evidence scaled to 0-1 within the call (a model still learning cannot pull a positive off the topic's window,
  a confident one can). ``topic_pairs.hard_negatives`` adds, to each pair with a topic its call lacks, the
  windows the model scores highest after that (a zero-shot head's false alarms on greetings and checks).
  With negatives chosen by the model alone (its hardest), all-MiniLM-L6-v2 fell back to "never" in the epoch
  after it had begun to learn (validation eval_f1 0.425 after the first epoch, 0.0 after the second). Why not
  the model alone from the start: a new head's scores mean nothing, and a weak zero-shot head's barely more.
  A window drawn at random holds the topic in about one call of six (a call of 1,000 words is about six
  windows of 256 tokens): all-MiniLM-L6-v2 with a new head trained on such draws learned "never"
  (topic_f1_macro 0.000 after three epochs, ``bench/bench_long_calls.py --part accuracy``); the demo BERT
  trained on the demo's short pairs (accuracy 0.81 on them) chose the topic's window in 8% of the long demo
  calls' true pairs (24 windows of 128 tokens each) and its fine-tune collapsed to "never" as well; the
  words chose it in 99%.
  A pair trains on shorter windows than evaluation reads (``topic_pairs.train_window``, 64 tokens by default):
  a window of 64 tokens is the topic's own lines and little else, where one of 256 is mostly the talk around
  them.
  Evaluation reads a pair by its window most likely to entail, as topic tagging does.

A call short enough for one window is one row, exactly as before windows.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import TrainerCallback

from core.data import Examples, LabelMapping
from core.models import windows
from core.topic_pairs import entailment_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """Examples read as windows and tokenized: ``features[i]`` is window ``i`` (with the example's second text,
    for pairs), ``owner[i]`` its example; ``labels`` the examples' label ids; ``entail`` the entailment class
    when the examples are pairs for an NLI head (their windows are then chosen, and read, by entailment)."""

    features: list[dict[str, np.ndarray]]
    owner: np.ndarray
    labels: np.ndarray
    split: windows.Split
    entail: int | None
    premises: Sequence[str] = ()  # per example its text and its second text (for pairs: the hypothesis)
    hypotheses: Sequence[str] | None = None

    @property
    def aggregation(self) -> str:
        return "max" if self.entail is not None else "mean"

    def probabilities(self, window_probabilities: np.ndarray) -> np.ndarray:
        """Per example, its class probabilities from its windows' (the module docstring's rule)."""
        n = len(self.labels)
        if self.entail is not None:
            _, where = windows.aggregate_max(window_probabilities[:, self.entail:self.entail + 1], self.owner, n)
            return np.asarray(window_probabilities)[where[:, 0]]
        weights = np.asarray([w.tokens for w in self.split.windows], dtype=np.float64)
        return windows.aggregate_mean(window_probabilities, self.owner, n, weights)


def room(tokenizer, max_length: int, *examples: Examples | None, hypotheses: list[str] | None = None) -> int:
    """Tokens of text per window for these examples: the longest second text (hypothesis) among them decides."""
    seconds = list(hypotheses or [])
    for found in examples:
        if found is not None and found.text_b is not None:
            seconds.extend(sorted(set(found.text_b), key=len)[-20:])  # the longest few; lengths vary little
    return windows.budget(tokenizer, max_length, seconds or None)


def encode(examples: Examples, tokenizer, mapping: LabelMapping, budget: int, reading: windows.Reading) -> Encoded:
    """Read every example as windows of ``budget`` tokens and tokenize them (with the example's second text)."""
    split = windows.split(list(examples.text_a), tokenizer, budget, overlap=reading.overlap_for(budget),
                          truncate=reading.truncate)
    second = [examples.text_b[i] for i in split.owner] if examples.text_b is not None else None
    encoded = tokenizer(split.texts, second, truncation=False, verbose=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    # int32 arrays, not lists of Python ints: 2,000 calls x 3 pairs x 10 windows of 256 tokens would hold 46
    # million int objects (gigabytes) as lists, under 200 MB as arrays
    features = [{k: np.asarray(encoded[k][i], dtype=np.int32) for k in keys} for i in range(len(split.windows))]
    entail = entailment_index(mapping.id2label) if examples.text_b is not None else None
    return Encoded(features, split.owner, np.asarray(mapping.encode(examples.labels)), split, entail,
                   tuple(examples.text_a), tuple(examples.text_b) if examples.text_b is not None else None)


class Rows:
    """Every window of every example, each with its example's label (a torch map-style dataset)."""

    def __init__(self, encoded: Encoded):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded.features)

    def __getitem__(self, index: int) -> dict:
        return {**self.encoded.features[index], "labels": int(self.encoded.labels[self.encoded.owner[index]])}


class Chosen:
    """Each pair's ``k`` windows the model scores highest for entailment, chosen again each epoch (see the
    module docstring). Its length never changes (the Trainer plans its steps once); which window an item is
    lives in a shared tensor, so dataloader worker processes see each new choice."""

    def __init__(self, encoded: Encoded, k: int, seed: int, hard: int = 0):
        import torch

        self.encoded, self.k, self.seed, self.hard = encoded, k, seed, hard
        self.rows = [np.flatnonzero(encoded.owner == b) for b in range(len(encoded.labels))]
        self.negative = [bool(label != encoded.entail) for label in encoded.labels]
        # a pair with a topic its call lacks trains on ``hard`` more windows: those the model scores highest
        self.slots = [(bag, rank) for bag, rows in enumerate(self.rows)
                      for rank in range(min(k + (hard if self.negative[bag] else 0), len(rows)))]
        self.choice = torch.tensor([self.rows[bag][rank] for bag, rank in self.slots], dtype=torch.long)
        self.choice.share_memory_()
        self.several = [bag for bag, rows in enumerate(self.rows) if len(rows) > 1]
        self._evidence: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> dict:
        row = int(self.choice[index])
        return {**self.encoded.features[row], "labels": int(self.encoded.labels[self.encoded.owner[row]])}

    def _set(self, ranked: dict[int, list[int]]) -> int:
        """Put each bag's ranked rows in its slots; how many slots changed."""
        import torch

        new = torch.tensor([ranked[bag][rank] if bag in ranked else int(self.choice[i])
                            for i, (bag, rank) in enumerate(self.slots)], dtype=torch.long)
        changed = int((new != self.choice).sum())
        self.choice.copy_(new)
        return changed

    def draw(self, epoch: int, model=None, collator=None, batch_size: int = 64) -> int:
        """The first choice: each long pair's windows ranked by the words' evidence for its hypothesis
        (:func:`evidence`); ties by ``model``'s entailment probability where it is given (a pretrained head),
        else at random (seeded by the run's seed and epoch)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        scores = self.evidence()
        model_scores = self._entailment(model, collator, batch_size) if model is not None else {}
        ranked = {}
        for bag in self.several:
            rows = rng.sample(list(self.rows[bag]), len(self.rows[bag]))
            # stable: equal keys keep the random order
            ranked[bag] = self._hardest_after(bag, sorted(rows, key=lambda r: (-round(scores[r], 9),
                                                                                -model_scores.get(r, 0.0))),
                                              model_scores)
        return self._set(ranked)

    def _hardest_after(self, bag: int, ranked: list[int], by_row: dict[int, float]) -> list[int]:
        """A negative pair's ``hard`` windows after its first ``k``: those the model scores highest (where there
        are scores: a pretrained head, or the model from the second epoch), whatever their words."""
        if not (self.hard and self.negative[bag] and by_row):
            return ranked
        return ranked[:self.k] + sorted(ranked[self.k:], key=lambda r: -by_row[r])

    def _entailment(self, model, collator, batch_size: int) -> dict[int, float]:
        """The model's entailment probability for every window of every long pair, by row."""
        rows = np.concatenate([self.rows[bag] for bag in self.several])
        scores = entailment_of(model, [self.encoded.features[r] for r in rows], collator, self.encoded.entail,
                               batch_size)
        return dict(zip(rows.tolist(), scores.tolist(), strict=True))

    def choose(self, model, collator, batch_size: int = 64) -> int:
        """The model's choice (see the module docstring): each pair's windows ranked by the model's entailment
        probability plus the words' evidence (scaled to 0-1 within the call), so a model still learning keeps a
        pair on the words' window, and a confident one can move it."""
        if not self.several:
            return 0
        by_row = self._entailment(model, collator, batch_size)
        words = self.evidence()
        ranked = {}
        for bag in self.several:
            rows = self.rows[bag].tolist()
            top = max(words[r] for r in rows) or 1.0
            ranked[bag] = self._hardest_after(bag, sorted(rows, key=lambda r: -(by_row[r] + words[r] / top)), by_row)
        return self._set(ranked)

    def evidence(self) -> np.ndarray:
        """:func:`evidence` for every window, computed once."""
        if self._evidence is None:
            self._evidence = evidence(self.encoded)
        return self._evidence


WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


MIN_CALLS = 2  # a word in one call of a topic's (a reference number, a phone number) says nothing of the topic
PRIOR_CALLS = 0.3  # each share drawn toward the word's share of all calls by this many calls' worth


def _log_ratio(inside: int, n_in: int, outside: int, n_out: int) -> float:
    """log of a word's share of the topic's calls over its share of the other calls, each smoothed toward its
    share of all calls. On 160 long demo calls (8.5 windows each) the first choice held the topic in 180 of
    180 true pairs (0.89 on 60 calls; 0.93 without ``MIN_CALLS``, where reference numbers scored high)."""
    everywhere = (inside + outside) / (n_in + n_out)
    return math.log((inside + PRIOR_CALLS * everywhere) / (n_in + PRIOR_CALLS)) \
        - math.log((outside + PRIOR_CALLS * everywhere) / (n_out + PRIOR_CALLS))


def evidence(encoded: Encoded) -> np.ndarray:
    """Per window of pairs labelled per call, how much its words speak for its pair's hypothesis.

    For a hypothesis, the calls (distinct premises) with an entailment pair for it are its calls, every other
    training call is not. A word's weight for it is the log of how much more often the word is in its calls
    than in the others (:func:`_log_ratio`), kept where above 0 and the word is in at least ``MIN_CALLS`` of
    its calls; a window's score, the sum of its distinct words' weights. Words every call has (greetings,
    identity checks, holds) weigh nothing. For a pair whose topic the call lacks, the window's best score for
    one of the call's own topics is added: the call's own topic, read against the missing one.
    """
    texts, hypotheses = encoded.premises, encoded.hypotheses
    if encoded.entail is None or hypotheses is None:
        return np.zeros(len(encoded.features))
    calls = {premise: _words(premise) for premise in dict.fromkeys(texts)}
    holding: dict[str, set[str]] = defaultdict(set)
    for premise, hypothesis, label in zip(texts, hypotheses, encoded.labels, strict=True):
        if label == encoded.entail:
            holding[hypothesis].add(premise)
    weights: dict[str, dict[str, float]] = {}
    for hypothesis, with_it in holding.items():
        inside = Counter(word for premise in with_it for word in calls[premise])
        outside = Counter(word for premise, words in calls.items() if premise not in with_it for word in words)
        n_in, n_out = len(with_it), len(calls) - len(with_it)
        weights[hypothesis] = {word: w for word, count in inside.items()
                               if count >= MIN_CALLS and (w := _log_ratio(count, n_in, outside[word], n_out)) > 0}
    own = defaultdict(list)  # per call, the hypotheses it entails
    for hypothesis, with_it in holding.items():
        for premise in with_it:
            own[premise].append(hypothesis)

    def score(words: set[str], hypothesis: str) -> float:
        weight = weights.get(hypothesis)
        return sum(weight.get(word, 0.0) for word in words) if weight else 0.0

    scores = np.zeros(len(encoded.features))
    for row, window in enumerate(encoded.split.windows):
        bag, words = encoded.owner[row], _words(window.text)
        scores[row] = score(words, hypotheses[bag])
        if encoded.labels[bag] != encoded.entail:  # a topic the call lacks: read against what the call is about
            scores[row] += max((score(words, h) for h in own[texts[bag]]), default=0.0)
    return scores


def entailment_of(model, features: list[dict], collator, entail: int, batch_size: int = 64) -> np.ndarray:
    """The model's entailment probability for each tokenized window pair, in eval mode, shortest first."""
    import torch

    out = np.zeros(len(features), dtype=np.float32)
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = collator([features[i] for i in rows])
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                out[rows] = logits.float().softmax(dim=-1)[:, entail].cpu().numpy()
    finally:
        model.train(was_training)
    return out


class ChooseWindows(TrainerCallback):
    """Before each epoch, each long pair's windows are chosen again (:class:`Chosen`); the share of choices that
    changed is logged (``windows_rechosen``: near 0 once the model has settled on where each topic is)."""

    def __init__(self, dataset: Chosen, collator, new_head: bool, batch_size: int = 64):
        self.dataset, self.collator, self.new_head, self.batch_size = dataset, collator, new_head, batch_size
        self.changed: list[float] = []

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        epoch = round(state.epoch or 0)
        if epoch == 0:
            changed = self.dataset.draw(epoch, *((model, self.collator, self.batch_size) if not self.new_head
                                                 else ()))
        else:
            changed = self.dataset.choose(model, self.collator, self.batch_size)
        self.changed.append(changed / max(len(self.dataset), 1))
        log.info("epoch %d: %d of %d window choices changed", epoch, changed, len(self.dataset))
