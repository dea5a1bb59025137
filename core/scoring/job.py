"""A scoring job: one file through one model, recorded as an MLflow run of its own.

:func:`score` reads top to bottom:

1. resolve the model (``core.models.sources``); a model that does not exist is refused before any run exists;
2. open the run in experiment ``Scoring - <model name>``: tags ``run_type=score``, the model's name, version
   and URI, who submitted it;
3. read and check the file (inside the allowed folders when the spec is confined), tag its sha256 and rows;
4. load the model once per process and read each whole text as overlapping windows (``core.models.windows``):
   classify each text (``windows.predict``), or tag topics with an NLI model (``core.scoring.topics``), in
   batches on the job's device, reporting rows done; with ``truncate`` only the first window is read, and the
   run says how much was not (tag ``truncated``);
5. write the result, with the window that decided each row (or each tagged topic) as its evidence, to a
   temporary folder and log it as the run's artifact (``scored/<output name>``);
6. log rows, rows/s, label (or topic) counts and how the texts were read (tokens per text, windows per text,
   tokens cut); then write ``output_path`` when the spec has one (the CLI), by a rename, last, so a run that
   fails leaves no file; end FINISHED, or FAILED with a plain reason.

The same spec runs from the CLI (in this process) and from the queue (``JobQueue.submit``, run by the
worker through ``core.scoring.kind``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import paths, tracking
from core import runs as runs_mod
from core.data import FORMATS, file_digest, split_sheet
from core.errors import NotFoundError, ScoreError, explain
from core.jobkind import SPEC_TAG
from core.models import sources as models
from core.models import windows
from core.models.windows import Reading, Split
from core.naming import RUN_TYPE_TAG
from core.scoring import files, topics
from core.settings import configure_mlflow, current_user, ensure_experiment

log = logging.getLogger(__name__)

KIND = "score"
MODES = ("classify", "topics")
ARTIFACT_FOLDER = "scored"
DEFAULT_TEMPLATE = "This call is about {}."
TRUNCATED_TAG = "truncated"  # set when ``truncate`` left tokens unread: what was not read, in words
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ScoreSpec:
    """What to score with what. ``output_name`` is the result's file name (its extension sets the format; the
    run's artifact); ``output_path``, when given (the CLI), is where the result is written as well.
    ``confined``: read the input only inside the allowed data folders (a page's upload; ``core.paths``).
    Texts longer than ``max_length`` tokens are read as windows sharing ``window_overlap`` tokens (None: an
    eighth of a window); ``truncate`` reads only the first window of each text instead (and says what it cut)."""

    model: str
    input_path: str
    output_name: str = ""
    mode: str = "classify"
    topics: tuple[str, ...] = ()
    template: str = DEFAULT_TEMPLATE
    threshold: float = 0.5
    text_column: str | None = None
    pair_column: str | None = None
    batch_size: int = 32
    max_length: int = 256
    output_path: str | None = None
    confined: bool = False
    window_overlap: int | None = None
    truncate: bool = False
    kind: str = field(default=KIND, init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for key in ("model", "input_path"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise ScoreError("must be a non-empty text.", key=key)
            set_(self, key, getattr(self, key).strip())
        if self.mode not in MODES:
            raise ScoreError(f"must be one of {', '.join(MODES)}, not {self.mode!r}.", key="mode")
        if not self.output_name:  # the output file's own name, else "<input>_scored" in the input's format
            out = Path(self.output_path or "")
            given, _ = split_sheet(self.input_path)  # a workbook's sheet: the scored workbook
            set_(self, "output_name", out.name if out.suffix.lower() in FORMATS else
                 f"{given.stem}_scored{given.suffix}")
        if Path(self.output_name).name != self.output_name:
            raise ScoreError("must be a file name, not a path.", key="output_name")

        if Path(self.output_name).suffix.lower() not in FORMATS:
            raise ScoreError(f"must end in one of {', '.join(sorted(FORMATS))}.", key="output_name")
        for key in ("batch_size", "max_length"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScoreError(f"must be a whole number, 1 or more, not {value!r}.", key=key)
        overlap = self.window_overlap
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
            raise ScoreError(f"must be a whole number of tokens, 0 or more (or empty: an eighth of a window), not "
                             f"{overlap!r}.", key="window_overlap")
        if not isinstance(self.truncate, bool):
            raise ScoreError(f"must be true or false, not {self.truncate!r}.", key="truncate")
        if self.max_length < windows.MIN_BUDGET:  # a window must hold some of the text
            raise ScoreError(f"must be at least {windows.MIN_BUDGET} tokens, not {self.max_length}.",
                             key="max_length")
        for key in ("text_column", "pair_column", "output_path"):
            if getattr(self, key) is not None and not str(getattr(self, key)).strip():
                set_(self, key, None)
        if self.confined and self.output_path:
            raise ScoreError("a job from the dashboard keeps its result in MLflow; it writes no server path.",
                                 key="output_path")
        given = (self.topics,) if isinstance(self.topics, str) else tuple(self.topics or ())
        set_(self, "topics", given)
        if self.mode == "topics":
            set_(self, "topics", tuple(topics.check_topics(list(given))))
            set_(self, "template", topics.check_template(self.template))
            set_(self, "threshold", topics.check_threshold(self.threshold))
        elif given:
            raise ScoreError("topics are only used in topic mode (mode='topics').", key="topics")

    @property
    def reading(self) -> Reading:
        """How each text is read: windows of ``max_length`` tokens sharing ``window_overlap``, or the first only."""
        return Reading(self.max_length, self.window_overlap, self.truncate)

    @property
    def run_name(self) -> str:
        return f"score_{split_sheet(self.input_path)[0].stem}"

    def params(self) -> dict[str, Any]:
        """What the run logs as MLflow params."""
        params = {"model": self.model, "input_file": self.input_path, "mode": self.mode,
                  "batch_size": self.batch_size, "max_length": self.max_length, "output_name": self.output_name}
        if self.text_column:
            params["text_column"] = self.text_column
        if self.pair_column:
            params["pair_column"] = self.pair_column
        if self.window_overlap is not None:
            params["window_overlap"] = self.window_overlap
        params["truncate"] = self.truncate
        if self.mode == "topics":
            params.update(topics=", ".join(self.topics)[:6000], template=self.template, threshold=self.threshold)
        return params

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["topics"] = list(self.topics)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreSpec:
        data = dict(data)
        if data.pop("kind", KIND) != KIND:
            raise ScoreError("is not a scoring job.", key="kind")
        return cls(**{**data, "topics": tuple(data.get("topics") or ())})

    @classmethod
    def from_json(cls, text: str) -> ScoreSpec:
        return cls.from_dict(json.loads(text))


def is_score_spec(text: str) -> bool:
    """Whether a job's ``job_spec`` tag holds a scoring job (else it is a training run's spec)."""
    try:
        return json.loads(text).get("kind") == KIND
    except (ValueError, AttributeError):
        return False


def experiment_name(source) -> str:
    """``Scoring - <registered model name>``, or ``Scoring - run <id8>`` for a run's model."""
    if source.version is None and source.run_id:
        return f"Scoring - run {source.run_id[:8]}"
    return f"Scoring - {source.name}"


def run_tags(spec: ScoreSpec, source) -> dict[str, str]:
    """The tags that say what was scored with which model, and by whom."""
    tags = {RUN_TYPE_TAG: KIND, "mlflow.runName": spec.run_name, "model_ref": spec.model, "model_uri": source.uri,
            "model_name": source.name, "model_label": source.label, "score_mode": spec.mode,
            "input_file": Path(spec.input_path).name, "submitted_by": current_user()}
    if source.version:
        tags["model_version"] = source.version
    if source.run_id:
        tags["model_run_id"] = source.run_id
    return tags


@dataclass(frozen=True)
class ScoreResult:
    run_id: str
    status: str  # FINISHED | FAILED
    rows: int
    output: Path | None
    error: str | None = None


def score(spec: ScoreSpec, run_id: str | None = None, *, on_progress: Progress | None = None,
          on_status: Callable[[str], None] | None = None, device: str | None = None,
          before_end: Callable[[str], None] | None = None) -> ScoreResult:
    """Run ``spec`` as an MLflow run (a new one, or the queued run ``run_id``); never raises once the run exists.

    Before the run exists (``run_id`` None), a bad spec or a model that does not exist raises a TuneboardError.
    ``before_end`` is called while the run is open, just before it ends (a job attaches its log there).
    """
    import mlflow

    settings = configure_mlflow()
    say = on_status or (lambda message: log.info(message))
    # 1-2. the model, the run
    if run_id is None:
        source = models.resolve(spec.model)
        experiment_id = ensure_experiment(experiment_name(source), settings)
        active = mlflow.start_run(experiment_id=experiment_id, run_name=spec.run_name, tags=run_tags(spec, source))
    else:  # a queued job: the version pinned when it was submitted
        active = mlflow.start_run(run_id=run_id)
        source = None
    run_id = active.info.run_id
    try:
        if source is None:
            source = models.resolve(active.data.tags.get("model_uri") or spec.model)
        else:  # a new run (a queued job's were logged when it was submitted)
            mlflow.log_params(spec.params())
            mlflow.log_text(spec.to_json(), "score_spec.json")
        with paths.confined(spec.confined):
            rows, output = _score_body(spec, source, say, on_progress, device)
        if before_end is not None:
            before_end("FINISHED")
        mlflow.end_run("FINISHED")
    except Exception as exc:  # noqa: BLE001 - the run ends FAILED with the reason; the caller goes on
        message = explain(exc)
        log.warning("scoring run %s failed: %s", run_id, message)
        tracking.record_failure(run_id, exc, message, before_end)
        return ScoreResult(run_id, "FAILED", 0, None, message)
    return ScoreResult(run_id, "FINISHED", rows, output)


def _score_body(spec: ScoreSpec, source, say: Callable[[str], None], on_progress: Progress | None,
                device: str | None) -> tuple[int, Path | None]:
    import mlflow

    # 3. the file
    say("reading file")
    table = files.read(spec.input_path)
    first, second = files.choose_columns(table, spec.text_column, spec.pair_column,
                                         transcripts=spec.mode == "topics")
    mlflow.set_tags({"input_digest": file_digest(spec.input_path), "input_rows": str(len(table)),
                     "text_column": first, **({"pair_column": second} if second else {})})
    # 4. the model, the scores
    say("loading model")
    model, tokenizer, id2label = models.load(source, device)
    say("scoring")
    started = time.perf_counter()
    options = {"reading": spec.reading, "batch_size": spec.batch_size, "device": device,
               "on_progress": on_progress}  # both count texts, i.e. rows
    if spec.mode == "topics":
        read = topics.read_topics(model, tokenizer, files.texts(table, first), list(spec.topics), spec.template,
                                  **options)
        # the deciding windows, where a text was long enough to have several (a short text is its own evidence)
        long_texts = files.has_long_texts(read.split)
        frame = files.tagged(table, read.scores, spec.topics, spec.threshold,
                             evidence=files.topic_evidence(read) if long_texts else None)
        counts = {f"topic_count.{_metric_key(t)}": float((read.scores[:, j] >= spec.threshold).sum())
                  for j, t in enumerate(spec.topics)}
        how = read.params()
    else:
        # an NLI model asked about pairs: the window most likely to entail decides; else the windows' mean
        entailment = topics.entailment_index(id2label) if second else None
        read = windows.predict(model, tokenizer, files.texts(table, first),
                               files.texts(table, second) if second else None, entailment=entailment, **options)
        long_texts = files.has_long_texts(read.split)
        frame = files.classified(table, read.probabilities, id2label,
                                 evidence=files.row_evidence(read) if long_texts else None)
        predicted = read.probabilities.argmax(axis=1)
        counts = {f"label_count.{_metric_key(id2label[i])}": float((predicted == i).sum()) for i in sorted(id2label)}
        how = {"windows.budget_tokens": read.split.budget, "windows.overlap": read.split.overlap,
               "windows.aggregation": read.aggregation}
    seconds = max(time.perf_counter() - started, 1e-9)
    mlflow.log_params(how)
    cut = truncation_words(read.split)
    if cut:  # the user asked for it; the run and the page still say what was not read
        mlflow.set_tag(TRUNCATED_TAG, cut)
        say(cut)
    # 5. the result: an artifact first, then the user's path
    say("writing result")
    fmt = files.output_format(spec.output_name, spec.input_path)
    with tempfile.TemporaryDirectory() as tmp:
        staged = files.write(frame, Path(tmp) / spec.output_name, fmt, table.delimiter)  # a ";" CSV stays one
        mlflow.log_artifact(str(staged), ARTIFACT_FOLDER)
    # 6. what it did; the user's file last, so a run that failed never leaves one
    mlflow.log_metrics({"rows": float(len(table)), "rows_per_second": len(table) / seconds,
                        "scoring_seconds": seconds, **counts, **read.split.summary()})
    output = files.write(frame, spec.output_path, files.output_format(spec.output_path, spec.input_path),
                         table.delimiter) \
        if spec.output_path else None
    return len(table), output


def _metric_key(name: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", str(name))[:200] or "_"


def truncation_words(split: Split) -> str | None:
    """What a truncating reading left unread, in words ("read the first window only: 12,345 tokens of 40 texts
    not read"); None when every token was read."""
    tokens, texts = int(split.cut.sum()), int((split.cut > 0).sum())
    if tokens <= 0:
        return None
    return (f"read the first window only: {tokens:,} token{'s' if tokens != 1 else ''} of {texts:,} "
            f"text{'s' if texts != 1 else ''} not read")


def truncation_note(run_id: str, client=None) -> str | None:
    """The ``truncated`` tag of a scoring run (what it did not read), or None when it read every token."""
    client = client or runs_mod.client()
    return client.get_run(run_id).data.tags.get(TRUNCATED_TAG) or None


@dataclass(frozen=True)
class CallRead:
    """One call read against each topic (the Registry's "Try it"): ``frame``, indexed by topic, holds each
    topic's ``score`` and ``evidence`` (the text of the window that decided it, as ``topics.call_evidence``);
    ``windows`` is how many windows the call was read in, of at most ``budget_tokens`` tokens each."""

    frame: pd.DataFrame
    windows: int
    budget_tokens: int

    @property
    def scores(self) -> pd.Series:
        return self.frame["score"].rename("score")


def read_call(ref: str, transcript: str, names: Sequence[str], template: str = DEFAULT_TEMPLATE,
              reading: Reading | None = None) -> CallRead:
    """One whole call against each topic with the model ``ref`` names: scores, evidence and the windows read.

    ``topics.call_evidence`` with the count of windows, which a page shows next to the evidence.
    """
    frame = topics.call_evidence(ref, transcript, names, template, reading)
    return CallRead(frame, frame.attrs["windows"], frame.attrs["budget_tokens"])


def snippet(text: str, limit: int = 300) -> str:
    """``text`` on one line, shortened to about ``limit`` characters at a word, with an ellipsis when cut."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(" ,;:") + " ..."


def result_artifact(spec: ScoreSpec) -> str:
    """Where a scoring run keeps its result, relative to the run's artifacts."""
    return f"{ARTIFACT_FOLDER}/{spec.output_name}"


def download_result(run_id: str, client=None) -> tuple[str, bytes]:
    """(file name, bytes) of a finished scoring run's result, for a download button."""
    client = client or runs_mod.client()
    run = client.get_run(run_id)
    spec = ScoreSpec.from_json(run.data.tags[SPEC_TAG]) if SPEC_TAG in run.data.tags else None
    name = spec.output_name if spec else run.data.params.get("output_name")
    if not name:
        raise NotFoundError(f"run {run_id} is not a scoring run: it has no result file.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, f"{ARTIFACT_FOLDER}/{name}", tmp)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise NotFoundError(f"the result of scoring run {run_id} is not stored ({type(exc).__name__}); it may "
                                "have failed or been cancelled before it finished.") from None
        return name, Path(local).read_bytes()
