"""Calls as a team labels them (issue 22): a column mapping, topics as NLI pairs, topic-level evaluation,
spreadsheets (an .xlsx workbook, a ";"-separated CSV), and the refusals of a wrong mapping, with nothing logged.

Real files, real MLflow stores, real training of the offline demo models (a few steps where only the plumbing
is checked).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, use_store

from core.data import Columns, load_examples, read_frame
from core.errors import DataError, GridError, TuneboardError
from core.grid import GridSpec
from core.topic_pairs import TopicPairs, all_topics, without_calls_of

NLI = {0: "entailment", 1: "not_entailment"}
CALLS = [("c1", "I can't log in and my password stopped working", "account access"),
         ("c2", "why was I charged this fee, and roll my balance into an IRA", "fees; rollover"),
         ("c3", "I moved, please update my mailing address", "address change"),
         ("c4", "what are the annual fees on my account", "Fees"),
         ("c5", "move my old employer plan here", "rollover")]


def calls_file(path: Path, rows=CALLS, delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows([("call_id", "transcript", "topic"), *rows])
    return path


MAPPING = {"text": "transcript", "label": "topic"}


# -- the mapping and the files ------------------------------------------------------------------------------------
def test_a_team_file_reads_through_its_mapping_and_topics_split_on_semicolons(tmp_path):
    calls = load_examples(calls_file(tmp_path / "calls.csv"), MAPPING, topics=True)
    assert calls.text_a[1] == CALLS[1][1] and calls.text_b is None
    assert calls.labels == (("account access",), ("fees", "rollover"), ("address change",), ("Fees",),
                            ("rollover",))
    assert calls.columns == ("transcript", None, "topic") and calls.rows[0] == "line 2, call_id c1"
    # the same file without a mapping is refused with the mapping that reads it, not "rename the columns"
    with pytest.raises(DataError, match="needs text columns") as refused:
        load_examples(tmp_path / "calls.csv")
    assert "columns: {text: " in str(refused.value) and "Rename" not in str(refused.value)


def test_a_semicolon_csv_and_a_workbook_read_like_the_comma_csv(tmp_path):
    plain = calls_file(tmp_path / "calls.csv")
    semi = calls_file(tmp_path / "calls_semicolon.csv", delimiter=";")
    frame, _ = read_frame(plain)
    book = tmp_path / "calls.xlsx"
    with pd.ExcelWriter(book, engine="openpyxl") as writer:
        pd.DataFrame({"notes": ["not this sheet"]}).to_excel(writer, sheet_name="Notes", index=False)
        frame.to_excel(writer, sheet_name="Labelled", index=False)
    expected = load_examples(plain, MAPPING, topics=True)
    for path in (semi, f"{book}#Labelled"):
        got = load_examples(path, MAPPING, topics=True)
        assert (got.text_a, got.labels) == (expected.text_a, expected.labels), path
    assert load_examples(f"{book}#Labelled", MAPPING).rows[0] == "row 2, call_id c1"  # as Excel numbers its rows
    # the first sheet when none is named; a sheet that is not there is named with the ones that are
    with pytest.raises(DataError, match="has no column 'transcript'"):
        load_examples(book, MAPPING)
    with pytest.raises(DataError, match="has no sheet called 'Calls'; its sheets: Notes, Labelled"):
        load_examples(f"{book}#Calls", MAPPING)
    # what was refused as "the columns are: text;label. Rename the columns" now reads
    (tmp_path / "excel.csv").write_text("text;label\nhallo welt;a\nguten tag;b\n", encoding="utf-8")
    assert load_examples(tmp_path / "excel.csv").labels == ("a", "b")


@pytest.mark.parametrize(("mapping", "problem"), [
    ({"text": "transcript", "label": "topics"},
     "has no column 'topics' (the mapping's label); its columns are: call_id, transcript, topic"),
    ({"text": "transcript", "label": "call_id"}, "column 'call_id' has 250 different values"),
])
def test_a_wrong_mapping_is_refused_naming_the_file_and_the_column(tmp_path, mapping, problem):
    many = [(f"c{i}", f"call number {i}", "fees") for i in range(250)]
    path = calls_file(tmp_path / "calls.csv", many)
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")) as refused:
        load_examples(path, mapping)
    assert str(refused.value).startswith(str(path))


def test_an_empty_transcript_is_refused_naming_its_line_and_call(tmp_path):
    path = calls_file(tmp_path / "calls.csv", [*CALLS[:2], ("c3", "  ", "fees")])
    with pytest.raises(DataError, match=r"calls.csv, line 4, call_id c3: the text in column 'transcript' is empty"):
        load_examples(path, MAPPING, topics=True)


def test_each_call_is_named_by_its_line_and_its_own_id_where_the_file_has_one(tmp_path):
    ids = [("C-0001", *CALLS[0][1:]), ("", *CALLS[1][1:]), (" 7 ", *CALLS[2][1:])]  # a blank id, a padded one
    calls = load_examples(calls_file(tmp_path / "calls.csv", ids), MAPPING, topics=True)
    assert calls.rows == ("line 2, call_id C-0001", "line 3", "line 4, call_id 7")
    named = tmp_path / "tickets.csv"  # any column named id or ..._id that is not the text or the label
    named.write_text("Ticket_ID,text,label\n41,hello there,a\n42,good bye,b\n", encoding="utf-8")
    assert load_examples(named).rows == ("line 2, Ticket_ID 41", "line 3, Ticket_ID 42")
    plain = tmp_path / "plain.csv"
    plain.write_text("text,label\nhello there,a\n", encoding="utf-8")
    assert load_examples(plain).rows == ("line 2",)


@pytest.mark.parametrize(("mapping", "key"), [({"text": "transcript"}, "columns.label"),
                                              ({"text": "a", "label": "b", "topic": "c"}, "columns.topic"),
                                              ({"text": "same", "label": "Same"}, "columns")])
def test_a_mapping_that_cannot_be_is_refused_in_the_grid(mapping, key):
    with pytest.raises(GridError) as refused:
        Columns.parse(mapping)
    assert refused.value.key == key


def test_the_mapping_is_guessed_from_the_file():
    from core.data import guess_columns

    frame = pd.DataFrame({"call_id": [f"c{i}" for i in range(8)], "agent": ["ann", "bob"] * 4,
                          "transcript": [f"a long transcript of call {i} about fees and more" for i in range(8)],
                          "topic": ["fees", "rollover", "fees; rollover", "fees"] * 2})
    assert guess_columns(frame) == Columns(text="transcript", label="agent")  # the fewest distinct values
    assert guess_columns(frame.drop(columns=["agent"])) == Columns(text="transcript", label="topic")
    assert guess_columns(frame[["call_id"]]) is None
    # a small team file names almost every topic once: the text is still the transcript, never the call's id, and
    # the label the column with the fewest values that is not an id (the browser read call_id as the text)
    few = pd.DataFrame({"call_id": [f"T-{i:04d}" for i in range(12)],
                        "transcript": [f"Agent: hello.\nCustomer: call {i} is about something long" for i in range(12)],
                        "topic": [f"topic {i % 9}" for i in range(12)]})
    assert guess_columns(few) == Columns(text="transcript", label="topic")


# -- topics as NLI pairs --------------------------------------------------------------------------------------------
def test_pairs_are_built_exactly_from_the_calls(tmp_path):
    calls = load_examples(calls_file(tmp_path / "calls.csv"), MAPPING, topics=True)
    topics = all_topics(calls)
    assert topics == ["account access", "address change", "fees", "rollover"]  # "Fees" is fees: one topic
    pairs = TopicPairs(negatives=2, seed=7).build(calls, topics, NLI)
    # one entailment per true topic, then two topics each call does not have
    assert pairs.labels.count("entailment") == 6 and pairs.labels.count("not_entailment") == 10
    assert len(pairs) == 16 and pairs.text_b[0] == "This call is about account access."
    for premise, hypothesis, label, row in zip(pairs.text_a, pairs.text_b, pairs.labels, pairs.rows, strict=True):
        call = calls.rows.index(row)
        own = {t.casefold() for t in calls.labels[call]}
        topic = hypothesis.removeprefix("This call is about ").removesuffix(".")
        assert premise == calls.text_a[call]
        assert (topic.casefold() in own) == (label == "entailment")  # a negative is never a true topic
    two = [h for h, r in zip(pairs.text_b, pairs.rows, strict=True) if r == "line 3, call_id c2"]
    assert two[:2] == ["This call is about fees.", "This call is about rollover."] and len(two) == 4
    # seeded: the same pairs every time, other pairs with another seed
    assert TopicPairs(negatives=2, seed=7).build(calls, topics, NLI) == pairs
    assert TopicPairs(negatives=2, seed=8).build(calls, topics, NLI).text_b != pairs.text_b
    # three-way MNLI heads get contradiction as the negative; a model that is not NLI is refused
    mnli = TopicPairs().build(calls, topics, {0: "contradiction", 1: "neutral", 2: "entailment"})
    assert set(mnli.labels) == {"entailment", "contradiction"}
    with pytest.raises(TuneboardError, match="topic_pairs needs an NLI base model"):
        TopicPairs().build(calls, topics, {0: "praise", 1: "complaint"})


def test_no_validation_call_is_among_the_training_pairs(tmp_path):
    train = load_examples(calls_file(tmp_path / "train.csv"), MAPPING, topics=True)
    validation = load_examples(calls_file(tmp_path / "test.csv", [CALLS[1], CALLS[4]]), MAPPING, topics=True)
    kept, held_out = without_calls_of(train, validation)
    assert held_out == 2 and set(kept.text_a).isdisjoint(validation.text_a) and len(kept) == 3
    pairs = TopicPairs().build(kept, all_topics(kept, validation), NLI)
    assert set(pairs.text_a).isdisjoint(validation.text_a)


def test_topic_pair_settings_are_checked_in_the_grid(tmp_path):
    args = {"base_name": "T", "data_src": "D", "dataset_versions": ("calls.csv",),
            "hyperparameters": ({"n_epochs": 1},), "base_model_versions": ("m",), "output_dir": "out",
            "train_file": str(tmp_path / "{data_version}"), "validation_file": "v.csv", "user_id": "u",
            "columns": MAPPING}
    grid = GridSpec(**args, topic_pairs={"negatives": 3})
    assert grid.topic_pairs == {"template": "This call is about {}.", "negatives": 3, "seed": 0, "threshold": 0.5,
                                 "top_windows": 1, "train_window": 64, "hard_negatives": 0}
    run = grid.expand()[1]
    assert run.columns == MAPPING and run.params()["topic_pairs.negatives"] == 3
    assert run.params()["columns.label"] == "topic"
    assert GridSpec.from_dict(grid.to_dict()) == grid  # a grid file keeps them
    assert GridSpec(**args, topic_pairs=True).topic_pairs["negatives"] == 2
    assert GridSpec(**args, topic_pairs={"train_window": 32}).expand()[1].params()["topic_pairs.train_window"] == 32
    assert GridSpec(**args, topic_pairs={"train_window": None}).topic_pairs["train_window"] is None  # the reading's
    for bad, key in (({"template": "About this."}, "topic_pairs.template"), ({"negatives": -1},
                     "topic_pairs.negatives"), ({"pairs": 2}, "topic_pairs.pairs"),
                     ({"train_window": 8}, "topic_pairs.train_window"),
                     ({"train_window": "64"}, "topic_pairs.train_window"),
                     ({"train_window": True}, "topic_pairs.train_window")):
        with pytest.raises(GridError) as refused:
            GridSpec(**args, topic_pairs=bad)
        assert refused.value.key == key
    with pytest.raises(GridError, match="leave text_pair out"):
        GridSpec(**{**args, "columns": {**MAPPING, "text_pair": "call_id"}}, topic_pairs=True)


# -- the pipeline on the demo calls ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calls_run(tmp_path_factory, demo_models, short_calls):
    """The seed's example on the team's calls file: the demo NLI DeBERTa, its baseline, one short fine-tune."""
    from core.experiment_manager import ExperimentManager

    tmp = tmp_path_factory.mktemp("calls")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp / "home")
        manager = ExperimentManager(
            base_name="Mass_ConsumerTopic_FineTune_DeBERTa_v3", data_src="CallTranscript",
            dataset_versions=["calls_train.csv"],
            hyperparameters=[{"n_epochs": 1, "max_steps": 6, "learning_rate": 5e-4, "train_batch_size": 8}],
            base_model_versions=[str(demo_models["demo-deberta-v2-tiny"])], output_dir=str(tmp / "trained_models"),
            train_file=str(short_calls / "{data_version}"), validation_file=str(short_calls / "calls_test.csv"),
            evalute_pretrained_model=True, user_id="santhosh.kumar3@voya.com", columns=MAPPING, topic_pairs=True)
        summary = manager.run_experiments(show_progress=False)
        yield manager, summary, settings


pytestmark = pytest.mark.xdist_group("calls_run")  # one worker trains the module's runs


@pytest.mark.slow
def test_the_seeds_example_trains_on_the_calls_file_and_logs_topic_metrics(calls_run):
    from core import runs as runs_mod
    from core.examples import read_predictions

    _, summary, _ = calls_run
    assert [r.status for r in summary.results] == ["FINISHED", "FINISHED"], [r.error for r in summary.results]
    client = runs_mod.client()
    for result in summary.results:
        run = client.get_run(result.run_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["columns.text"] == "transcript" and params["columns.label"] == "topic"
        assert params["topic_pairs.template"] == "This call is about {}." and params["topic_pairs.negatives"] == "2"
        assert params["keeps_pretrained_head"] == "True"  # the baseline is the zero-shot model itself
        assert int(params["topic_pairs.validation_pairs"]) > 100
        for name in ("topic_f1_macro", "topic_f1_micro", "topic_precision_macro", "topic_recall_macro",
                     "topic_accuracy"):
            assert 0.0 <= metrics[name] <= 1.0, name
        table = read_predictions(client, result.run_id)
        assert len(table) == 100 and {"true_label", "predicted_label", "score: fees"} <= set(table.columns)
        two = table[table["true_label"].str.contains("; ")]
        assert len(two), "the validation calls include calls with two topics"
        assert table["row"].str.fullmatch(r"line \d+, call_id \S+").all(), table["row"][:3]  # as the team finds them
    tuned = client.get_run(summary.results[1].run_id).data.params
    assert int(tuned["topic_pairs.train_pairs"]) > 1000 and tuned["topics"].startswith("account access; ")


@pytest.mark.slow
def test_the_topic_metrics_are_topic_evals_on_the_same_scores(calls_run):
    from mlflow.artifacts import download_artifacts

    from core import runs as runs_mod
    from core.examples import read_predictions
    from core.examples import significance as sig
    from core.examples.table import SCORE_PREFIX
    from core.metrics import TOPIC_METRICS
    from core.scoring.topic_eval import topic_metrics

    _, summary, _ = calls_run
    client = runs_mod.client()
    for result in summary.results:
        table = read_predictions(client, result.run_id)
        topics = [c.removeprefix(SCORE_PREFIX) for c in table.columns if c.startswith(SCORE_PREFIX)]
        truth = [[] if t == "(no topic)" else t.split("; ") for t in table["true_label"]]
        scores = table[[SCORE_PREFIX + t for t in topics]].to_numpy()
        expected = topic_metrics(truth, scores, topics, 0.5).set_index("topic")
        metrics = client.get_run(result.run_id).data.metrics
        assert metrics["topic_f1_macro"] == pytest.approx(expected.loc["macro avg", "f1"], abs=1e-4)
        assert metrics["topic_f1_micro"] == pytest.approx(expected.loc["micro avg", "f1"], abs=1e-4)
        assert metrics["topic_recall_macro"] == pytest.approx(expected.loc["macro avg", "recall"], abs=1e-4)
        top = np.array([topics[i] in own for i, own in zip(scores.argmax(axis=1), truth, strict=True)])
        assert metrics["topic_accuracy"] == pytest.approx(top.mean(), abs=1e-4)
        for name in TOPIC_METRICS:  # what "is the difference real?" resamples gives the logged value on all calls
            assert sig.metric_value(table, name) == pytest.approx(metrics[name], abs=1e-6), name
        logged = pd.read_json(download_artifacts(run_id=result.run_id, artifact_path="topic_metrics.json"),
                              orient="split")
        assert list(logged["topic"])[:len(topics)] == topics and list(logged["topic"])[-2:] == ["micro avg",
                                                                                                  "macro avg"]


@pytest.mark.slow
def test_compare_and_the_selector_rank_by_topic_f1(calls_run):
    from core import compare
    from core import runs as runs_mod
    from core.examples import noise
    from core.registry.model_selector import ModelSelector

    manager, summary, _ = calls_run
    client = runs_mod.client()
    frame = runs_mod.load_frame(client, [runs_mod.get_experiment(client, manager.experiment_name).experiment_id])
    assert compare.default_metric(frame) == "topic_f1_macro"
    best = ModelSelector(manager.experiment_name, "topic_f1_macro").get_best_model()
    assert best.info.run_id == summary.results[1].run_id  # the only fine-tune; baselines never win
    # the summary a person reads ranks by it too, against the baseline's topic_f1_macro
    assert summary.metric == "topic_f1_macro"
    assert f"Best fine-tune: {summary.results[1].run_name}, topic_f1_macro " in str(summary)
    # is the fine-tune's difference from its baseline real? over the same 100 calls
    found, baseline, tuned = noise.compare_runs(client, *(r.run_id for r in summary.results), "topic_f1_macro")
    assert found.why is None and found.examples == 100 and found.test == "paired randomization test"
    assert (found.a, found.b) == (pytest.approx(baseline.value, abs=1e-6), pytest.approx(tuned.value, abs=1e-6))
    assert " topic_f1_macro" in found.verdict() and "on these 100 calls" in found.verdict()


@pytest.mark.slow
def test_plain_classification_learns_the_topics_from_the_same_file(tmp_path, demo_models, monkeypatch,
                                                                   short_calls):
    """A classifier that is not trained as NLI: the topics are its labels; a call with two is two examples."""
    from core import runs as runs_mod
    from core.experiment_manager import ExperimentManager

    use_store(monkeypatch, tmp_path / "home")
    summary = ExperimentManager(
        base_name="Plain", data_src="Calls", dataset_versions=["calls_train.csv"],
        hyperparameters=[{"n_epochs": 1, "max_steps": 4}], base_model_versions=[str(demo_models["demo-bert-tiny"])],
        output_dir=str(tmp_path / "out"), train_file=str(short_calls / "{data_version}"),
        validation_file=str(short_calls / "calls_test.csv"), evalute_pretrained_model=False, user_id="u",
        columns=MAPPING).run_experiments(show_progress=False)
    assert summary.results[0].status == "FINISHED", summary.results[0].error
    params = runs_mod.client().get_run(summary.results[0].run_id).data.params
    assert params["num_labels"] == "10" and params["keeps_pretrained_head"] == "False"
    assert int(params["multi_topic_rows"]) > 10  # calls with two topics, each read as one example per topic


def test_a_bad_mapping_is_refused_before_any_run_exists(tmp_path, demo_models, monkeypatch, short_calls):
    from core import runs as runs_mod
    from core.experiment_manager import ExperimentManager

    use_store(monkeypatch, tmp_path / "home")
    for columns, problem in (({"text": "transcript", "label": "topics"}, "has no column 'topics'"),
                             ({"text": "transcript", "label": "call_id"}, "column 'call_id' has 100 different topics")):
        manager = ExperimentManager(
            base_name="Bad", data_src="Calls", dataset_versions=["calls_train.csv"], hyperparameters=[{"n_epochs": 1}],
            base_model_versions=[str(demo_models["demo-bert-tiny"])], output_dir=str(tmp_path / "out"),
            train_file=str(short_calls / "{data_version}"), validation_file=str(short_calls / "calls_test.csv"),
            user_id="u",
            columns=columns, topic_pairs=True)
        with pytest.raises(DataError, match=problem):
            manager.run_experiments(show_progress=False)
    client = runs_mod.client()
    assert [r for r in runs_mod.search_all(client, runs_mod.experiment_ids(client))] == []  # nothing logged


# -- scoring spreadsheets ---------------------------------------------------------------------------------------------
def test_a_workbook_is_scored_into_a_workbook_and_a_call_is_never_a_formula(tmp_path, bert_model, monkeypatch):
    from openpyxl import load_workbook

    from core import runs as runs_mod
    from core.scoring.job import ScoreSpec, score

    use_store(monkeypatch, tmp_path / "home")
    frame = pd.DataFrame({"call_id": ["c1", "c2"], "premise": ["=HYPERLINK(\"http://x\") hi", "I need a loan"],
                          "hypothesis": ["This call is about fees.", "This call is about loan request."]})
    book = tmp_path / "in" / "calls.xlsx"
    book.parent.mkdir()
    _text_workbook(frame, book, "Calls")
    model = _a_run_model(tmp_path, bert_model)
    result = score(ScoreSpec(model, f"{book}#Calls", output_path=str(tmp_path / "out" / "calls_scored.xlsx")))
    assert result.status == "FINISHED", result.error
    sheet = load_workbook(result.output).active
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["call_id", "premise", "hypothesis", "predicted_label"] and "score_entailment" in header
    assert sheet["B2"].value == "=HYPERLINK(\"http://x\") hi" and sheet["B2"].data_type == "s"
    assert runs_mod.client().get_run(result.run_id).data.tags["input_rows"] == "2"

    semi = calls_file(tmp_path / "in" / "semi.csv", [("c1", "I need a loan", "x")], delimiter=";")
    pairs = pd.read_csv(semi, sep=";").rename(columns={"transcript": "premise", "topic": "hypothesis"})
    pairs.to_csv(semi, sep=";", index=False)
    result = score(ScoreSpec(model, str(semi), output_path=str(tmp_path / "out" / "semi_scored.csv")))
    assert result.status == "FINISHED", result.error
    assert Path(result.output).read_text(encoding="utf-8").splitlines()[0].startswith("call_id;premise;hypothesis;")


def _text_workbook(frame: pd.DataFrame, path: Path, sheet: str) -> None:
    """A workbook whose cells hold the texts as typed (a call may start with "=" and still be text)."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = sheet
    for values in [list(frame.columns), *frame.itertuples(index=False, name=None)]:
        book.active.append(list(values))
    for row in book.active.iter_rows():
        for cell in row:
            cell.data_type = "s"
    book.save(path)


def _a_run_model(tmp_path: Path, bert_model: str) -> str:
    """A run id whose logged model is the demo BERT trained for two steps."""
    from core.grid import RunSpec
    from core.training.run import execute

    spec = RunSpec(kind="fine_tune", experiment_name="Score source", run_name="source", base_model=bert_model,
                   validation_path=str(DATA / "test.csv"), output_dir=str(tmp_path / "model"),
                   hyperparameters={"num_train_epochs": 1, "max_steps": 2}, dataset_version="train_sample.csv",
                   train_path=str(DATA / "train_sample.csv"), param_set=1)
    result = execute(spec)
    assert result.status == "FINISHED", result.error
    return result.run_id


# -- the Compose page ---------------------------------------------------------------------------------------------
def test_compose_guesses_the_mapping_shows_five_rows_and_launches_topic_pairs(tmp_path, demo_models, monkeypatch,
                                                                             allowed_roots, short_calls):
    import shutil

    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue

    use_store(monkeypatch, tmp_path / "home")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("calls_train.csv", "calls_test.csv"):
        shutil.copy(short_calls / name, data / name)
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(data))
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120)
    state = {"c_demo": [], "c_paths": str(demo_models["demo-deberta-v2-tiny"]), "c_datasets": ["calls_train.csv"],
             "c_validation": "calls_test.csv", "c_baseline": True, "c_output": str(tmp_path / "home" / "out"),
             "c_sets": pd.DataFrame([{"n_epochs": 1, "learning_rate": 5e-4, "train_batch_size": 8}])}
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    assert (at.selectbox(key="c_col_text").value, at.selectbox(key="c_col_label").value) == ("transcript", "topic")
    preview = next(d.value for d in at.dataframe if "text: transcript" in d.value.columns)
    assert list(preview.columns) == ["text: transcript", "label: topic"] and len(preview) == 5
    at.toggle(key="c_pairs").set_value(True).run()
    assert "topic_f1_macro" in "\n".join(str(m.value) for m in at.markdown)
    at.button(key="c_launch").click().run()
    assert not at.exception, at.exception
    jobs = JobQueue().jobs()
    assert len(jobs) == 2  # the baseline and one fine-tune, queued with the mapping and the pairs
    params = JobQueue().client.get_run(jobs[1].run_id).data.params
    assert params["columns.text"] == "transcript" and params["topic_pairs.negatives"] == "2"
    from core.worker import stop_worker

    stop_worker()


@pytest.mark.slow
def test_the_cli_runs_a_grid_file_with_a_mapping_and_topic_pairs(tmp_path, demo_models, short_calls):
    import subprocess
    import sys

    from conftest import ROOT, child_env
    from mlflow.tracking import MlflowClient

    from core.settings import default_tracking_uri

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""
base_name: Calls
data_src: CallTranscript
user_id: cli-user
dataset_versions: [calls_train.csv]
base_model_versions: ["{demo_models['demo-bert-tiny']}"]
hyperparameters:
  - {{n_epochs: 1, max_steps: 2}}
train_file: "{short_calls}/{{data_version}}"
validation_file: "{short_calls}/calls_test.csv"
output_dir: "{tmp_path}/out"
evalute_pretrained_model: false
columns: {{text: transcript, label: topic}}
topic_pairs: {{template: "The customer calls about {{}}.", negatives: 1}}
""", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "core.cli", "run", str(grid)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=child_env(TUNEBOARD_HOME=str(tmp_path / "home")), check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(default_tracking_uri((tmp_path / "home").resolve()))
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, "attributes.status = 'FINISHED'")
    assert run.data.params["topic_pairs.template"] == "The customer calls about {}."
    assert run.data.params["topic_pairs.negatives"] == "1" and "topic_f1_macro" in run.data.metrics



def test_a_grid_started_from_a_calls_experiment_keeps_its_mapping_and_topic_pairs(store, tmp_path):
    """Compose's "Start from this experiment": the same files read the same way, not a new guess (the grid kept its
    files but lost its topic pairs, so it trained plain classes). The runs are queued as the queue leaves them: a
    run per spec with the spec in its job_spec tag."""
    from mlflow import MlflowClient

    from core.grid import GridSpec
    from core.jobkind import SPEC_TAG
    from core.training.kind import past_grid

    grid = GridSpec(base_name="Calls", data_src="CallTranscript", user_id="tester", dataset_versions=("calls.csv",),
                    hyperparameters=({"n_epochs": 1},), base_model_versions=(str(tmp_path / "nli"),),
                    output_dir=str(tmp_path / "out"), train_file=str(tmp_path / "{data_version}"),
                    validation_file=str(tmp_path / "val.csv"), evaluate_pretrained_model=True,
                    columns={"text": "transcript", "label": "topic"}, topic_pairs={"negatives": 3})
    client = MlflowClient(store.tracking_uri)
    experiment = client.create_experiment(grid.experiment_name)
    for spec in grid.expand("g1"):
        client.create_run(experiment, run_name=spec.run_name, tags={SPEC_TAG: spec.to_json()})
    again = GridSpec.from_dict(past_grid(client, experiment))
    assert again.columns == {"text": "transcript", "label": "topic"}
    assert again.topic_pairs == grid.topic_pairs and again.topic_pairs["negatives"] == 3
    assert again.expand("g2")[1].topic_pairs == grid.expand("g1")[1].topic_pairs
