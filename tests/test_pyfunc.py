"""The pyfunc contract: what ``mlflow.pyfunc.load_model(uri).predict`` and ``mlflow models serve`` take.

Two real models, trained once for the module with ``core.training.run.execute`` on the tiny demo BERT and logged
by ``core.models.loading.log_model`` (MLflow's transformers flavor, with ``core.models.served`` as the python_function
flavor): a single-text classifier (a ``text`` column) and a sentence-pair (NLI) classifier (``premise`` /
``hypothesis``). Every answer is checked against the logged Hugging Face pipeline itself, so a call that classified
the wrong column, or dropped the hypothesis, would fail. (These texts fit one window; long calls, read as windows,
and topics given in params: tests/test_served_long.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
from conftest import DATA, child_env, free_port, use_store

pytestmark = pytest.mark.xdist_group("pyfunc_models")  # one worker builds its module fixtures

TEXTS = ["hi, I can't log in to my account, my password stopped working.", "what are the fees on my plan?"]
PAIRS = ["This call is about account access.", "This call is about fees."]


@pytest.fixture(scope="module")
def models(tmp_path_factory, bert_model):
    """{"single": uri, "pair": uri, "tracking_uri": ...} for two models trained for a few steps."""
    import mlflow

    from core.grid import GridSpec
    from core.training.run import execute

    tmp = tmp_path_factory.mktemp("pyfunc")
    source = pd.read_csv(DATA / "test.csv")
    pd.DataFrame({"text": source["premise"], "label": source["topic"]}).to_csv(tmp / "single.csv", index=False)
    files = {"single": (tmp / "single.csv", tmp / "single.csv"),
             "pair": (DATA / "train_sample.csv", DATA / "test.csv")}
    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp / "home")
        uris = {"tracking_uri": settings.tracking_uri}
        for kind, (train, validation) in files.items():
            spec = GridSpec(base_name="Pyfunc", data_src=kind, dataset_versions=(train.name,),
                            hyperparameters=({"n_epochs": 1, "max_steps": 2, "learning_rate": 1e-3},),
                            base_model_versions=(bert_model,), output_dir=str(tmp / "out"),
                            train_file=str(train.parent / "{data_version}"), validation_file=str(validation),
                            evaluate_pretrained_model=False, user_id="tester")
            result = execute(spec.expand()[0], settings=settings)
            assert result.status == "FINISHED", result.error
            uris[kind] = mlflow.get_run(result.run_id).data.tags["model_uri"]
        yield uris, mp


@pytest.fixture(autouse=True)
def _on_the_module_store(models):
    """Other modules' tests point MLflow elsewhere; models:/ URIs resolve through this module's store."""
    import mlflow

    mlflow.set_tracking_uri(models[0]["tracking_uri"])


def _pipeline_scores(uri: str, inputs) -> list[float]:
    """What the logged Hugging Face pipeline itself says: the reference for every pyfunc answer."""
    import mlflow

    pipeline = mlflow.transformers.load_model(uri)
    return [row["score"] for row in pipeline(inputs)]


def _scores(frame: pd.DataFrame) -> list[float]:
    assert list(frame.columns) == ["label", "score"]
    return list(frame["score"])


def test_a_single_text_model_takes_a_list_a_series_a_frame_and_a_string(models):
    import mlflow

    uris, _ = models
    model = mlflow.pyfunc.load_model(uris["single"])
    expected = _pipeline_scores(uris["single"], TEXTS)
    assert _scores(model.predict(TEXTS)) == pytest.approx(expected)
    assert _scores(model.predict(pd.Series(TEXTS))) == pytest.approx(expected)
    assert _scores(model.predict(pd.DataFrame({"text": TEXTS}))) == pytest.approx(expected)
    # a frame read from a labelled file: the text column first, the rest ignored
    assert _scores(model.predict(pd.DataFrame({"text": TEXTS, "label": ["x", "y"]}))) == pytest.approx(expected)
    assert _scores(model.predict(TEXTS[0])) == pytest.approx(expected[:1])
    labels = set(pd.read_csv(DATA / "test.csv")["topic"])
    assert set(model.predict(TEXTS)["label"]) <= labels


def test_a_pair_model_takes_a_frame_records_and_one_dict(models):
    import mlflow

    uris, _ = models
    model = mlflow.pyfunc.load_model(uris["pair"])
    records = [{"text": t, "text_pair": p} for t, p in zip(TEXTS, PAIRS, strict=True)]
    expected = _pipeline_scores(uris["pair"], records)
    assert expected != pytest.approx(_pipeline_scores(uris["pair"], TEXTS)), "the hypothesis must matter"
    assert _scores(model.predict(pd.DataFrame({"text": TEXTS, "text_pair": PAIRS}))) == pytest.approx(expected)
    assert _scores(model.predict(records)) == pytest.approx(expected)
    assert _scores(model.predict(records[0])) == pytest.approx(expected[:1])
    assert set(model.predict(records)["label"]) <= {"entailment", "not_entailment"}


def test_an_nli_model_refuses_texts_without_hypotheses_or_topics_saying_how_to_give_topics(models):
    import mlflow
    from mlflow.exceptions import MlflowException

    uris, _ = models
    model = mlflow.pyfunc.load_model(uris["pair"])
    asks = r"give topics in params, e\.g\. \{'topics': \['refund', 'fees'\]\}"  # whole calls are tagged with topics
    with pytest.raises(MlflowException, match=asks):
        model.predict(TEXTS)
    with pytest.raises(MlflowException, match=asks):
        model.predict(pd.DataFrame({"text": TEXTS}))


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _serve(uri: str, tracking_uri: str, log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)  # the scoring server execs uvicorn from PATH
    env = child_env(MLFLOW_TRACKING_URI=tracking_uri, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local", "-m", uri,
                             "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_until_up(proc: subprocess.Popen, url: str, log_path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mlflow models serve stopped: {log_path.read_text()[-2000:]}"
        try:
            if urllib.request.urlopen(f"{url}/ping", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"mlflow models serve did not answer within {timeout:.0f} s: {log_path.read_text()[-2000:]}")


@pytest.mark.slow
def test_mlflow_models_serve_takes_the_documented_json_bodies(models, tmp_path):
    import signal

    uris, _ = models
    logs = {kind: tmp_path / f"serve-{kind}.log" for kind in ("single", "pair")}
    servers = {}
    try:
        for kind in ("single", "pair"):
            servers[kind] = _serve(uris[kind], uris["tracking_uri"], logs[kind].open("wb"))
        for kind, (proc, url) in servers.items():
            _wait_until_up(proc, url, logs[kind])
        single, pair = servers["single"][1], servers["pair"][1]
        expected = _pipeline_scores(uris["single"], TEXTS)
        for body in ({"inputs": TEXTS},
                     {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
                     {"dataframe_records": [{"text": t} for t in TEXTS]}):
            status, answer = _post(single, body)
            assert status == 200, answer
            assert [p["score"] for p in answer["predictions"]] == pytest.approx(expected), body

        records = [{"text": t, "text_pair": p} for t, p in zip(TEXTS, PAIRS, strict=True)]
        expected = _pipeline_scores(uris["pair"], records)
        split = {"columns": ["text", "text_pair"], "data": [[r["text"], r["text_pair"]] for r in records]}
        for body in ({"dataframe_split": split},
                     {"dataframe_records": records},
                     {"inputs": records},
                     {"inputs": {"text": TEXTS, "text_pair": PAIRS}}):
            status, answer = _post(pair, body)
            assert status == 200, answer
            assert [p["score"] for p in answer["predictions"]] == pytest.approx(expected), body
        status, answer = _post(pair, {"inputs": TEXTS})
        assert status == 400 and "give topics in params, e.g. {'topics': ['refund', 'fees']}" in answer["message"]
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
