"""The calls demo's pretrained encoder (core.pretrained_demo): made from the package's model.zip with a new NLI head,
installed by `make run` and `make demo` but never needed by the tests, and refused in plain words where absent.

The real all-MiniLM-L6-v2 is a benchmark's (bench/bench_demo_calls.py); here its place is taken by the demo BERT's
encoder saved without its head, zipped the way the package ships its files."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import use_store

from core import pretrained_demo
from core.errors import TuneboardError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_zip(demo_models, tmp_path) -> Path:
    """A model.zip as the package ships it: an encoder's Hugging Face files, no classification head."""
    from transformers import AutoModelForSequenceClassification

    bert = demo_models["demo-bert-tiny"]
    encoder = tmp_path / "encoder"
    AutoModelForSequenceClassification.from_pretrained(bert).bert.save_pretrained(encoder)
    config = json.loads((encoder / "config.json").read_text())
    for key in ("id2label", "label2id", "architectures"):
        config.pop(key, None)
    (encoder / "config.json").write_text(json.dumps(config))
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("config.json", "model.safetensors"):
            archive.write(encoder / name, name)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            archive.write(bert / name, name)
        archive.writestr("1_Pooling/config.json", "{}")  # sentence-transformers' own files: not copied
    return path


def test_the_encoder_gets_nli_labels_and_a_new_head(model_zip, tmp_path):
    from core.data import LabelMapping
    from core.models.loading import load_for_classification

    dest = pretrained_demo.prepare(tmp_path / "nli", model_zip)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                      "tokenizer_config.json"]
    config = json.loads((dest / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert config["architectures"] == ["BertForSequenceClassification"]
    nli = LabelMapping({"entailment": 0, "not_entailment": 1}, keeps_head=True)
    _, _, new = load_for_classification(str(dest), nli, with_new=True)
    assert new and all(name.startswith("classifier.") for name in new)  # the head is made afresh: a new head


def test_ensure_builds_it_once_where_the_package_is_installed(model_zip, tmp_path, monkeypatch):
    settings = use_store(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(pretrained_demo, "source", lambda: None)
    assert pretrained_demo.ensure(settings) is None  # not installed: nothing built, nothing half-made
    assert not (settings.demo_models_dir / pretrained_demo.NAME).exists()
    monkeypatch.setattr(pretrained_demo, "source", lambda: model_zip)
    path = pretrained_demo.ensure(settings)
    assert path == settings.demo_models_dir / pretrained_demo.NAME and (path / "model.safetensors").is_file()
    built = (path / "config.json").stat().st_mtime_ns
    assert pretrained_demo.ensure(settings) == path and (path / "config.json").stat().st_mtime_ns == built
    assert [p.name for p in settings.demo_models_dir.iterdir() if p.name.startswith(".")] == []


def test_a_zip_without_the_weights_is_refused_naming_it(tmp_path):
    bad = tmp_path / "model.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(TuneboardError, match=r"model\.zip does not hold all-MiniLM-L6-v2's files .*model\.safetensors"):
        pretrained_demo.prepare(tmp_path / "nli", bad)


def test_the_calls_demo_without_the_encoder_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from core import cli

    use_store(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(pretrained_demo, "source", lambda: None)
    assert cli.main(["demo", "--calls"]) == 2
    error = capsys.readouterr().err
    assert "the calls demo fine-tunes a real pretrained encoder, all-MiniLM-L6-v2, and it is not installed" in error
    assert pretrained_demo.PACKAGE in error


def test_the_calls_demo_grid_is_the_benchmarked_recipe(model_zip, tmp_path, monkeypatch):
    settings = use_store(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(pretrained_demo, "source", lambda: model_zip)
    grid = pretrained_demo.calls_demo_grid(settings)
    assert grid.base_model_versions == (str(settings.demo_models_dir / pretrained_demo.NAME),)
    assert grid.dataset_versions == ("calls_train.csv",) and grid.validation_file.endswith("calls_test.csv")
    assert grid.topic_pairs["train_window"] == 64 and grid.evaluate_pretrained_model
    assert grid.hyperparameters[0]["num_train_epochs"] == 6 and grid.hyperparameters[0]["learning_rate"] == 2e-4


def test_make_run_and_demo_install_the_encoder_and_the_tests_do_not():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"ENCODER := {pretrained_demo.PACKAGE}\n" in makefile
    plan = subprocess.run(["make", "-p", "-n", "-f", "Makefile", "setup"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False).stdout
    needs = {target: re.search(rf"^{target}: (.*)$", plan, re.MULTILINE).group(1).split() for target in
             ("run", "demo", "test", "check")}
    assert "$(VENV)/.encoder" in makefile and all(".venv/.encoder" in needs[t] for t in ("run", "demo"))
    assert all(".venv/.encoder" not in needs[t] for t in ("test", "check"))


def test_compose_fills_in_the_calls_demo_where_the_encoder_is_prepared(model_zip, tmp_path, monkeypatch):
    from conftest import copy_data
    from streamlit.testing.v1 import AppTest

    settings = use_store(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(copy_data(tmp_path / "data")))
    monkeypatch.setattr(pretrained_demo, "source", lambda: model_zip)
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120).run()
    assert not at.exception and "c_load_calls_demo" not in [b.key for b in at.button]  # not prepared: no button
    pretrained_demo.ensure(settings)
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120).run()
    assert pretrained_demo.NAME not in at.multiselect(key="c_demo").value  # offered, not chosen by default
    at.button(key="c_load_calls_demo").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="c_demo").value == [pretrained_demo.NAME]
    assert at.multiselect(key="c_datasets").value == ["calls_train.csv"]
    assert at.selectbox(key="c_validation").value == "calls_test.csv"
    assert at.session_state["c_pairs"] is True
    said = "\n".join(str(e.value) for kind in ("success", "markdown") for e in at.get(kind))
    assert "Filled in the calls demo" in said and "**2 runs**" in said, said
