"""What predictions tables tell: filtered examples, per-label numbers, disagreements, what a promotion changes.

Pure functions over the tables ``core.examples.table`` logs and reads (one row per validation example). Two
tables are matched example by example on the text, the hypothesis, the true label and, for an example that
appears more than once, its occurrence: the same file gives the same matches, and two different files are
compared on the examples they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from core.examples.table import EVIDENCE_PREFIX, NO_TOPIC, SCORE_PREFIX, TOPIC_SEPARATOR, score_columns

SHORT = 120  # characters of a text shown in a table cell; the full text on demand


def labels_of(frame: pd.DataFrame) -> list[str]:
    """The classes of a table, in the model's order (its ``score: <label>`` columns)."""
    return [c[len(SCORE_PREFIX):] for c in score_columns(frame)]


def shorten(text: str, limit: int = SHORT) -> str:
    """``text`` on one line, cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def evidence(row: pd.Series | Mapping) -> list[tuple[str, float | None, str]]:
    """For a call of a topic run read in windows: each tagged topic (or, when none is, the likeliest), its score
    and the window of the call that decided it, the likeliest first (empty for runs on short texts, whose tables
    keep no windows)."""
    found = []
    for column, value in dict(row).items():
        if str(column).startswith(EVIDENCE_PREFIX) and isinstance(value, str) and value.strip():
            topic = str(column)[len(EVIDENCE_PREFIX):]
            score = pd.to_numeric(dict(row).get(SCORE_PREFIX + topic), errors="coerce")
            found.append((topic, None if pd.isna(score) else float(score), value))
    return sorted(found, key=lambda item: -(item[1] or 0.0))


def evidence_lines(row: pd.Series | Mapping, limit: int = 300) -> list[str]:
    """``refund 0.94: "Customer: I want that 40 euros back ..."``, one per tagged topic (:func:`evidence`)."""
    said = dict(row)
    tagged = set(str(said.get("predicted_label", said.get("candidate says", ""))).split(TOPIC_SEPARATOR))
    return [f"{topic} {'' if score is None else f'{score:.2f}'}{'' if topic in tagged else ' (not tagged)'}: "
            f"\"{shorten(text, limit)}\"" for topic, score, text in evidence(row)]


def filter_examples(frame: pd.DataFrame, *, true_labels: Sequence[str] | None = None,
                    predicted_labels: Sequence[str] | None = None, wrong_only: bool = False,
                    confidence: tuple[float, float] = (0.0, 1.0), search: str = "") -> pd.DataFrame:
    """The examples that pass every filter given: true label in ``true_labels``, predicted label in
    ``predicted_labels`` (None or empty: any), wrongly predicted, a confidence within the band (ends
    included), ``search`` found in the text, the hypothesis or where the row stands (its line, and its own id
    where its file has one: "call_id T-0006"), ignoring case, as plain text, not a pattern."""
    keep = pd.Series(True, index=frame.index)
    labels = labels_of(frame)
    for column, chosen in (("true_label", true_labels), ("predicted_label", predicted_labels)):
        if chosen:  # a call's cell may hold several topics: it passes when one of them is chosen
            keep &= pd.Series([bool(found & set(chosen)) for found in label_sets(frame[column], labels)],
                              index=frame.index)
    if wrong_only:
        keep &= ~frame["correct"].astype(bool)
    low, high = confidence
    keep &= frame["confidence"].between(low, high)
    if search:
        found = frame["text"].str.contains(search, case=False, regex=False)
        for column in ("hypothesis", "row"):
            if column in frame.columns:
                found |= frame[column].astype(str).str.contains(search, case=False, regex=False)
        keep &= found
    return frame[keep]


def label_sets(values: Sequence, labels: Sequence[str]) -> list[set[str]]:
    """Each cell's labels: a label as it is; a topic run's call cell split into its topics ("fees; rollover"),
    "(no topic)" as none."""
    known = set(labels)
    return [{str(v)} if str(v) in known else set() if v == NO_TOPIC else set(str(v).split(TOPIC_SEPARATOR))
            for v in values]


def one_against_rest(true: Sequence, predicted: Sequence, labels: Sequence[str]) -> dict[str, list]:
    """Precision, recall, F1 and support of each of ``labels`` (in that order), one against the rest; a topic
    run's call cell counts for every topic it holds (:func:`label_sets`). A label never predicted has precision 0,
    one never true recall 0 and support 0."""
    labels = list(labels)
    true_sets, said_sets = label_sets(true, labels), label_sets(predicted, labels)
    rows: dict[str, list] = {"label": labels, "precision": [], "recall": [], "f1": [], "support": []}
    for label in labels:
        hit = sum(label in t and label in s for t, s in zip(true_sets, said_sets, strict=True))
        support, tagged = sum(label in t for t in true_sets), sum(label in s for s in said_sets)
        precision, recall = hit / tagged if tagged else 0.0, hit / support if support else 0.0
        rows["precision"].append(precision)
        rows["recall"].append(recall)
        rows["f1"].append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        rows["support"].append(support)
    return rows


def per_label(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-label numbers of one table (:func:`one_against_rest`, the model's order): on a topic run's table
    (one row per call), each topic's."""
    return pd.DataFrame(one_against_rest(frame["true_label"], frame["predicted_label"], labels_of(frame)))


def per_label_by_run(tables: Mapping[str, pd.DataFrame], runs: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Per-label numbers of several runs, one row per run and label: ``run_id``, ``run``, ``group``, ``label``,
    ``precision``, ``recall``, ``f1``, ``support``. ``runs`` maps each run id to (its name, its group)."""
    parts = []
    for run_id, table in tables.items():
        name, group = runs[run_id]
        parts.append(per_label(table).assign(run_id=run_id, run=name, group=group))
    if not parts:
        return pd.DataFrame(columns=["run_id", "run", "group", "label", "precision", "recall", "f1", "support"])
    long = pd.concat(parts, ignore_index=True)
    return long[["run_id", "run", "group", "label", "precision", "recall", "f1", "support"]]


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` indexed by the example it holds (text, hypothesis, true label, occurrence)."""
    hypothesis = frame["hypothesis"] if "hypothesis" in frame.columns else pd.Series("", index=frame.index)
    parts = pd.DataFrame({"text": frame["text"], "hypothesis": hypothesis.fillna(""),
                          "true_label": frame["true_label"]})
    occurrence = parts.groupby(["text", "hypothesis", "true_label"], sort=False).cumcount()
    keyed = frame.copy()
    keyed.index = pd.MultiIndex.from_arrays([parts["text"], parts["hypothesis"], parts["true_label"], occurrence],
                                            names=["_text", "_hypothesis", "_true", "_n"])
    return keyed


def _matched(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``a`` and ``b`` holding the same examples, in ``a``'s order, aligned row by row."""
    ka, kb = _keyed(a), _keyed(b)
    shared = ka.index[ka.index.isin(kb.index)]
    return ka.loc[shared].reset_index(drop=True), kb.loc[shared].reset_index(drop=True)


def matched(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``a`` and ``b`` holding the same examples, in ``a``'s order, aligned row by row (a paired
    comparison of two runs starts here)."""
    return _matched(a, b)


def _example_columns(rows: pd.DataFrame, evidence: bool = False) -> pd.DataFrame:
    """The example itself; with ``evidence``, also the windows that decided its tagged topics and their scores."""
    kept = [c for c in ("row", "text", "hypothesis", "true_label") if c in rows.columns]
    if evidence:
        found = [c for c in rows.columns if str(c).startswith(EVIDENCE_PREFIX)]
        kept += found + [SCORE_PREFIX + c[len(EVIDENCE_PREFIX):] for c in found
                         if SCORE_PREFIX + c[len(EVIDENCE_PREFIX):] in rows.columns]
    return rows[kept]


def disagreements(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str) -> tuple[int, pd.DataFrame]:
    """(examples the two tables share, those on which their predicted labels differ).

    The frame holds the example, each run's prediction (columns named after the runs) and which one is right.
    """
    if name_a == name_b:
        name_a, name_b = f"{name_a} (first)", f"{name_b} (second)"
    left, right = _matched(a, b)
    differ = left["predicted_label"] != right["predicted_label"]
    out = _example_columns(left[differ]).copy()
    out[name_a] = left.loc[differ, "predicted_label"]
    out[name_b] = right.loc[differ, "predicted_label"]
    a_right, b_right = left.loc[differ, "correct"].astype(bool), right.loc[differ, "correct"].astype(bool)
    out["right"] = [name_a if x else name_b if y else "neither" for x, y in zip(a_right, b_right, strict=True)]
    return len(left), out.reset_index(drop=True)


@dataclass(frozen=True)
class Changes:
    """What a candidate changes against the current model on the examples both were evaluated on."""

    shared: int  # examples in both tables
    fixes: pd.DataFrame  # the current model got them wrong, the candidate right
    breaks: pd.DataFrame  # the current model got them right, the candidate wrong
    by_label: pd.DataFrame  # per true label: support, right before and after, fixes, breaks, F1 before and after

    def sentence(self, current: str = "production") -> str:
        """"On the same 400 validation examples, the candidate fixes 23 that production gets wrong and breaks 5
        that it got right (net +18).\""""
        if not self.shared:
            return (f"The candidate and {current} share no validation examples, so there is nothing to compare "
                    "example by example.")
        fixed, broken = len(self.fixes), len(self.breaks)
        return (f"On the same {self.shared} validation examples, the candidate fixes {fixed} "
                f"{'example' if fixed == 1 else 'examples'} {current} gets wrong and breaks {broken} it got right "
                f"(net {fixed - broken:+d}).")


def changes(candidate: pd.DataFrame, current: pd.DataFrame) -> Changes:
    """Example by example, what replacing ``current`` with ``candidate`` fixes and breaks, overall and per label."""
    new, old = _matched(candidate, current)
    fixed = ~old["correct"].astype(bool) & new["correct"].astype(bool)
    broken = old["correct"].astype(bool) & ~new["correct"].astype(bool)

    def listed(mask: pd.Series) -> pd.DataFrame:  # with the candidate's evidence: why it tags what it tags
        rows = _example_columns(new[mask], evidence=True).copy()
        rows["production said"] = old.loc[mask, "predicted_label"]
        rows["candidate says"] = new.loc[mask, "predicted_label"]
        return rows.reset_index(drop=True)

    labels = list(dict.fromkeys([*labels_of(candidate), *labels_of(current)]))
    present = set().union(*label_sets(new["true_label"], labels)) if len(new) else set()
    labels = [label for label in labels if label in present]
    before = one_against_rest(old["true_label"], old["predicted_label"], labels)
    after = one_against_rest(new["true_label"], new["predicted_label"], labels)
    by_label = pd.DataFrame({
        "label": labels, "support": before["support"],
        "right before": [int((old["correct"] & (old["true_label"] == lab)).sum()) for lab in labels],
        "right after": [int((new["correct"] & (new["true_label"] == lab)).sum()) for lab in labels],
        "fixes": [int((fixed & (new["true_label"] == lab)).sum()) for lab in labels],
        "breaks": [int((broken & (new["true_label"] == lab)).sum()) for lab in labels],
        "F1 before": before["f1"], "F1 after": after["f1"]})
    by_label["F1 change"] = by_label["F1 after"] - by_label["F1 before"]
    return Changes(len(new), listed(fixed), listed(broken), by_label)
