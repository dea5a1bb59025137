"""core.models.loading.load_config: refusals name the path and say what to do; a real model folder loads."""

from __future__ import annotations

import json
import time

import pytest

from core.errors import ModelPathError
from core.models.loading import load_config


def refused(name_or_path: str) -> str:
    with pytest.raises(ModelPathError) as info:
        load_config(name_or_path)
    message = str(info.value)
    assert message.startswith(f"{name_or_path}:"), "every model error starts with the path it is about"
    return message


def test_path_that_does_not_exist(tmp_path):
    message = refused(str(tmp_path / "models" / "deberta-v3-base-zeroshot-v2"))
    assert "no such folder" in message
    assert "Check the path" in message


def test_file_instead_of_a_folder(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 16)
    message = refused(str(weights))
    assert "is a file" in message
    assert "folder holding config.json" in message


def test_folder_without_config_json(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    message = refused(str(folder))
    assert "has no config.json" in message
    assert "save_pretrained" in message


def test_hub_id_offline_fails_quickly_and_says_the_hub_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no folder of that name next to us
    start = time.monotonic()
    message = refused("someorg/some-model-that-does-not-exist")
    assert time.monotonic() - start < 10
    assert "HF_HUB_OFFLINE=1" in message and "hub" in message
    assert "Download it to a folder and give that folder's path" in message


@pytest.mark.parametrize("config", [
    {"model_type": "bert", "auto_map": {"AutoConfig": "modeling.MyConfig", "AutoModel": "modeling.MyModel"}},
    {"auto_map": {"AutoConfig": "modeling.MyConfig"}},
    {"model_type": "bert", "auto_map": {"AutoModelForSequenceClassification": "modeling.MyClassifier"}},
], ids=["builtin-type", "no-model-type", "model-only"])
def test_folder_needing_remote_code_is_refused(tmp_path, config):
    folder = tmp_path / "custom-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    message = refused(str(folder))
    assert "trust_remote_code" in message
    assert "never allows" in message
    assert "Choose a model built into transformers" in message


def test_config_without_model_type_is_refused(tmp_path):
    folder = tmp_path / "odd-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    message = refused(str(folder))
    assert "not a usable model config" in message
    assert "model_type" in message


def test_local_config_that_is_not_json_blames_the_file_not_the_hub(tmp_path):
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    message = refused(str(folder))
    assert "hub" not in message
    assert "config.json" in message


def test_tiny_model_folder_loads(tmp_path):
    from core.demo import build_model

    folder = build_model(tmp_path / "m", "bert")
    config = load_config(str(folder))
    assert "entailment" in config.label2id
    assert config.label2id == {"entailment": 0, "not_entailment": 1}
    assert config.model_type == "bert"


def test_folder_without_tokenizer_files_is_refused_before_any_run(tmp_path):
    """Weights and config.json but no tokenizer: refused when the grid is checked, not when a run starts."""
    from core.demo import build_model

    folder = build_model(tmp_path / "weights-only", "bert")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    message = refused(str(folder))
    assert "no tokenizer files in this folder: expected tokenizer.json, or spm.model" in message
    assert "Copy the tokenizer files" in message
