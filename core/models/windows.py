"""Reading a text longer than a model's window: overlapping windows that together cover every token.

A model reads at most ``max_length`` tokens at once: for an NLI model the premise, the hypothesis and the
pair's special tokens together. A call of 700-2,000 words is 1,000-3,000 tokens, so reading its head alone
would miss most of it. Every path where a text meets a model (training, evaluation, topic tagging, scoring a
file, the Registry's "Try it", the served model) reads it through :func:`split` here:

1. the **budget**: tokens of text one window may hold, ``max_length`` (capped by what the model takes) less the
   longest hypothesis and the special tokens of a pair (:func:`budget`);
2. the **cuts**: a window that must end early ends at the last turn boundary in its second half (a line such as
   ``Agent:`` / ``Customer:``), else at a line break, else after a sentence, else between words; the next
   window starts up to ``overlap`` tokens earlier, at the earliest such boundary in that stretch, so a turn cut
   at the edge is read whole by one of the two;
3. every token lies in at least one window, and each window's text is a slice of the text (what is shown as
   the evidence for a decision); a window never holds more than the budget, re-tokenized (checked);
4. ``truncate`` (a setting that asks for it) keeps only the first window and counts the tokens it cut, so a
   run or a page can say how much it did not read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import GridError
from core.models.infer import length_limit, predict_proba

DEFAULT_MAX_LENGTH = 256
OVERLAP_SHARE = 8  # with no overlap given, neighbouring windows share an eighth of a window (32 of 256 tokens)
MIN_BUDGET = 16  # fewer tokens of text than this per window reads nothing useful: refused

# Where a window may end, best first: a new speaker's turn, a line break, a sentence's end, a word's start.
TURN, LINE, SENTENCE, WORD = 3, 2, 1, 0
# Each pattern's group 1 is the gap a cut may fall in; the cut goes before the first token that reaches into it
# (WordPiece leaves the gap out of every token, SentencePiece puts it at the start of the next one).
_TURN = re.compile(r"(\n)[ \t]*[A-Z][\w .'-]{0,30}:")
_LINE = re.compile(r"(\n)")
_SENTENCE = re.compile(r"[.!?][\"')\]]*(\s)")


@dataclass(frozen=True)
class Reading:
    """How a text longer than the model's window is read.

    ``max_length``: tokens the model reads at once (premise, hypothesis and special tokens together);
    ``overlap``: tokens neighbouring windows share (None: an eighth of a window); ``truncate``: read only the
    first window and count what is cut (a setting that asks for it; never the default).
    """

    max_length: int = DEFAULT_MAX_LENGTH
    overlap: int | None = None
    truncate: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise GridError(f"must be a whole number of tokens, 8 or more, not {self.max_length!r}.",
                            key="max_length")
        if self.overlap is not None and (isinstance(self.overlap, bool) or not isinstance(self.overlap, int)
                                         or self.overlap < 0):
            raise GridError(f"must be a whole number of tokens, 0 or more, not {self.overlap!r}.",
                            key="window_overlap")
        if not isinstance(self.truncate, bool):
            raise GridError(f"must be true or false, not {self.truncate!r}.", key="truncate")

    @classmethod
    def from_settings(cls, settings: dict, default_max_length: int = DEFAULT_MAX_LENGTH) -> Reading:
        """From a run's hyperparameters (``max_length``, ``window_overlap``, ``truncate``)."""
        return cls(int(settings.get("max_length", default_max_length)), settings.get("window_overlap"),
                   bool(settings.get("truncate", False)))

    def overlap_for(self, budget_tokens: int) -> int:
        """The overlap in tokens for windows of ``budget_tokens``: at most half a window, so reading moves on."""
        wanted = budget_tokens // OVERLAP_SHARE if self.overlap is None else self.overlap
        return max(0, min(wanted, budget_tokens // 2))


@dataclass(frozen=True)
class Window:
    """One window of a text: its text (a slice of the whole), where it lies in characters, and its tokens."""

    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class Split:
    """Every text's windows, flat: ``windows[i]`` belongs to text ``owner[i]``; per text its ``tokens`` and the
    tokens a truncating reading ``cut``. ``budget`` and ``overlap`` are what the windows were cut with."""

    windows: list[Window]
    owner: np.ndarray
    tokens: np.ndarray
    cut: np.ndarray
    budget: int
    overlap: int
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", np.bincount(self.owner, minlength=len(self.tokens)).astype(int))

    @property
    def texts(self) -> list[str]:
        return [w.text for w in self.windows]

    def summary(self) -> dict[str, float]:
        """What was read, as run metrics: texts' tokens (median, p90, max), windows per text, tokens cut."""
        tokens = self.tokens if len(self.tokens) else np.zeros(1)
        counts = self.counts if len(self.counts) else np.zeros(1)
        return {"text_tokens_median": float(np.median(tokens)), "text_tokens_p90": float(np.percentile(tokens, 90)),
                "text_tokens_max": float(tokens.max()), "windows_per_text_mean": round(float(counts.mean()), 3),
                "windows_per_text_max": float(counts.max()), "windows": float(len(self.windows)),
                "tokens_cut": float(self.cut.sum()), "texts_cut": float((self.cut > 0).sum())}


def special_tokens(tokenizer, pair: bool) -> int:
    """The special tokens the tokenizer adds to one text, or to a pair ([CLS] a [SEP] b [SEP]: 3)."""
    try:
        return int(tokenizer.num_special_tokens_to_add(pair=pair))
    except (AttributeError, NotImplementedError, TypeError):
        return 3 if pair else 2


def token_counts(tokenizer, texts: Sequence[str]) -> list[int]:
    """Each text's length in the tokenizer's tokens, special tokens left out."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def budget(tokenizer, max_length: int, hypotheses: Sequence[str] | None = None) -> int:
    """Tokens of text one window may hold: ``max_length`` less the longest hypothesis and the special tokens.

    ``max_length`` should already be capped by what the model takes (``core.models.infer.length_limit``).
    """
    pair = bool(hypotheses)
    longest = max(token_counts(tokenizer, list(hypotheses)), default=0) if pair else 0
    room = int(max_length) - longest - special_tokens(tokenizer, pair)
    if room < MIN_BUDGET:
        raise GridError(f"max_length {max_length} leaves {room} tokens of the text per window once the "
                        f"hypothesis ({longest} tokens) and special tokens are in; raise max_length to at least "
                        f"{int(max_length) - room + MIN_BUDGET}, or shorten the template and topics.",
                        key="max_length")
    return room


def _boundaries(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """For each token, the best kind of cut that may fall just before it (TURN, LINE, SENTENCE, WORD, or -1)."""
    kinds = np.full(len(offsets), -1, dtype=np.int8)
    if not offsets:
        return kinds
    starts = np.asarray([start for start, _ in offsets], dtype=np.int64)
    ends = np.asarray([end for _, end in offsets], dtype=np.int64)
    kinds[0] = TURN
    gap = starts[1:] > ends[:-1]
    spaced = np.asarray([start < len(text) and text[start].isspace() for start in starts[1:]], dtype=bool)
    kinds[1:][gap | spaced] = WORD  # a space before the token, or the token starts with one: between words
    for kind, pattern in ((SENTENCE, _SENTENCE), (LINE, _LINE), (TURN, _TURN)):
        marks = np.asarray([m.start(1) for m in pattern.finditer(text)], dtype=np.int64)
        if len(marks) == 0:
            continue
        at = np.searchsorted(ends, marks, side="right")  # the first token ending past the gap's start
        at = at[(at > 0) & (at < len(ends))]
        kinds[at] = np.maximum(kinds[at], kind)
    return kinds


def _end(kinds: np.ndarray, start: int, limit: int) -> int:
    """Where a window from ``start`` that cannot hold the rest ends: the best boundary in its second half."""
    low = start + max(1, (limit - start) // 2)
    stretch = kinds[low + 1:limit + 1]  # a cut before token i ends the window at i; here limit < len(kinds)
    if len(stretch) and stretch.max() >= 0:
        best = stretch.max()
        return low + 1 + int(np.flatnonzero(stretch == best)[-1])
    return limit


def _next_start(kinds: np.ndarray, start: int, end: int, overlap: int) -> int:
    """Where the next window starts: ``overlap`` tokens before ``end`` at most, at the best boundary there."""
    if overlap <= 0:
        return end
    low = max(start + 1, end - overlap)
    stretch = kinds[low:end]
    if len(stretch) and stretch.max() >= 0:
        return low + int(np.flatnonzero(stretch == stretch.max())[0])
    return low


def _cuts(kinds: np.ndarray, budget_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) that cover all ``len(kinds)`` tokens, none longer than the budget."""
    total, start, ranges = len(kinds), 0, []
    while True:
        if total - start <= budget_tokens:
            ranges.append((start, total))
            return ranges
        end = _end(kinds, start, start + budget_tokens)
        ranges.append((start, end))
        start = _next_start(kinds, start, end, overlap)


def split(texts: Sequence[str], tokenizer, budget_tokens: int, *, overlap: int = 0,
          truncate: bool = False) -> Split:
    """Every text's windows (see the module docstring); an empty text is one empty window."""
    texts = list(texts)
    if budget_tokens < 1:
        raise ValueError(f"a window must hold at least one token, not {budget_tokens}")
    overlap = max(0, min(int(overlap), budget_tokens // 2))
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                        verbose=False) if texts else {"offset_mapping": []}
    windows: list[Window] = []
    owner: list[int] = []
    tokens = np.zeros(len(texts), dtype=np.int64)
    cut = np.zeros(len(texts), dtype=np.int64)
    for index, (text, offsets) in enumerate(zip(texts, encoded["offset_mapping"], strict=True)):
        offsets = [tuple(o) for o in offsets]
        tokens[index] = len(offsets)
        kinds = _boundaries(text, offsets)
        ranges = _fitted(text, offsets, kinds, tokenizer, budget_tokens, overlap)
        if truncate and len(ranges) > 1:
            cut[index] = len(offsets) - ranges[0][1]
            ranges = ranges[:1]
        for start, end in ranges:
            windows.append(_window(text, offsets, start, end))
            owner.append(index)
    return Split(windows, np.asarray(owner, dtype=np.int64), tokens, cut, budget_tokens, overlap)


def _window(text: str, offsets: list[tuple[int, int]], start: int, end: int) -> Window:
    if not offsets:
        return Window(text, 0, len(text), 0)
    first = 0 if start == 0 else offsets[start][0]
    last = len(text) if end == len(offsets) else offsets[end - 1][1]
    while first < last and text[first].isspace():  # a window is shown to people: no blank edges
        first += 1
    while last > first and text[last - 1].isspace():
        last -= 1
    return Window(text[first:last], first, last, end - start)


def _fitted(text: str, offsets, kinds: np.ndarray, tokenizer, budget_tokens: int,
            overlap: int) -> list[tuple[int, int]]:
    """The cuts, re-tokenized: a slice can tokenize a little longer than its share of the whole (a word's first
    piece); such a window is cut again with a budget smaller by the excess, so no window is ever truncated."""
    room = budget_tokens
    for _ in range(8):
        ranges = _cuts(kinds, room, overlap) if len(offsets) > room else [(0, len(offsets))]
        if len(ranges) == 1 and len(offsets) <= budget_tokens:
            return ranges
        texts = [_window(text, offsets, start, end).text for start, end in ranges]
        excess = max(n - budget_tokens for n in token_counts(tokenizer, texts))
        if excess <= 0:
            return ranges
        room -= excess
        if room < 1:
            break
    raise ValueError(f"could not cut a text of {len(offsets)} tokens into windows of {budget_tokens}")


def aggregate_mean(values: np.ndarray, owner: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per text, the (weighted) mean of its windows' rows: a plain classifier's probabilities over a long text."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones(len(owner)) if weights is None else np.asarray(weights, dtype=np.float64).clip(min=1e-9)
    total = np.zeros((n, *values.shape[1:]))
    np.add.at(total, owner, values * weights.reshape(-1, *([1] * (values.ndim - 1))))
    mass = np.bincount(owner, weights=weights, minlength=n).reshape(-1, *([1] * (values.ndim - 1)))
    return (total / np.where(mass > 0, mass, 1.0)).astype(np.float32)


def aggregate_max(values: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per text and column, the largest window value and the window (index into the flat list) that gave it."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(owner), int(np.prod(values.shape[1:])))
    best = np.full((n, flat.shape[1]), -np.inf)
    where = np.full((n, flat.shape[1]), -1, dtype=np.int64)
    for row in range(len(owner)):  # windows are few per text; a loop keeps the first of equal maxima
        text = owner[row]
        better = flat[row] > best[text]
        best[text][better] = flat[row][better]
        where[text][better] = row
    shape = (n, *values.shape[1:])
    return best.reshape(shape).astype(np.float32), where.reshape(shape)


@dataclass(frozen=True)
class Read:
    """Texts read window by window: per text its class probabilities (``probabilities``), the window that
    decided them (``deciding``, an index into ``split.windows``), and the windows themselves."""

    probabilities: np.ndarray
    deciding: np.ndarray
    split: Split
    aggregation: str

    def evidence(self, row: int) -> Window:
        return self.split.windows[int(self.deciding[row])]


def predict(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
            reading: Reading | None = None, batch_size: int = 32, device: str | None = None,
            entailment: int | None = None, on_progress=None) -> Read:
    """Class probabilities of whole texts (or pairs), read as windows (``core.models.infer.predict_proba`` on
    each), one row per text.

    How windows make one answer (``aggregation``): with ``pairs`` and an ``entailment`` column (an NLI model
    asked whether a long premise entails a short hypothesis), the window most likely to entail decides, as
    document-level NLI is read ("max"); otherwise the windows' probabilities are averaged, weighted by their
    tokens ("mean": every window is a sample of the same text, and one window's confident guess should not
    outvote the rest), and the most confident window is kept as the evidence.
    ``on_progress(done, total)`` counts texts.
    """
    reading = reading or Reading()
    texts = list(texts)
    limit = length_limit(model, tokenizer, reading.max_length)
    room = budget(tokenizer, limit, list(pairs) if pairs is not None else None)
    parts = split(texts, tokenizer, room, overlap=reading.overlap_for(room), truncate=reading.truncate)
    second = [pairs[i] for i in parts.owner] if pairs is not None else None
    progress = _per_text(on_progress, len(texts))
    probs = predict_proba(model, tokenizer, parts.texts, second, batch_size=batch_size, max_length=limit,
                          device=device, on_progress=progress)
    n = len(texts)
    if pairs is not None and entailment is not None:
        _, deciding = aggregate_max(probs[:, entailment:entailment + 1], parts.owner, n)
        deciding = deciding[:, 0]
        out = probs[deciding] if n else np.zeros((0, probs.shape[1]), dtype=np.float32)
        return Read(out.astype(np.float32), deciding, parts, "max")
    weights = np.asarray([w.tokens for w in parts.windows], dtype=np.float64)
    _, deciding = aggregate_max(probs.max(axis=1, keepdims=True), parts.owner, n)
    return Read(aggregate_mean(probs, parts.owner, n, weights), deciding[:, 0], parts, "mean")


def _per_text(on_progress, texts: int):
    """A progress callback over windows (or pairs) turned into one over texts, for people watching a job."""
    if on_progress is None:
        return None

    def report(done: int, total: int) -> None:
        on_progress(min(texts, round(texts * done / max(total, 1))), texts)

    return report
