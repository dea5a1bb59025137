"""Checkpoints in every tokenizer layout load, fine-tune, log and predict; a missing piece is named.

The demo DeBERTa is laid out as microsoft/deberta-v3-* ships it (spm.model, a tokenizer_config.json naming
DebertaV2Tokenizer, no tokenizer.json, v3's relative attention), so it walks the real v3 tokenizer path.
A BERT folder with only vocab.txt and a RoBERTa folder with only vocab.json + merges.txt are built here
from tokenizers trained on the demo corpus. Missing sentencepiece is made real in a subprocess whose
``import sentencepiece`` fails, as it does where the package is not installed.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, child_env, use_store

from core.errors import ModelPathError

pytestmark = pytest.mark.xdist_group("v3_runs")  # one worker builds its module fixtures

V3_FILES = {"config.json", "model.safetensors", "spm.model", "tokenizer_config.json"}


def write_rows(path: Path, n: int, seed: int) -> str:
    from core.demo import make_examples

    rows = make_examples(n, seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def fine_tune(folder: Path, model: Path, kind: str = "fine_tune", name: str = "run"):
    """One real run of core.training.run.execute on a few examples (a handful of optimizer steps)."""
    from core.grid import RunSpec
    from core.training.run import execute

    spec = RunSpec(kind=kind, experiment_name="tokenizers", run_name=name, base_model=str(model),
                   validation_path=write_rows(folder / "validation.csv", 24, seed=2),
                   train_path=write_rows(folder / "train.csv", 32, seed=1) if kind == "fine_tune" else None,
                   output_dir=str(folder / "out" / name),
                   hyperparameters={"num_train_epochs": 1, "max_steps": 4, "learning_rate": 1e-3,
                                    "per_device_train_batch_size": 8, "per_device_eval_batch_size": 24})
    return execute(spec)


def refused(folder: Path) -> str:
    from core.data import LabelMapping
    from core.models.loading import load_for_classification

    with pytest.raises(ModelPathError) as info:
        load_for_classification(str(folder), LabelMapping({"entailment": 0, "not_entailment": 1}, keeps_head=True))
    message = str(info.value)
    assert message.startswith(f"{folder}:"), "every model error starts with the path it is about"
    assert "tiktoken" not in message
    return message


@pytest.fixture(scope="module")
def v3_runs(tmp_path_factory, demo_models):
    """A baseline and a fine-tune of the v3-shaped demo DeBERTa in one embedded store."""
    tmp = tmp_path_factory.mktemp("v3")
    model = demo_models["demo-deberta-v2-tiny"]
    with pytest.MonkeyPatch.context() as mp:
        settings = use_store(mp, tmp / "home")
        baseline = fine_tune(tmp, model, kind="baseline", name="baseline")
        tuned = fine_tune(tmp, model, name="tuned")
        yield settings, baseline, tuned, tmp


def test_demo_deberta_ships_like_deberta_v3(demo_models):
    from sentencepiece import sentencepiece_model_pb2
    from transformers import AutoConfig, AutoTokenizer

    folder = demo_models["demo-deberta-v2-tiny"]
    assert {p.name for p in folder.iterdir()} == V3_FILES  # no tokenizer.json: transformers builds it from spm
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "DebertaV2Tokenizer"
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "deberta-v2" and config.relative_attention and config.share_att_key
    assert config.pos_att_type == ["p2c", "c2p"] and config.norm_rel_ebd == "layer_norm"
    assert config.max_relative_positions == -1 and not config.position_biased_input
    assert config.position_buckets > 0 and config.type_vocab_size == 0
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((folder / "spm.model").read_bytes())
    assert [p.piece for p in proto.pieces[:4]] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert proto.trainer_spec.model_type == proto.trainer_spec.UNIGRAM
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "DebertaV2Tokenizer"
    assert tokenizer.mask_token_id == len(proto.pieces) < config.vocab_size + 1  # [MASK] after the spm vocab
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("I moved to a new house", "The topic is fees.")["input_ids"])
    assert pieces[0] == "[CLS]" and pieces.count("[SEP]") == 2 and "▁house" in pieces and "[UNK]" not in pieces


def test_demo_sentencepiece_model_is_the_same_every_time():
    from core.demo import sentencepiece_model

    assert sentencepiece_model() == sentencepiece_model()


def test_an_old_or_half_built_demo_deberta_is_built_again(tmp_path, monkeypatch):
    """A demo DeBERTa from before the v3 layout (tokenizer.json, no spm.model), or one whose build was cut
    off (a config, no weights), is rebuilt by ``prepare``; a complete one is left as it is."""
    from core.demo import ensure_demo

    settings = use_store(monkeypatch, tmp_path / "home")
    deberta = ensure_demo(settings)["demo-deberta-v2-tiny"]
    (deberta / "spm.model").unlink()
    (deberta / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert (ensure_demo(settings)["demo-deberta-v2-tiny"] / "spm.model").is_file()
    assert not (deberta / "tokenizer.json").exists()
    for weights in deberta.glob("*.safetensors"):
        weights.unlink()
    ensure_demo(settings)
    assert any(deberta.glob("*.safetensors"))
    stamp = (deberta / "config.json").stat().st_mtime_ns
    ensure_demo(settings)
    assert (deberta / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in deberta.parent.iterdir() if p.name.startswith(".")] == []  # no build folders left


@pytest.mark.slow
def test_v3_checkpoint_baselines_fine_tunes_logs_and_predicts(v3_runs):
    import mlflow
    import pandas as pd

    from core.demo import LABELS

    _, baseline, tuned, _ = v3_runs
    assert (baseline.status, tuned.status) == ("FINISHED", "FINISHED"), (baseline.error, tuned.error)
    assert 0.0 <= tuned.metrics["accuracy"] <= 1.0 and 0.0 <= baseline.metrics["accuracy"] <= 1.0
    run = mlflow.get_run(tuned.run_id)
    # the saved and logged tokenizer is the fast one (tokenizer.json), so using it needs no sentencepiece
    assert (Path(run.data.tags["output_dir"]) / "tokenizer.json").is_file()
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    frame = pd.DataFrame({"text": ["I need a hardship withdrawal, can you help me with that?", "hello, yes."],
                          "text_pair": ["This call is about withdrawal.", "The topic of this call is fees."]})
    predictions = model.predict(frame)
    assert len(predictions) == 2 and set(predictions["label"]) <= set(LABELS)


@pytest.mark.slow
def test_without_sentencepiece_the_message_names_it_and_the_logged_model_still_predicts(v3_runs, demo_models):
    """A child process in which ``import sentencepiece`` fails (a module ahead of it on PYTHONPATH raises
    ImportError, as a missing package does): transformers alone blames tiktoken; we name sentencepiece, for a
    local folder and for a hub id (served offline from a Hugging Face cache laid out as a download leaves it)."""
    import mlflow

    from core.tokenizer import SENTENCEPIECE

    settings, _, tuned, tmp = v3_runs
    served = mlflow.artifacts.download_artifacts(mlflow.get_run(tuned.run_id).data.tags["model_uri"],
                                                 dst_path=str(tmp / "served"))
    folder = demo_models["demo-deberta-v2-tiny"]
    snapshot = tmp / "hf-cache" / "models--someorg--deberta-v3-tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    shadow = tmp / "no-sentencepiece"
    shadow.mkdir()
    (shadow / "sentencepiece.py").write_text("raise ImportError(\"No module named 'sentencepiece'\")\n")
    script = textwrap.dedent("""
        import json, sys
        import pandas as pd
        from core.data import LabelMapping
        from core.errors import ModelPathError
        from core.models.loading import load_for_classification
        folder, served = sys.argv[1:3]
        out = {}
        try:
            import sentencepiece  # noqa: F401
        except ImportError:
            out["import_fails"] = True
        from transformers import AutoTokenizer
        try:
            AutoTokenizer.from_pretrained(folder)
        except Exception as exc:
            out["transformers"] = str(exc)
        for key, name in (("ours", folder), ("hub", "someorg/deberta-v3-tiny")):
            try:
                load_for_classification(name, LabelMapping({"entailment": 0, "not_entailment": 1}, keeps_head=True))
            except ModelPathError as exc:
                out[key] = str(exc)
        import mlflow
        frame = pd.DataFrame({"text": ["I want to take money out."], "text_pair": ["This call is about fees."]})
        out["predicted"] = list(mlflow.pyfunc.load_model(served).predict(frame)["label"])
        print(json.dumps(out))
    """)
    env = child_env(PYTHONPATH=f"{shadow}:{ROOT}", TUNEBOARD_HOME=str(settings.home),
                    HF_HUB_CACHE=str(tmp / "hf-cache"))
    done = subprocess.run([sys.executable, "-c", script, str(folder), served], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["import_fails"]
    assert "tiktoken" in out["transformers"]  # the misleading advice this exists to replace
    advice = f"sentencepiece package is not installed: pip install {SENTENCEPIECE} (then restart the dashboard"
    assert out["ours"] == (f"{folder}: this folder's tokenizer is a SentencePiece model (spm.model) and the "
                           f"{advice} and its worker).")
    assert out["hub"] == ("someorg/deberta-v3-tiny: this model's tokenizer is a SentencePiece model and the "
                          f"{advice} and its worker).")
    assert len(out["predicted"]) == 1  # the logged model carries tokenizer.json: serving needs no sentencepiece


def test_folder_without_tokenizer_files_says_what_it_expects(tmp_path, demo_models):
    folder = tmp_path / "weights-only"
    shutil.copytree(demo_models["demo-deberta-v2-tiny"], folder)
    (folder / "spm.model").unlink()  # transformers would build a 7-token tokenizer here without a word
    message = refused(folder)
    assert "no tokenizer files in this folder" in message
    assert "expected tokenizer.json, or spm.model (SentencePiece) / vocab.txt (WordPiece) / vocab.json + " \
           "merges.txt (BPE)" in message
    assert "Copy the tokenizer files" in message


@pytest.mark.parametrize("content", [b"not a sentencepiece model " * 8, b""], ids=["garbage", "empty"])
def test_damaged_sentencepiece_model_is_named_not_tiktoken(tmp_path, demo_models, content):
    folder = tmp_path / "damaged"
    shutil.copytree(demo_models["demo-deberta-v2-tiny"], folder)
    (folder / "spm.model").write_bytes(content)
    message = refused(folder)
    assert "spm.model is not a SentencePiece model that sentencepiece can read" in message
    assert "damaged or incomplete" in message and "Copy it again" in message


def bert_with_vocab_txt(folder: Path, demo_bert: Path) -> Path:
    """The demo BERT as older checkpoints ship it: weights, config.json and a WordPiece vocab.txt only."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(demo_bert / name, folder / name)
    vocab = json.loads((demo_bert / "tokenizer.json").read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in sorted(vocab, key=vocab.get)))
    return folder


def roberta_with_vocab_json_and_merges(folder: Path) -> Path:
    """A tiny RoBERTa as roberta-base shipped it: weights, config.json, vocab.json and merges.txt only."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    from core.demo import LABELS, _corpus

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder.mkdir()
    tok.model.save(str(folder))  # vocab.json + merges.txt
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=130,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, id2label=dict(enumerate(LABELS)),
                           label2id={name: i for i, name in enumerate(LABELS)})
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bert-vocab.txt", "roberta-vocab.json+merges.txt"])
def test_checkpoints_with_only_vocabulary_files_load_and_fine_tune(tmp_path, monkeypatch, demo_models, layout):
    from core.models.loading import load_config

    if layout == "bert-vocab.txt":
        folder = bert_with_vocab_txt(tmp_path / "bert", demo_models["demo-bert-tiny"])
        files = {"config.json", "model.safetensors", "vocab.txt"}
    else:
        folder = roberta_with_vocab_json_and_merges(tmp_path / "roberta")
        files = {"config.json", "model.safetensors", "vocab.json", "merges.txt"}
    assert {p.name for p in folder.iterdir()} == files
    load_config(str(folder))
    use_store(monkeypatch, tmp_path / "home")
    result = fine_tune(tmp_path, folder)
    assert result.status == "FINISHED", result.error
    saved = Path(tmp_path / "out" / "run")
    assert (saved / "tokenizer.json").is_file()  # saved as a fast tokenizer, whatever it was built from


def test_demo_deberta_builds_at_real_vocabulary_and_length(tmp_path):
    """The benchmarks' DeBERTa-v3 shapes: a 128100-row embedding and 512 positions (256 buckets)."""
    from transformers import AutoConfig, AutoTokenizer

    from core.demo import build_model

    folder = build_model(tmp_path / "wide", "deberta-v2", model_vocab_size=128100, max_positions=512)
    config = AutoConfig.from_pretrained(folder)
    assert (config.vocab_size, config.max_position_embeddings, config.position_buckets) == (128100, 512, 256)
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 512


def test_pins_in_requirements_match_the_advice():
    from core.tokenizer import PROTOBUF, SENTENCEPIECE

    pins = set((ROOT / "requirements.txt").read_text().split())
    assert {SENTENCEPIECE, PROTOBUF} <= pins
