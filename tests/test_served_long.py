"""The served model reads whole calls as evaluation does (core.models.served, logged by core.models.loading.log_model).

One model for the module: the demo BERT (an NLI head), taught in a few steps that a window holding the customer's
reason entails its hypothesis (the untaught demo model scores every window alike, so no window would stand out),
logged with the reading settings it was "evaluated" with, registered and put into production. A call far longer
than the model's 128-token window, whose reason lies only in its last window, must get from
``mlflow.pyfunc.load_model("models:/NAME@production").predict`` and from ``mlflow models serve`` the same scores,
tags and deciding windows as ``core.scoring.topics.read_topics`` on the same model and tokenizer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, child_env, free_port, use_store

pytestmark = pytest.mark.xdist_group("served_long")  # one worker builds the module's model

NAME = "Served_Long"
URI = f"models:/{NAME}@production"
MAX_LENGTH, OVERLAP = 96, 12  # what the model is logged with: serving must default to them
CHATTER = [
    "Agent: Thank you for calling the retirement plan service center, my name is Dana, how can I help you today?",
    "Customer: Hi Dana, good morning. Let me find my papers first, one moment please.",
    "Agent: Of course, take your time. Before we start, can I have your full name and date of birth?",
    "Customer: Sure, it is Maria Lopez, the fourth of March, nineteen seventy two.",
    "Agent: Thank you Maria. And can you confirm the last four digits of your social security number?",
    "Customer: Yes, it is eight one two six.",
    "Agent: Thank you. I will place you on a brief hold while I pull up your account.",
    "Customer: Okay, no problem.",
    "Agent: Thank you for holding, I have your account in front of me now.",
    "Customer: Great, thanks. The weather has been terrible here all week, by the way.",
    "Agent: I am sorry to hear that, it has been raining here as well.",
]
REASON = "The real reason I called is that I was billed twice this quarter and the maintenance fee seems too high."
CALL = "\n".join([*CHATTER * 3, f"Customer: {REASON}"])  # about 1,000 tokens; the reason only at the end
SHORT = "Customer: hello, I only wanted to say thank you."
TOPICS = ["fees", "rollover", "account access", "loan request", "withdrawal"]


def _teach(model, tokenizer, steps: int = 30, rounds: int = 6) -> None:
    """A few steps on chatter with and without the reason, so windows that hold it score higher (seeded), until
    CALL read as windows is tagged "fees" by its last window, the one with the reason (up to ``rounds`` x ``steps``:
    the demo tokenizer differs build to build, and one CI run's build had not learnt it in 30 steps)."""
    import torch

    from core.models.windows import Reading
    from core.scoring.topics import DEFAULT_TEMPLATE, read_topics

    rng = random.Random(0)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(rounds):
        _steps(model, tokenizer, optimizer, rng, steps)
        read = read_topics(model, tokenizer, [CALL], TOPICS, DEFAULT_TEMPLATE, reading=Reading(MAX_LENGTH, OVERLAP))
        if read.scores[0, 0] >= 0.5 and read.deciding[0, 0] == read.split.counts[0] - 1:  # TOPICS[0]: fees
            return
    pytest.fail(f"the served model did not learn the reason in {rounds * steps} steps: 'fees' {read.scores[0, 0]:.3f}")


def _steps(model, tokenizer, optimizer, rng: random.Random, steps: int) -> None:
    import torch

    model.train()
    for _ in range(steps):
        premises, labels = [], []
        for _ in range(16):
            turns = rng.sample(CHATTER, 3)
            if rng.random() < 0.5:
                turns.insert(rng.randrange(4), f"Customer: {REASON}")
            labels.append(0 if f"Customer: {REASON}" in turns else 1)  # 0: entailment in the demo head
            premises.append("\n".join(turns))
        batch = tokenizer(premises, ["This call is about fees."] * 16, truncation=True, max_length=MAX_LENGTH,
                          padding=True, return_tensors="pt")
        model(**batch, labels=torch.tensor(labels)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="module")
def served(tmp_path_factory, bert_model):
    """{"tracking_uri", "info", "plain"}: the taught NLI model in production as NAME, and a plain (non-NLI)
    single-text model's ModelInfo."""
    import mlflow
    from mlflow import MlflowClient
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.models.loading import log_model
    from core.settings import configure_mlflow, ensure_experiment

    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp_path_factory.mktemp("served-long") / "home")
        configure_mlflow()
        mlflow.set_experiment(experiment_id=ensure_experiment("Served_Long"))
        tokenizer = AutoTokenizer.from_pretrained(bert_model)
        model = AutoModelForSequenceClassification.from_pretrained(bert_model)
        _teach(model, tokenizer)
        plain = AutoModelForSequenceClassification.from_pretrained(
            bert_model, id2label={0: "complaint", 1: "praise"}, label2id={"complaint": 0, "praise": 1})
        with mlflow.start_run():
            info = log_model(model, tokenizer, pairs=True, max_length=MAX_LENGTH, window_overlap=OVERLAP)
            plain_info = log_model(plain, tokenizer, pairs=False, name="plain", max_length=MAX_LENGTH)
        version = mlflow.register_model(info.model_uri, NAME)
        MlflowClient().set_registered_model_alias(NAME, "production", version.version)
        yield {"tracking_uri": settings.tracking_uri, "info": info, "plain": plain_info}


@pytest.fixture(autouse=True)
def _on_the_module_store(served):
    import mlflow

    mlflow.set_tracking_uri(served["tracking_uri"])


def _reference(topics=TOPICS, max_length: int = MAX_LENGTH, texts=(CALL, SHORT)):
    """What evaluation says: core.scoring.topics.read_topics on the registered model's own weights and tokenizer
    (found by core.models.sources, as the dashboard finds them)."""
    from core.models.sources import load
    from core.models.windows import Reading
    from core.scoring.topics import DEFAULT_TEMPLATE, read_topics

    model, tokenizer, _ = load(URI, device="cpu")
    return read_topics(model, tokenizer, list(texts), topics, DEFAULT_TEMPLATE,
                       reading=Reading(max_length, OVERLAP))


def _check_against(frame: pd.DataFrame, read, topics=TOPICS, texts=(CALL, SHORT)) -> None:
    from core.scoring.topics import tagged

    assert list(frame.columns) == ["tags", *(f"score: {t}" for t in topics), *(f"evidence: {t}" for t in topics)]
    scores = frame[[f"score: {t}" for t in topics]].to_numpy(dtype=float)
    np.testing.assert_allclose(scores, read.scores, atol=1e-5)
    assert list(frame["tags"]) == ["; ".join(t) for t in tagged(read.scores, topics, 0.5)]
    for i, text in enumerate(texts):
        for j, topic in enumerate(topics):
            evidence = frame[f"evidence: {topic}"][i]
            assert evidence == read.evidence(i, j).text and evidence in text


def test_a_long_call_is_read_whole_with_the_same_scores_tags_and_windows_as_evaluation(served):
    import mlflow

    read = _reference()
    windows = [w for w, owner in zip(read.split.windows, read.split.owner, strict=True) if owner == 0]
    assert len(windows) > 8, "the call must be far longer than the model's window"
    assert [i for i, w in enumerate(windows) if REASON in w.text] == [len(windows) - 1], \
        "the reason must lie in the last window only"
    last = len(windows) - 1
    decided_by_last = [j for j in range(len(TOPICS)) if read.deciding[0, j] == last]
    assert decided_by_last, (f"the window with the reason decides at least one topic: scores {read.scores[0]}, "
                             f"deciding windows {read.deciding[0]} of {last + 1}")

    model = mlflow.pyfunc.load_model(URI)
    frame = model.predict([CALL, SHORT], params={"topics": TOPICS})
    _check_against(frame, read)
    for j in decided_by_last:
        assert REASON in frame[f"evidence: {TOPICS[j]}"][0]
    assert "fees" in frame["tags"][0].split("; ")
    # the other ways to give texts, and topics as one comma-separated item
    for data in (pd.Series([CALL, SHORT]), pd.DataFrame({"text": [CALL, SHORT]}),
                 [{"text": CALL}, {"text": SHORT}], {"text": [CALL, SHORT]}):
        pd.testing.assert_frame_equal(model.predict(data, params={"topics": [", ".join(TOPICS)]}), frame)
    one = model.predict(CALL, params={"topics": TOPICS})  # batched otherwise: equal within float noise
    np.testing.assert_allclose(one.filter(like="score: ").to_numpy(), frame.filter(like="score: ")[:1], atol=1e-5)
    assert one.filter(like="evidence: ").equals(frame.filter(like="evidence: ")[:1])


def test_the_reading_settings_it_was_evaluated_with_are_the_served_defaults(served):
    import mlflow
    from mlflow.models import Model

    info = mlflow.models.get_model_info(URI)
    assert info.flavors["python_function"]["loader_module"] == "tuneboard_served.models.served"  # the shipped copy
    assert info.flavors["python_function"]["served_defaults"] == {
        "max_length": MAX_LENGTH, "window_overlap": OVERLAP, "template": "This call is about {}.", "threshold": 0.5}
    defaults = {p.name: p.default for p in info.signature.params.params}
    assert defaults == {"topics": [], "template": "This call is about {}.", "threshold": 0.5,
                        "max_length": MAX_LENGTH, "window_overlap": OVERLAP}
    assert Model.load(URI).flavors["transformers"]["task"] == "text-classification"

    model = mlflow.pyfunc.load_model(URI)
    wider = _reference(max_length=128)
    assert len(wider.split.windows) < len(_reference().split.windows)
    _check_against(model.predict([CALL, SHORT], params={"topics": TOPICS, "max_length": 128}), wider)
    lower = model.predict([SHORT], params={"topics": TOPICS, "threshold": 0.0})
    assert sorted(lower["tags"][0].split("; ")) == sorted(TOPICS)


def test_the_transformers_flavor_and_the_model_folder_are_kept(served):
    import mlflow
    from transformers import TextClassificationPipeline

    from core.models.sources import labels, local_folder

    pipeline = mlflow.transformers.load_model(URI)
    assert isinstance(pipeline, TextClassificationPipeline)
    folder = local_folder(URI)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert labels(URI) == {0: "entailment", 1: "not_entailment"}
    assert served["info"].model_uri.startswith("models:/m-")


def test_pairs_still_give_a_label_and_a_score_read_as_windows(served):
    import mlflow

    from core.models.sources import load
    from core.models.windows import Reading, predict

    hypotheses = ["This call is about fees.", "This call is about rollover."]
    model, tokenizer, id2label = load(URI, device="cpu")
    read = predict(model, tokenizer, [CALL, SHORT], hypotheses, reading=Reading(MAX_LENGTH, OVERLAP), entailment=0)
    assert read.aggregation == "max" and int(read.deciding[0]) == read.split.counts[0] - 1  # the reason's window
    frame = mlflow.pyfunc.load_model(URI).predict(pd.DataFrame({"text": [CALL, SHORT], "text_pair": hypotheses}))
    assert list(frame.columns) == ["label", "score"]
    assert list(frame["label"]) == [id2label[int(i)] for i in read.probabilities.argmax(axis=1)]
    np.testing.assert_allclose(frame["score"], read.probabilities.max(axis=1), atol=1e-5)


def test_a_plain_classifier_reads_windows_and_cannot_tag_topics(served):
    import mlflow
    from mlflow.exceptions import MlflowException
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.models.windows import Reading, predict

    uri = served["plain"].model_uri
    folder = mlflow.artifacts.download_artifacts(uri)
    model = AutoModelForSequenceClassification.from_pretrained(f"{folder}/model")
    tokenizer = AutoTokenizer.from_pretrained(f"{folder}/components/tokenizer")
    read = predict(model, tokenizer, [CALL, SHORT], reading=Reading(MAX_LENGTH), device="cpu")
    assert read.aggregation == "mean" and read.split.counts[0] > 8
    served_model = mlflow.pyfunc.load_model(uri)
    frame = served_model.predict([CALL, SHORT])
    assert list(frame["label"]) == [("complaint", "praise")[int(i)] for i in read.probabilities.argmax(axis=1)]
    np.testing.assert_allclose(frame["score"], read.probabilities.max(axis=1), atol=1e-5)
    with pytest.raises(MlflowException, match="This model cannot tag topics.*'complaint', 'praise'"):
        served_model.predict([CALL], params={"topics": ["fees"]})


@pytest.mark.parametrize(("data", "params", "message"), [
    ([CALL], None, r"give topics in params, e\.g\. \{'topics': \['refund', 'fees'\]\}"),
    ([CALL], {"topics": []}, r"give topics in params, e\.g\. \{'topics': \['refund', 'fees'\]\}"),
    ([CALL], {"topics": ["fees", "Fees"]}, "Topic 'Fees' is listed twice"),
    ([CALL], {"topics": ["fees"], "template": "This call is about fees."}, r"exactly one \{\}"),
    ([CALL], {"topics": ["fees"], "threshold": 2.0}, "threshold must be a number between 0 and 1"),
    ([CALL], {"topics": ["fees"], "max_length": 4}, "max_length: must be a whole number of tokens, 8 or more"),
    (pd.DataFrame({"text": [CALL], "text_pair": ["x"]}), {"topics": ["fees"]}, "not both"),
    ([None], {"topics": ["fees"]}, "Text 1 is not text"),
])
def test_requests_it_cannot_answer_are_refused_in_plain_words(served, data, params, message):
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message):
        mlflow.pyfunc.load_model(URI).predict(data, params=params)


def test_the_shipped_code_imports_alone_and_holds_no_training_or_dashboard_code(served, tmp_path):
    import mlflow

    from core.models.loading import code_files

    names = {p.relative_to(ROOT).as_posix() for p in code_files()}
    assert {"core/models/served.py", "core/models/windows.py", "core/models/infer.py"} <= names
    assert not [n for n in names if n.startswith(("core/training", "core/scoring", "core/jobs", "pages"))]
    folder = mlflow.artifacts.download_artifacts(URI, dst_path=str(tmp_path / "model"))
    shipped = sorted(p.relative_to(f"{folder}/code").as_posix() for p in Path(folder, "code").rglob("*.py"))
    assert shipped == sorted(n.replace("core/", "tuneboard_served/", 1) for n in names)
    # the shipped copy imports only itself, under its own name: a user's `import core` is never hidden by it
    code = ("import json, sys, tuneboard_served.models.served as s\n"
            "names = sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'core', 'tuneboard_served'))\n"
            "print(json.dumps([s.__file__, names]))")
    env = child_env(PYTHONPATH=f"{folder}/code")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    where, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert where.startswith(f"{folder}/code/")
    assert "tuneboard_served.models.served" in loaded and not [m for m in loaded if m.split(".")[0] == "core"]
    unwanted = ("streamlit", "tuneboard_served.training", "tuneboard_served.scoring",
                "tuneboard_served.models.sources")
    assert not [m for m in loaded if m.startswith(unwanted)]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_mlflow_models_serve_started_in_another_folder_tags_whole_calls(served, tmp_path):
    """``mlflow models serve --env-manager local`` from a folder outside the repo, with no PYTHONPATH: the server
    imports tuneboard_served.models.served (the shipped copy of core.models.served) from the model's code/ folder."""
    port = free_port()
    env = child_env(MLFLOW_TRACKING_URI=served["tracking_uri"],
                    PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local", "-m", URI,
                                 "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"mlflow models serve stopped: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no answer within 180 s: {log_path.read_text()[-3000:]}"
            try:
                if urllib.request.urlopen(f"{url}/ping", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        read = _reference()
        topics = {"topics": TOPICS}
        for body in ({"inputs": [CALL, SHORT], "params": topics},
                     {"dataframe_split": {"columns": ["text"], "data": [[CALL], [SHORT]]}, "params": topics},
                     {"dataframe_records": [{"text": CALL}, {"text": SHORT}], "params": topics}):
            status, answer = _post(url, body)
            assert status == 200, answer
            frame = pd.DataFrame(answer["predictions"])
            np.testing.assert_allclose(frame[[f"score: {t}" for t in TOPICS]].to_numpy(dtype=float), read.scores,
                                       atol=1e-5)
            for i in range(2):
                for j, topic in enumerate(TOPICS):
                    assert frame[f"evidence: {topic}"][i] == read.evidence(i, j).text
        # tags as sets: topics within float noise of each other may swap places from one process to another
        from core.scoring.topics import tagged

        assert [set(filter(None, t.split("; "))) for t in frame["tags"]] == \
            [set(t) for t in tagged(read.scores, TOPICS, 0.5)]
        status, answer = _post(url, {"inputs": [CALL]})
        assert status == 400 and "give topics in params, e.g. {'topics': ['refund', 'fees']}" in answer["message"]
        status, answer = _post(url, {"inputs": [{"text": CALL, "text_pair": "This call is about fees."}]})
        assert status == 200 and set(answer["predictions"][0]) == {"label", "score"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_a_model_loaded_before_core_is_imported_leaves_the_users_core_importable(served, tmp_path):
    """A notebook in the project's folder that loads the production model first, then the seed's classes: MLflow
    puts the model's code/ first on sys.path, which must not hide the project's own core package."""
    code = ("import json, mlflow\n"
            f"mlflow.set_tracking_uri({served['tracking_uri']!r})\n"
            f"model = mlflow.pyfunc.load_model({URI!r})\n"
            "from core.experiment_manager import ExperimentManager\n"
            "import core\n"
            "print(json.dumps([core.__file__, model.metadata.flavors['python_function']['loader_module']]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    where, loader = json.loads(done.stdout.strip().splitlines()[-1])
    assert where == str(ROOT / "core" / "__init__.py") and loader == "tuneboard_served.models.served"
