"""Topic pairs on a base model that is not NLI: an encoder as pretrained (no classification head, as
``microsoft/deberta-v3-base`` or all-MiniLM-L6-v2 come from the hub) gets a new two-way NLI head and trains; a model
whose trained head is for other classes is refused before anything runs, saying what to do.

Real training of the offline demo BERT, saved as a bare encoder (``BertModel``: no head, no labels).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import use_store

from core.errors import TuneboardError
from core.grid import GridSpec
from core.topic_pairs import NLI_LABELS, has_trained_head, pair_config

pytestmark = pytest.mark.xdist_group("encoder_pairs")
MAPPING = {"text": "transcript", "label": "topic"}


def bare_encoder(demo_bert: Path, out: Path) -> Path:
    """The demo BERT's encoder alone, saved as the hub ships a pretrained encoder (architectures BertModel)."""
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(demo_bert)
    encoder.config.id2label, encoder.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    encoder.save_pretrained(out)
    AutoTokenizer.from_pretrained(demo_bert).save_pretrained(out)
    return out


def other_head(demo_bert: Path, out: Path) -> Path:
    """The demo BERT with a trained head for two other classes (a sentiment model, say)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        demo_bert, num_labels=2, id2label={0: "praise", 1: "complaint"}, label2id={"praise": 0, "complaint": 1})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(demo_bert).save_pretrained(out)
    return out


def calls(folder: Path, short_calls: Path) -> Path:
    """The first 60 training and 20 validation calls of the short calls."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in (("calls_train.csv", 60), ("calls_test.csv", 20)):
        with open(short_calls / name, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[: keep + 1]
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return folder


def grid(model: Path, data: Path, out: Path) -> GridSpec:
    return GridSpec(base_name="Encoder_Pairs", data_src="Calls", dataset_versions=("calls_train.csv",),
                    hyperparameters=({"n_epochs": 1, "max_steps": 4, "learning_rate": 5e-4, "train_batch_size": 8},),
                    base_model_versions=(str(model),), output_dir=str(out), train_file=str(data / "{data_version}"),
                    validation_file=str(data / "calls_test.csv"), evaluate_pretrained_model=True,
                    user_id="tester", columns=MAPPING, topic_pairs=True)


def test_an_encoder_without_a_head_is_given_the_nli_labels_and_other_configs_are_kept(demo_models, tmp_path):
    from transformers import AutoConfig

    bare = AutoConfig.from_pretrained(bare_encoder(demo_models["demo-bert-tiny"], tmp_path / "bare"))
    assert bare.architectures == ["BertModel"] and not has_trained_head(bare)
    given = pair_config(bare)
    assert given.id2label == dict(enumerate(NLI_LABELS)) and given.num_labels == 2
    assert bare.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # the model's own config is not changed
    nli = AutoConfig.from_pretrained(demo_models["demo-bert-tiny"])
    assert pair_config(nli) is nli  # an NLI model keeps its own head and labels
    sentiment = AutoConfig.from_pretrained(other_head(demo_models["demo-bert-tiny"], tmp_path / "sentiment"))
    assert has_trained_head(sentiment) and pair_config(sentiment) is sentiment


@pytest.mark.slow
def test_topic_pairs_train_an_encoder_without_a_head_on_a_new_nli_head(demo_models, short_calls, tmp_path,
                                                                       monkeypatch):
    from core import runs as runs_mod
    from core.experiment_manager import ExperimentManager

    use_store(monkeypatch, tmp_path / "home")
    encoder = bare_encoder(demo_models["demo-bert-tiny"], tmp_path / "encoder")
    spec = grid(encoder, calls(tmp_path / "data", short_calls), tmp_path / "trained")
    summary = ExperimentManager.from_spec(spec).run_experiments(show_progress=False)
    assert [r.status for r in summary.results] == ["FINISHED", "FINISHED"], [r.error for r in summary.results]
    client = runs_mod.client()
    for result in summary.results:
        params = client.get_run(result.run_id).data.params
        assert params["label_names"] == "entailment,not_entailment"
        assert "classifier.weight" in params["new_weights"]  # the head is new: the run says so
        assert params["keeps_pretrained_head"] == "False"
        assert 0.0 <= client.get_run(result.run_id).data.metrics["topic_f1_macro"] <= 1.0


def test_a_model_with_a_head_for_other_classes_is_refused_before_anything_runs(demo_models, short_calls, tmp_path,
                                                                                monkeypatch):
    from core import runs as runs_mod
    from core.training.check import check_grid

    use_store(monkeypatch, tmp_path / "home")
    model = other_head(demo_models["demo-bert-tiny"], tmp_path / "sentiment")
    with pytest.raises(TuneboardError) as refused:
        check_grid(grid(model, calls(tmp_path / "data", short_calls), tmp_path / "trained"))
    said = str(refused.value)
    assert "'praise', 'complaint'" in said and "leave topic_pairs out" in said
    assert "encoder with no classification head" in said
    assert not runs_mod.client().search_experiments(filter_string="name LIKE 'Encoder_Pairs%'")


def test_compose_offers_topic_pairs_for_an_encoder_without_a_head(demo_models, tmp_path, monkeypatch):
    import io

    from conftest import ROOT, copy_data
    from streamlit.testing.v1 import AppTest

    from core.demo import make_calls

    use_store(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(copy_data(tmp_path / "data")))
    monkeypatch.setenv("TUNEBOARD_MODEL_ROOTS", str(tmp_path / "models"))
    encoder = bare_encoder(demo_models["demo-bert-tiny"], tmp_path / "models" / "bert-encoder")
    sentiment = other_head(demo_models["demo-bert-tiny"], tmp_path / "models" / "sentiment")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["call_id", "transcript", "topic"])
    writer.writeheader()
    writer.writerows(make_calls(40, seed=3, prefix="T"))
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120)
    at.session_state["c_paths"] = f"{encoder}\n{sentiment}"
    at.run()
    at.file_uploader(key="c_upload").set_value(("calls.csv", out.getvalue().encode(), "text/csv")).run()
    assert not at.exception, at.exception
    (switch,) = [t for t in at.toggle if t.key == "c_pairs"]
    assert switch.label.startswith("Train bert-encoder (a new NLI head) to tag the calls' topics"), switch.label
    assert "sentiment" not in switch.label  # its head is for other classes
