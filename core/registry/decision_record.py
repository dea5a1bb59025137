"""A promotion's decision record: what was decided, on what figures, by whom, as one self-contained HTML page.

1. :func:`compare` puts a candidate version beside what it would replace: the version in production, example by
   example where both were evaluated on the same examples (``core.examples.evaluation.like_for_like``, the
   comparison a promotion's confirmation shows), or, with nothing in production, the candidate's own pretrained
   baseline (said once). The :class:`Comparison` says it in words and keeps the numbers.
2. :func:`record` gathers the decision (model, candidate, the version replaced, who requested, who approved, when,
   why) with the comparison into a plain dict.
3. :func:`write` keeps it in MLflow: a run in the experiment ``Promotions - MODEL`` holding the page
   (``decision_record.html``, no example texts), the dict (``decision.json``) and the examples it fixes and
   breaks (``examples.json``). :func:`page` renders it again for a download, with the example texts only when
   asked for, escaped: call transcripts hold customers' personal data, and a record travels (mail, tickets).

The page is Jinja2 (MLflow brings it) with autoescaping on; it loads no script, style sheet or font.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from core import compare as compare_mod
from core import runs as runs_mod
from core.examples import significance as sig
from core.examples.analysis import changes as changes_of
from core.examples.analysis import evidence_lines
from core.examples.evaluation import like_for_like
from core.metrics import METRICS, headline
from core.naming import BOOKKEEPING_TAG
from core.settings import ensure_experiment

EXPERIMENT_PREFIX = "Promotions - "
HTML = "decision_record.html"
DATA = "decision.json"
EXAMPLES = "examples.json"
RUN_TYPE = "decision_record"
VERSION_TAG = "decision_record"  # on the registered version: the run id of its record


def experiment_name(model_name: str) -> str:
    """The experiment holding a registered model's decision records."""
    return f"{EXPERIMENT_PREFIX}{model_name}"


def recorded(model_version) -> dict[str, float]:
    """The metric values a version carries in its ``metric.*`` tags (as ``model_transition.recorded_metrics``)."""
    return {k.removeprefix("metric."): float(v) for k, v in model_version.tags.items() if k.startswith("metric.")}


@dataclass(frozen=True)
class Comparison:
    """A candidate beside what it would replace. ``against`` is "" when there is nothing to compare with."""

    against: str  # "version 2 in production" | "its pretrained baseline (run demo-bert-tiny_baseline)" | ""
    metrics: list[dict] = field(default_factory=list)  # {"metric", "candidate", "other", "change"}
    sentences: list[str] = field(default_factory=list)  # one per metric
    verdict: str = ""  # is the difference more than chance gives? ("" without an answer)
    shared: int | None = None  # examples compared one by one (None: not compared that way)
    fixes: int | None = None
    breaks: int | None = None
    by_label: list[dict] = field(default_factory=list)  # label, support, right before/after, fixes, breaks, F1s
    why: str = ""  # why there is no example-by-example comparison
    evidence: dict[str, str] | None = None  # what the audit event records (LikeForLike.evidence)
    examples: dict[str, list[dict]] = field(default_factory=dict, repr=False)  # "fixes"/"breaks": the texts

    @property
    def headline(self) -> str:
        """The first line: what the candidate is compared with, said once."""
        if self.against.startswith("its pretrained baseline"):
            return f"Nothing is in production yet, so the candidate is compared with {self.against}."
        if self.against:
            return f"The candidate against {self.against}."
        return "Nothing is in production yet and the candidate has no pretrained baseline to compare with."

    def changes_sentence(self) -> str:
        """"On the same 400 validation examples, the candidate fixes 23 ... (net +18).\""""
        if self.shared is None:
            return ""
        other = "production" if "production" in self.against else "the baseline"
        if not self.shared:
            return f"The candidate and {other} share no validation examples."
        return (f"On the same {self.shared} validation examples, the candidate fixes {self.fixes} that {other} gets "
                f"wrong and breaks {self.breaks} that it got right (net {self.fixes - self.breaks:+d}).")

    def label_sentences(self) -> list[str]:
        """One per label whose examples changed: "billing: 3 fixed, 1 broken; F1 0.71 to 0.80 (+0.09)"."""
        said = []
        for row in self.by_label:
            if not row["fixes"] and not row["breaks"] and not row["F1 change"]:
                continue
            said.append(f"{row['label']}: {row['fixes']} fixed, {row['breaks']} broken; F1 {row['F1 before']:.2f} "
                        f"to {row['F1 after']:.2f} ({row['F1 change']:+.2f})")
        return said

    def words(self) -> list[str]:
        """The whole comparison in sentences, as Home and the CLI say it."""
        lines = [self.headline, *self.sentences]
        lines += [line for line in (self.verdict, self.changes_sentence()) if line]
        labels = self.label_sentences()
        if labels:
            lines.append("Per label: " + "; ".join(labels) + ".")
        elif self.shared:
            lines.append("No label changes.")
        if self.why:
            lines.append(self.why)
        return lines

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "examples"}


def compare(mlflow_client, model_name: str, candidate, current, read: Callable[[str], pd.DataFrame | None],
            metric: str = "accuracy") -> Comparison:
    """``candidate`` (a registered version) beside ``current`` (the version in production, or None: then its
    pretrained baseline, the baseline run of its base model in its experiment). ``read(run_id)`` gives a run's
    predictions table or None."""
    mine = headline(recorded(candidate)) or recorded(candidate)
    run_id = candidate.tags.get("source_run_id") or candidate.run_id
    run = mlflow_client.get_run(run_id) if run_id else None
    if current is not None:
        against = f"version {current.version} in production"
        theirs = headline(recorded(current)) or recorded(current)
        found = like_for_like(mlflow_client, model_name, current, run_id, candidate.tags.get("validation_digest"),
                              run.data.params.get("validation_file") if run else None, read, metric) \
            if run_id else None
        compared, difference = (found.changes, found.difference) if found is not None else (None, None)
        why = (found.why or "") if found is not None else "The candidate names no run to compare."
        evidence = found.evidence if found is not None else None
        sentences = compare_mod.compare_versions(mine, theirs, candidate_label="",
                                                 current_label=f"version {current.version}")
    else:
        baseline = _baseline(mlflow_client, run) if run is not None else None
        if baseline is None:
            sentences = [f"{compare_mod.display_name(m)} {v:.2f}" for m, v in mine.items() if _finite(v)]
            return Comparison("", _rows(mine, {}), sentences)
        against = f"its pretrained baseline (run {baseline.info.run_name})"
        theirs = headline(baseline.data.metrics)
        sentences = compare_mod.compare_versions(mine, theirs, candidate_label="", current_label="",
                                                 against="its pretrained baseline")
        new, old = read(run_id), read(baseline.info.run_id)
        compared = changes_of(new, old) if new is not None and old is not None else None
        tested = metric if sig.supported(metric) else "accuracy"
        difference = sig.compare_tables(old, new, tested) if compared is not None else None
        why = "" if compared is not None else ("The candidate or its baseline has no predictions table, so the "
                                               "comparison is by the metrics above only.")
        evidence = ({**difference.evidence(a="baseline", b="candidate"), "compared_with": against}
                    if difference is not None else None)
    verdict = ""
    if difference is not None:
        verdict = (f"Against {against}: {difference.verdict()}." if not difference.why
                   else f"No answer on whether the difference is real: {difference.why}.")
    if compared is None:
        return Comparison(against, _rows(mine, theirs), sentences, verdict, why=why, evidence=evidence)
    by_label = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in compared.by_label.to_dict("records")]
    return Comparison(against, _rows(mine, theirs), sentences, verdict, compared.shared, len(compared.fixes),
                      len(compared.breaks), by_label, why, evidence,
                      {"fixes": _examples(compared.fixes), "breaks": _examples(compared.breaks)})


def _baseline(mlflow_client, run):
    """The finished baseline run of ``run``'s base model in its experiment, or None."""
    name = run.data.tags.get("base_model_name")
    if not name or "'" in name:
        return None
    found = runs_mod.search_all(mlflow_client, [run.info.experiment_id],
                                f"tags.run_type = 'baseline' and tags.base_model_name = '{name}' "
                                "and attributes.status = 'FINISHED'")
    return found[0] if found else None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _rows(mine: Mapping[str, float], theirs: Mapping[str, float]) -> list[dict]:
    names = [m for m in METRICS if m in mine] + sorted(m for m in mine if m not in METRICS)
    rows = []
    for name in names:
        new, old = mine.get(name), theirs.get(name)
        rows.append({"metric": compare_mod.display_name(name), "candidate": new if _finite(new) else None,
                     "other": old if _finite(old) else None,
                     "change": new - old if _finite(new) and _finite(old) else None})
    return rows


def _examples(frame: pd.DataFrame) -> list[dict]:
    keep = [c for c in ("text", "hypothesis", "true_label", "production said", "candidate says") if c in frame]
    return [{**{k: str(v) for k, v in row[keep].items()}, **({"evidence": lines} if (lines := evidence_lines(row))
                                                             else {})}
            for _, row in frame.iterrows()]


# -- the record --------------------------------------------------------------------------------------------------
def record(*, model_name: str, alias: str, version, candidate_label: str, replaced: str | None,
           comparison: Comparison, decided_by: str, reason: str, requested_by: str = "", requested_at: str = "",
           request_reason: str = "", request_id: str = "", decided_at: str | None = None,
           action: str = "promote") -> dict:
    """The decision as a plain dict (what ``decision.json`` holds and the page shows)."""
    return {"model": model_name, "alias": alias, "version": str(version), "candidate": candidate_label,
            "replaced": replaced, "action": action, "request_id": request_id, "requested_by": requested_by,
            "requested_at": requested_at, "request_reason": request_reason, "decided_by": decided_by,
            "decided_at": decided_at or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "reason": reason, "comparison": comparison.to_json(), "words": comparison.words()}


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Decision record: {{ r.model }} version {{ r.version }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2430; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #c8ccd4; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef0f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #5a6070; } pre { white-space: pre-wrap; margin: 0; font-family: inherit; }
</style></head>
<body>
<h1>Decision record: {{ r.model }} version {{ r.version }}</h1>
<p id="summary">{{ verb }} version <b>{{ r.version }}</b> of <b>{{ r.model }}</b> ({{ r.candidate }}) to
<b>{{ r.alias }}</b>, {% if r.replaced %}replacing version <b>{{ r.replaced }}</b>{% else %}where nothing was before
{% endif %}.</p>
<table id="people">
{% if r.requested_by %}<tr><th>Requested by</th><td>{{ r.requested_by }}</td><td>{{ r.requested_at }}</td>
<td>{{ r.request_reason }}</td></tr>{% endif %}
<tr><th>{{ "Approved by" if r.requested_by else "Promoted by" }}</th><td>{{ r.decided_by }}</td>
<td>{{ r.decided_at }}</td><td>{{ r.reason }}</td></tr>
{% if r.request_id %}<tr><th>Request</th><td colspan="3">{{ r.request_id }}</td></tr>{% endif %}
</table>
<h2>The comparison in words</h2>
<ul id="words">{% for line in r.words %}<li>{{ line }}</li>{% endfor %}</ul>
<h2>The numbers</h2>
<table id="metrics"><tr><th>metric</th><th>candidate (version {{ r.version }})</th>
<th>{{ c.against or "nothing to compare with" }}</th><th>change</th></tr>
{% for m in c.metrics %}<tr><td>{{ m.metric }}</td><td class="n">{{ num(m.candidate) }}</td>
<td class="n">{{ num(m.other) }}</td><td class="n">{{ signed(m.change) }}</td></tr>{% endfor %}
</table>
{% if c.shared is not none %}
<p id="changes">Examples compared one by one: <b>{{ c.shared }}</b>; it fixes <b class="fixes">{{ c.fixes }}</b>
and breaks <b class="breaks">{{ c.breaks }}</b>.</p>
<h2>Per label</h2>
<table id="labels"><tr><th>label</th><th>examples</th><th>right before</th><th>right after</th><th>fixed</th>
<th>broken</th><th>F1 before</th><th>F1 after</th><th>F1 change</th></tr>
{% for row in c.by_label %}<tr><td>{{ row.label }}</td><td class="n">{{ row.support }}</td>
<td class="n">{{ row["right before"] }}</td><td class="n">{{ row["right after"] }}</td>
<td class="n">{{ row.fixes }}</td><td class="n">{{ row.breaks }}</td><td class="n">{{ num(row["F1 before"]) }}</td>
<td class="n">{{ num(row["F1 after"]) }}</td><td class="n">{{ signed(row["F1 change"]) }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if examples is not none %}
{% for kind, title in (("fixes", "Examples it fixes"), ("breaks", "Examples it breaks")) %}
<h2>{{ title }}</h2>
<table class="examples" id="{{ kind }}"><tr><th>text</th><th>true label</th><th>before</th><th>after</th></tr>
{% for e in examples.get(kind, []) %}<tr><td><pre>{{ e.text }}</pre>{% if e.get("hypothesis") %}<br>
<span class="note">{{ e.get("hypothesis") }}</span>{% endif %}{% for line in e.get("evidence", []) %}<br>
<span class="note evidence">the candidate: {{ line }}</span>{% endfor %}</td><td>{{ e.get("true_label", "") }}</td>
<td>{{ e.get("production said", "") }}</td><td>{{ e.get("candidate says", "") }}</td></tr>{% endfor %}
</table>
{% endfor %}
{% else %}
<p class="note" id="no-texts">The example texts are left out of this record (they may hold customers' personal
data); the person downloading it can ask for them.</p>
{% endif %}
<p class="note">Kept in MLflow: experiment {{ experiment }}{% if run_id %}, run {{ run_id }}{% endif %}.</p>
</body></html>
"""
_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _num(value) -> str:
    return "–" if value is None or not _finite(value) else f"{value:.4f}"


def _signed(value) -> str:
    return "–" if value is None or not _finite(value) else f"{value:+.4f}"


def page(decision: dict, examples: dict[str, list[dict]] | None = None, run_id: str = "") -> str:
    """The record as one HTML page; the example texts only when ``examples`` is given (escaped like the rest)."""
    verb = "Rolled back" if decision.get("action") == "rollback" else "Promoted"
    return _ENV.from_string(_TEMPLATE).render(
        r=decision, c=decision["comparison"], examples=examples, num=_num, signed=_signed, verb=verb,
        experiment=experiment_name(decision["model"]), run_id=run_id)


def write(mlflow_client, decision: dict, examples: dict[str, list[dict]]) -> str:
    """Keep the record in the model's ``Promotions - MODEL`` experiment; returns the run id."""
    experiment_id = ensure_experiment(experiment_name(decision["model"]))
    # not a source of candidates: the pickers (core.runs.experiments) leave it out
    mlflow_client.set_experiment_tag(experiment_id, BOOKKEEPING_TAG, "decision records")
    run = mlflow_client.create_run(experiment_id, run_name=f"version {decision['version']} to {decision['alias']}",
                                   tags={"run_type": RUN_TYPE, "promotes_model": decision["model"],
                                         "promotes_version": decision["version"],
                                         "decided_by": decision["decided_by"]})
    run_id = run.info.run_id
    try:
        mlflow_client.log_text(run_id, page(decision, run_id=run_id), HTML)
        mlflow_client.log_dict(run_id, decision, DATA)
        mlflow_client.log_dict(run_id, examples, EXAMPLES)
    except Exception:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id


def read(mlflow_client, run_id: str) -> tuple[dict, dict[str, list[dict]]]:
    """(the decision, the examples) kept in a record's run."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    # on this thread: MLflow downloads through a thread pool, whose threads would not carry a signed-in
    # session's credentials (core.auth keeps them per thread)
    repo = get_artifact_repository(mlflow_client.get_run(run_id).info.artifact_uri)
    read_back = []
    with tempfile.TemporaryDirectory() as folder:
        for name in (DATA, EXAMPLES):
            local = Path(folder) / name
            repo._download_file(name, str(local))
            read_back.append(json.loads(local.read_text("utf-8")))
    return read_back[0], read_back[1]


def download(mlflow_client, run_id: str, *, with_texts: bool = False) -> str:
    """A record's page for a download: without the example texts unless ``with_texts``."""
    decision, examples = read(mlflow_client, run_id)
    return page(decision, examples if with_texts else None, run_id=run_id)
