"""Scoring a file without code (issue 11): the CLI, the queue, the page, every bad input.

One tiny NLI model (the demo BERT, fine-tuned for a few steps) is trained and registered once for the session
(tests/shared_store.py), with ``production`` pointing at it; everything here scores with it, on the module's copy
of that store: real MLflow store, real worker, real files.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import ROOT, child_env, point_at
from shared_store import MODEL
from test_jobs import wait_for

if TYPE_CHECKING:
    from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_store")]  # one worker for the shared store

PRODUCTION = f"models:/{MODEL}@production"
LABELS = {"entailment", "not_entailment"}
ROWS = [
    ("I can't log in to my account and the security code never arrives", "This call is about account access."),
    ("I would like to borrow from my plan, what is the interest", "This call is about loan request."),
    ("=HYPERLINK(\"http://example.com\") please roll my balance into an IRA", "This call is about rollover."),
    ("I want to take money out, I need a hardship withdrawal", "This call is about account access."),
]


@pytest.fixture
def scoring(private_store, monkeypatch) -> tuple[Settings, Path]:
    """(settings, folder): the module's copy of the session's store (tests/shared_store.py), which holds a short
    fine-tune of the demo BERT registered as Score_Topic, version 1 in production. Every test here scores,
    queues or caches a model, so all of them write: the copy, never the shared store."""
    return point_at(monkeypatch, private_store), private_store.home.parent


def pairs_file(folder: Path, name: str = "calls.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("call_id", "premise", "hypothesis"),
                                 *[(f"c{i}", p, h) for i, (p, h) in enumerate(ROWS, start=1)]])
    return path


def transcripts_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "transcripts.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("call_id", "transcript"), *[(f"c{i}", p) for i, (p, _) in enumerate(ROWS, 1)]])
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_cli_scores_a_file_and_mlflow_records_who_scored_what(scoring, tmp_path):
    import pandas as pd

    from core import runs
    from core.jobs import JobStatus

    settings, _ = scoring
    client = runs.client(settings.tracking_uri)
    experiment = client.get_experiment_by_name(f"Scoring - {MODEL}")
    before = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}  # the store's own scoring run
    source = pairs_file(tmp_path / "in")
    out = tmp_path / "out" / "scored.csv"
    done = subprocess.run([sys.executable, "-m", "core.cli", "score", PRODUCTION, str(source), str(out),
                           "--batch-size", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env=child_env(TUNEBOARD_HOME=str(settings.home), TUNEBOARD_USER="scorer"))
    assert done.returncode == 0, done.stderr
    assert "scored 4 rows" in done.stderr and f"Wrote {out}" in done.stdout
    rows = read_rows(out)
    assert list(rows[0]) == ["call_id", "premise", "hypothesis", "predicted_label", "score_entailment",
                             "score_not_entailment"]
    assert [r["call_id"] for r in rows] == ["c1", "c2", "c3", "c4"]
    for row in rows:
        assert row["predicted_label"] in LABELS
        assert abs(float(row["score_entailment"]) + float(row["score_not_entailment"]) - 1) < 1e-4
    assert rows[2]["premise"].startswith("'=HYPERLINK")  # a spreadsheet would run it: neutralised
    assert leftovers(out.parent) == []

    [run] = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id not in before]
    tags = run.data.tags
    assert JobStatus(run.info.status) == JobStatus.FINISHED
    assert tags["run_type"] == "score" and tags["model_version"] == "1" and tags["model_uri"] == f"models:/{MODEL}/1"
    assert tags["input_digest"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert tags["input_rows"] == "4" and tags["submitted_by"] == "scorer"
    assert run.data.metrics["rows"] == 4 and run.data.metrics["rows_per_second"] > 0
    assert sum(v for k, v in run.data.metrics.items() if k.startswith("label_count.")) == 4
    (tmp_path / "dl").mkdir()
    stored = Path(client.download_artifacts(run.info.run_id, "scored/scored.csv", str(tmp_path / "dl")))
    assert pd.read_csv(stored).equals(pd.read_csv(out))


def test_topic_mode_scores_each_transcript_against_each_topic_with_the_template(scoring, tmp_path):
    import numpy as np
    import pandas as pd

    from core.models import sources as models
    from core.scoring import topics
    from core.scoring.job import ScoreSpec, score

    source = transcripts_file(tmp_path / "in")
    out = tmp_path / "tagged.parquet"
    template = "The customer wants help with {}."
    chosen = ("account access", "loan request", "rollover")
    result = score(ScoreSpec(PRODUCTION, str(source), mode="topics", topics=chosen, template=template,
                             threshold=0.5, output_path=str(out)))
    assert result.status == "FINISHED", result.error
    frame = pd.read_parquet(out)  # the output's extension chose the format
    assert list(frame.columns) == ["call_id", "transcript", *[f"score_{t}" for t in chosen], "topics"]
    values = frame[[f"score_{t}" for t in chosen]].to_numpy()
    assert values.shape == (4, 3) and ((values >= 0) & (values <= 1)).all()
    model, tokenizer, _ = models.load(PRODUCTION)
    # the calls as given (the output's copy of a call starting with "=" is neutralised for spreadsheets)
    calls = [r["transcript"] for r in read_rows(source)]
    expected = topics.topic_scores(model, tokenizer, calls, list(chosen), template)
    assert np.allclose(values, expected, atol=1e-5)  # the template was the one given
    other = topics.topic_scores(model, tokenizer, calls, list(chosen), "Nothing like {} here.")
    # another template moves the scores by more than recomputing them does (ten times over): the shared store's
    # production model, ten steps of a tiny BERT, barely reads its input (a CI run: scores 0.5395-0.5396, moved
    # up to 1.4e-5 by the template, where a fixed atol of 1e-5 called them equal; recomputing moved them 5e-7)
    noise = max(float(np.abs(values - expected).max()), 1e-7)
    assert float(np.abs(values - other).max()) > 10 * noise, (noise, np.abs(values - other).max())
    for row, scores in zip(frame["topics"], values, strict=True):
        assert set(filter(None, row.split("; "))) == {t for t, s in zip(chosen, scores, strict=True) if s >= 0.5}


def bad_inputs(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """case -> (CLI arguments after ``score``, what the message must name)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = pairs_file(folder)
    (folder / "empty.csv").write_bytes(b"")
    (folder / "latin1.csv").write_bytes("text\nfine\ncaf\xe9 au lait\n".encode("latin-1"))
    (folder / "other.csv").write_text("call_id,notes\n1,hello\n", encoding="utf-8")
    (folder / "blank.csv").write_text('call_id,text\nA1,hello\nA2,""\n', encoding="utf-8")
    out = str(folder / "result.csv")
    return {
        "wrong column": (["--text-column", "body", PRODUCTION, str(good), out], ["'body'", "call_id, premise"]),
        "missing column": ([PRODUCTION, str(folder / "other.csv"), out], ["other.csv", "call_id, notes"]),
        "empty file": ([PRODUCTION, str(folder / "empty.csv"), out], ["empty.csv", "empty"]),
        "undecodable bytes": ([PRODUCTION, str(folder / "latin1.csv"), out], ["latin1.csv", "line 3", "UTF-8"]),
        "blank text": ([PRODUCTION, str(folder / "blank.csv"), out], ["blank.csv", "'text'", "line 3, call_id A2"]),
        "over the cap": ([PRODUCTION, str(good), out], ["calls.csv", "over the limit", "TUNEBOARD_SCORE_MAX_MB"]),
        "no such model": (["models:/Nope@production", str(good), out], ["'Nope'", MODEL]),
        "no such alias": ([f"models:/{MODEL}@staging", str(good), out], ["'staging'", "production (version 1)"]),
        "no such version": ([f"models:/{MODEL}/9", str(good), out], ["no version 9", "versions: 1"]),
        "no such run": (["0" * 32, str(good), out], ["no run with id", "0" * 32]),
    }


@pytest.mark.parametrize("case", ["wrong column", "missing column", "empty file", "undecodable bytes", "blank text",
                                  "over the cap", "no such model", "no such alias", "no such version",
                                  "no such run"])
def test_bad_input_is_refused_by_name_and_leaves_nothing_behind(scoring, tmp_path, monkeypatch, capsys, case):
    from core import runs
    from core.cli import main

    settings, _ = scoring
    folder = tmp_path / "files"
    arguments, named = bad_inputs(folder)[case]
    if case == "over the cap":
        monkeypatch.setenv("TUNEBOARD_SCORE_MAX_MB", "0.0001")
    assert main(["score", *arguments]) == 2
    message = capsys.readouterr().err
    assert "Error: " in message
    for part in named:
        assert part in message, f"{case}: {part!r} not in {message!r}"
    assert not (folder / "result.csv").exists() and leftovers(folder) == []
    client = runs.client(settings.tracking_uri)
    alive = client.search_runs(runs.experiment_ids(client), "attributes.status = 'RUNNING'")
    assert alive == []  # a run opened for a file that then failed ended FAILED, with its reason


def test_a_scoring_job_runs_on_the_worker_reports_rows_and_can_be_retried(scoring, tmp_path):
    from core.jobs import JobQueue, JobStatus
    from core.scoring.job import ScoreSpec, download_result

    settings, _ = scoring
    q = JobQueue(settings)
    source = pairs_file(tmp_path / "in")
    (job,) = q.submit(ScoreSpec(PRODUCTION, str(source), output_name="calls_scored.jsonl", batch_size=2))
    assert job.kind == "score" and job.status == JobStatus.SCHEDULED
    done = wait_for(lambda: (j := q.get(job.run_id)).status.is_terminal() and j, 180, "the scoring job to end")
    assert done.status == JobStatus.FINISHED, done.reason
    assert done.progress.stage == "finished" and done.progress.step == done.progress.total_steps == 4
    name, content = download_result(job.run_id)
    assert name == "calls_scored.jsonl" and content.count(b"\n") == 4 and b'"predicted_label"' in content
    again = q.retry(job.run_id)
    assert again.kind == "score" and again.retry_of == job.run_id
    done = wait_for(lambda: (j := q.get(again.run_id)).status.is_terminal() and j, 180, "the retried job to end")
    assert done.status == JobStatus.FINISHED, done.reason
    assert download_result(again.run_id)[1] == content


def test_cancel_a_running_scoring_job(scoring, tmp_path, monkeypatch):
    from core import runs
    from core.jobs import JobQueue, JobStatus
    from core.scoring.job import ScoreSpec
    from core.worker import stop_worker

    settings, _ = scoring
    stop_worker(settings)  # the next worker and its processes start with the hold armed
    hold = tmp_path / "hold"
    hold.write_text("")
    monkeypatch.setenv("TUNEBOARD_TEST_HOLD_AT", "scoring")
    monkeypatch.setenv("TUNEBOARD_TEST_HOLD_FILE", str(hold))
    q = JobQueue(settings)
    try:
        (job,) = q.submit(ScoreSpec(PRODUCTION, str(pairs_file(tmp_path / "in")), batch_size=1))
        wait_for(lambda: hold.read_text().strip(), 180, "the job to hold after its first batch")
        running = q.get(job.run_id)
        assert running.status == JobStatus.RUNNING and running.progress.stage == "scoring"
        assert running.progress.step == 1 and running.progress.total_steps == 4
        q.cancel(job.run_id)
        ended = wait_for(lambda: (j := q.get(job.run_id)).status.is_terminal() and j, 60, "the job to stop")
    finally:
        hold.unlink(missing_ok=True)
        stop_worker(settings)  # no later test inherits the armed hold
    assert ended.status == JobStatus.KILLED and "cancelled by" in ended.reason
    client = runs.client(settings.tracking_uri)
    assert [a.path for a in client.list_artifacts(job.run_id, "scored")] == []  # no result half-written


def test_a_page_submit_reads_only_inside_the_allowed_folders(scoring, tmp_path, allowed_roots):
    from core import paths
    from core.errors import DataError
    from core.jobs import JobQueue
    from core.scoring.job import ScoreSpec

    settings, _ = scoring
    outside = pairs_file(Path(os.path.realpath("/tmp")) / f"tuneboard-score-{os.getpid()}")
    try:
        with paths.confined(), pytest.raises(DataError, match="outside the folders"):
            JobQueue(settings).submit(ScoreSpec(PRODUCTION, str(outside)))
    finally:
        outside.unlink()
        outside.parent.rmdir()


def test_the_page_scores_an_upload_in_the_background_and_offers_the_result(scoring, tmp_path):
    from test_pages import app, texts

    from core.jobs import JobQueue

    settings, _ = scoring
    content = pairs_file(tmp_path).read_bytes()
    at = app("pages/score.py")
    assert at.radio(key="s_how").value == "production" and at.selectbox(key="s_model").value == MODEL
    assert f"{MODEL} version 1 (production)" in texts(at)
    at.file_uploader(key="s_upload").set_value(("calls.csv", content, "text/csv")).run()
    assert not at.exception, at.exception
    assert "4 rows" in texts(at)
    assert at.selectbox(key="s_text_column").value == "premise"
    assert at.selectbox(key="s_pair_column").value == "hypothesis"
    assert at.radio(key="s_mode").options == ["Classify each row", "Tag each call's topics"]  # an NLI model
    at.button(key="s_submit").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["s_job"]
    q = JobQueue(settings)
    done = wait_for(lambda: (j := q.get(run_id)).status.is_terminal() and j, 180, "the page's job to end")
    assert done.status.value == "FINISHED", done.reason
    at.run()
    body = texts(at)
    assert "Scored 4 rows" in body and run_id in body
    [button] = at.get("download_button")
    assert button.proto.label == "Download calls_scored.csv"
    shown = at.dataframe[-1].value
    assert list(shown.columns)[-3:] == ["predicted_label", "score_entailment", "score_not_entailment"]
    assert shown["premise"][2].startswith("'=HYPERLINK")


def test_the_page_refuses_an_unreadable_upload_and_keeps_nothing(scoring):
    from test_pages import app

    from core.settings import Settings

    at = app("pages/score.py")
    at.file_uploader(key="s_upload").set_value(("notes.csv", "text\ncaf\xe9\n".encode("latin-1"), "text/csv")).run()
    assert any("notes.csv, line 2" in e.value and "UTF-8" in e.value for e in at.error), [e.value for e in at.error]
    uploads = Settings.from_env().data_dir / "uploads" / "scoring"
    assert not (uploads / "notes.csv").exists() and not any(uploads.glob(".*"))
    assert not any(b.key == "s_submit" for b in at.button)


def test_a_score_spec_is_checked_on_construction_and_survives_json():
    from core.errors import ScoreError, TopicError
    from core.jobs import job_spec
    from core.scoring.job import ScoreSpec

    spec = ScoreSpec(PRODUCTION, "calls.parquet", mode="topics", topics=(" fees ", "rollover"), threshold=0.3)
    assert spec.topics == ("fees", "rollover") and spec.output_name == "calls_scored.parquet"
    assert job_spec(spec.to_json()) == spec and ScoreSpec.from_json(spec.to_json()).kind == "score"
    assert ScoreSpec(PRODUCTION, "in.csv", output_path="/x/out.tsv").output_name == "out.tsv"
    for kwargs, key in (({"mode": "summarise"}, "mode"), ({"batch_size": 0}, "batch_size"),
                        ({"output_name": "../x.csv"}, "output_name"), ({"output_name": "x.docx"}, "output_name"),
                        ({"topics": ("fees",)}, "topics"), ({"confined": True, "output_path": "/etc/x.csv"},
                                                             "output_path")):
        with pytest.raises(ScoreError) as refused:
            ScoreSpec(PRODUCTION, "in.csv", **kwargs)
        assert refused.value.key == key
    with pytest.raises(TopicError, match="exactly one"):
        ScoreSpec(PRODUCTION, "in.csv", mode="topics", topics=("fees",), template="About fees.")


def test_the_result_is_written_whole_or_not_at_all(tmp_path):
    import pandas as pd

    from core.scoring import files

    frame = pd.DataFrame({"text": ["@SUM(A1)", "fine", "-2+3"], "score": [-0.5, 0.25, 1.0]})
    for name in ("out.csv", "out.tsv", "out.jsonl", "out.parquet"):
        files.write(frame, tmp_path / name)
        back = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else \
            pd.read_json(tmp_path / name, lines=True) if name.endswith("jsonl") else \
            pd.read_csv(tmp_path / name, sep="\t" if name.endswith("tsv") else ",")
        assert list(back["text"]) == ["'@SUM(A1)", "fine", "'-2+3"] and list(back["score"]) == [-0.5, 0.25, 1.0]
    # a failure half way leaves neither the file nor its temporary copy
    with pytest.raises(Exception, match="Could not convert"):
        files.write(pd.DataFrame({"bad": [object()]}), tmp_path / "broken.parquet")
    assert not (tmp_path / "broken.parquet").exists() and not any(tmp_path.glob(".*"))


def test_a_scoring_job_reports_rows_not_training_steps():
    from core.progress import Progress, progress_text

    assert progress_text(Progress(stage="scoring", unit="row", step=50, total_steps=200, samples_per_second=120.0,
                                  eta_seconds=2.0)) == "25% row 50/200 120 rows/s ETA 2 s"


def test_a_registered_model_or_a_run_loads_as_a_base_model_even_where_reads_are_confined(scoring, allowed_roots):
    from core import paths
    from core import runs as runs_mod
    from core.data import LabelMapping
    from core.models import loading as modelio
    from core.models import sources as models
    from core.naming import base_model_name

    settings, _ = scoring
    with paths.confined():  # a models:/ reference is not a path: no folder fence applies to it
        config = modelio.load_config(f"models:/{MODEL}/Production")
        assert set(config.id2label.values()) == LABELS
        model, tokenizer = modelio.load_for_classification(PRODUCTION, LabelMapping(config.label2id, True))
    assert model.config.id2label == config.id2label and tokenizer("a call")["input_ids"]
    version = models.resolve(f"models:/{MODEL}/1")
    run = runs_mod.client(settings.tracking_uri).get_run(version.run_id)
    by_run = models.resolve(version.run_id)
    assert by_run.uri == run.data.tags["model_uri"] and by_run.label.startswith("the model of run ")
    assert models.local_folder(by_run) != models.local_folder(version)  # one cached copy per model URI
    assert base_model_name(f"models:/{MODEL}/1") == f"{MODEL}-v1"
