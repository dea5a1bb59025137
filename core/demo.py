"""The offline demo: a call-transcript topic dataset and tiny base models.

No machine here reaches a model hub, so the embedded default builds its base
models locally, each with a tokenizer trained on the demo corpus, saved in the
layout its real model family ships:

- ``demo-bert-tiny``: a BERT with a WordPiece ``tokenizer.json``;
- ``demo-deberta-v2-tiny``: shaped like ``microsoft/deberta-v3-*`` (v3's
  relative-attention config, a SentencePiece ``spm.model``, a
  ``tokenizer_config.json`` naming ``DebertaV2Tokenizer`` and no
  ``tokenizer.json``), so loading it walks the real v3 tokenizer path.

The pipeline loads them exactly like a real checkpoint folder. Their heads
carry the zero-shot NLI labels (``entailment`` / ``not_entailment``) so label
alignment works as it does for the real models.

The dataset is in the seed's shape: premise (a snippet of a customer call),
hypothesis ("This call is about ..."), label (entailment / not_entailment). Beside it, the
same kind of calls as a team labels them (``calls_train.csv``, ``calls_test.csv``:
``call_id, transcript, topic``, a few calls with two topics in one cell), to train on
through a column mapping and topic pairs.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from core.settings import Settings

LABELS = ("entailment", "not_entailment")
DEMO_MODELS = ("demo-bert-tiny", "demo-deberta-v2-tiny")
DATASET_FILES = ("full_dataset.csv", "train_sample.csv", "test.csv")
CALL_FILES = ("calls_train.csv", "calls_test.csv")  # as a team labels its calls: call_id, transcript, topic

TOPICS: dict[str, list[str]] = {
    "account access": [
        "I can't log in to my account", "my password stopped working", "the website locked me out",
        "I need to reset my login", "the security code never arrives", "my username is not recognized",
    ],
    "beneficiary update": [
        "I want to change my beneficiary", "my daughter should be the primary beneficiary",
        "we need to add my spouse as beneficiary", "remove my ex-husband from the beneficiary form",
        "who is listed to inherit this account", "update the beneficiary after my divorce",
    ],
    "loan request": [
        "I would like to borrow from my plan", "how much can I take as a loan",
        "what is the interest on a plan loan", "I need a loan for a house down payment",
        "can I repay the loan early", "apply for a second loan against my balance",
    ],
    "withdrawal": [
        "I want to take money out", "I need a hardship withdrawal", "how do I cash out my balance",
        "send me a distribution check", "what penalty applies if I withdraw now",
        "I'm retiring and want my money paid out",
    ],
    "rollover": [
        "move my old employer plan into this one", "roll my balance into an IRA",
        "transfer funds from my previous provider", "the rollover check arrived and I need to deposit it",
        "consolidate my old accounts here", "start a direct rollover to my new job",
    ],
    "contribution change": [
        "raise my contribution to ten percent", "stop my payroll deferrals", "lower how much I save each paycheck",
        "switch my contributions to Roth", "increase my savings rate next year",
        "change the percentage taken from my salary",
    ],
    "address change": [
        "I moved to a new house", "please update my mailing address", "my statements go to the old address",
        "change my street and zip code", "I relocated to another state", "mail is being returned to you",
    ],
    "fees": [
        "why was I charged this fee", "what are the annual fees on my account", "there is a charge I don't recognize",
        "the maintenance fee seems too high", "explain the expense ratio", "I was billed twice this quarter",
    ],
    "tax forms": [
        "I never got my tax form", "where is my 1099-R", "I need a copy of last year's tax statement",
        "the tax withholding on my form is wrong", "send my tax documents by email",
        "the form shows the wrong amount for taxes",
    ],
    "investment options": [
        "which funds can I choose", "move my money into the bond fund", "rebalance my portfolio",
        "what target date fund fits me", "I want less risk in my investments", "change my fund allocation",
    ],
}

OPENERS = ["hi, thanks for taking my call.", "good morning.", "hello, yes.", "okay so,", "hi there,", "um, yes,"]
CLOSERS = ["can you help me with that?", "what are my options?", "thank you.", "I appreciate it.",
           "how long will it take?", "is that possible today?"]
HYPOTHESES = ["This call is about {}.", "The customer is asking about {}.", "The topic of this call is {}."]


def _premise(rng: random.Random, topic: str) -> str:
    phrases = rng.sample(TOPICS[topic], 2)
    return f"{rng.choice(OPENERS)} {phrases[0]}, and {phrases[1]}. {rng.choice(CLOSERS)}"


def make_examples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` NLI pairs, half entailment, half naming a different topic.

    As in real call data, some topics are named far more often in wrong
    hypotheses than others (weights rise with the topic's rank), so the task
    has an easy part that a tiny model learns in seconds and a harder part
    (matching the premise to the topic) that rewards more data and epochs.
    """
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    weights = {t: (i + 1) ** 2 for i, t in enumerate(topics)}
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        premise = _premise(rng, topic)
        entail = i % 2 == 0
        others = [t for t in topics if t != topic]
        named = topic if entail else rng.choices(others, weights=[weights[t] for t in others])[0]
        rows.append({
            "premise": premise,
            "hypothesis": rng.choice(HYPOTHESES).format(named),
            "label": LABELS[0] if entail else LABELS[1],
            "topic": topic,
        })
    rng.shuffle(rows)
    return rows


def make_calls(n: int, seed: int, prefix: str) -> list[dict[str, str]]:
    """``n`` labelled calls as a team keeps them: ``call_id``, ``transcript``, ``topic``; about one call in four
    is about two topics, written in one cell as ``"fees; rollover"``."""
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    rows = []
    for i in range(n):
        about = rng.sample(topics, 2 if rng.random() < 0.25 else 1)
        said = [phrase for topic in about for phrase in rng.sample(TOPICS[topic], 2 if len(about) == 1 else 1)]
        transcript = f"{rng.choice(OPENERS)} {', and '.join(said)}. {rng.choice(CLOSERS)}"
        rows.append({"call_id": f"{prefix}-{i + 1:04d}", "transcript": transcript, "topic": "; ".join(about)})
    return rows


def write_dataset(data_dir: Path) -> list[Path]:
    """Write the demo dataset versions and the validation file into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    full = make_examples(1600, seed=1)
    versions = {
        "full_dataset.csv": full,
        "train_sample.csv": full[:320],
        "test.csv": make_examples(400, seed=2),
    }
    paths = []
    for name, rows in versions.items():
        path = data_dir / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["premise", "hypothesis", "label", "topic"])
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    for name, rows in {"calls_train.csv": make_calls(400, seed=3, prefix="T"),
                       "calls_test.csv": make_calls(100, seed=4, prefix="V")}.items():
        path = data_dir / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths


def _corpus() -> list[str]:
    texts = []
    for topic, phrases in TOPICS.items():
        texts.extend(phrases)
        texts.extend(h.format(topic) for h in HYPOTHESES)
    texts.extend(OPENERS + CLOSERS)
    return texts * 4


# DeBERTa-v3's relative attention, as microsoft/deberta-v3-* config.json has it.
DEBERTA_V3 = {"relative_attention": True, "position_buckets": 256, "share_att_key": True,
              "pos_att_type": "p2c|c2p", "norm_rel_ebd": "layer_norm", "max_relative_positions": -1,
              "position_biased_input": False, "type_vocab_size": 0, "layer_norm_eps": 1e-7}
# v3's spm.model holds [PAD] [CLS] [SEP] [UNK] as ids 0-3; [MASK] is added after the SentencePiece vocabulary.
SPM_SPECIALS = {"pad_id": 0, "pad_piece": "[PAD]", "bos_id": 1, "bos_piece": "[CLS]", "eos_id": 2,
                "eos_piece": "[SEP]", "unk_id": 3, "unk_piece": "[UNK]"}


def sentencepiece_model(vocab_size: int = 256) -> bytes:
    """A unigram SentencePiece model (the bytes of an ``spm.model``) trained on the demo corpus.

    The words are fed on their own as well as in their sentences: with this small corpus that lets the
    trainer keep whole words (about 1.4 pieces per word on the demo data, the demo BERT's WordPiece 1.25)
    instead of splitting most words into fragments. One thread, so the same bytes every time (for one
    sentencepiece version). ``vocab_size`` is an upper bound: how many pieces this corpus can give depends on the
    sentencepiece version (at most 279 with 0.2.2, 288 with 0.2.3), and a build must not fail over it.
    """
    import io

    import sentencepiece as spm

    texts = _corpus()
    texts += [word for text in texts for word in text.split()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", num_threads=1, minloglevel=2, hard_vocab_limit=False,
                                   **SPM_SPECIALS)
    return model.getvalue()


def _save_v3_tokenizer(path: Path, vocab_size: int, max_positions: int) -> int:
    """Write the tokenizer as microsoft/deberta-v3-* ships it; returns its size ([MASK] included)."""
    import json

    import sentencepiece as spm

    path.mkdir(parents=True, exist_ok=True)
    model = sentencepiece_model(vocab_size)
    (path / "spm.model").write_bytes(model)
    config = {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm",
              "bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
              "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]", "model_max_length": max_positions}
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return spm.SentencePieceProcessor(model_proto=model).get_piece_size() + 1


def _wordpiece_tokenizer(vocab_size: int, max_positions: int):
    """A BERT-style WordPiece tokenizer trained on the demo corpus."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)


def build_model(path: Path, kind: str = "bert", *, hidden: int = 64, layers: int = 2, heads: int = 2,
                vocab_size: int | None = None, model_vocab_size: int | None = None, max_positions: int = 128) -> Path:
    """Build and save a randomly initialised sequence-pair classifier at ``path``.

    ``kind`` "bert" gets a WordPiece tokenizer (``vocab_size`` 600); "deberta-v2" is laid out like
    DeBERTa-v3 (see the module docstring) with a SentencePiece vocabulary of at most ``vocab_size`` 256
    pieces. Tiny by default; the benchmarks pass real shapes (e.g. DeBERTa-v3-base: hidden 768,
    12 layers, 12 heads, ``model_vocab_size`` 128100, 512 positions).
    """
    from transformers import AutoModelForSequenceClassification, BertConfig, DebertaV2Config

    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    shape = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=hidden * 4, max_position_embeddings=max_positions, **labels)
    if kind == "bert":
        tokenizer = _wordpiece_tokenizer(vocab_size or 600, max_positions)
        config = BertConfig(vocab_size=model_vocab_size or len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            **shape)
    elif kind == "deberta-v2":
        tokenizer = None
        size = _save_v3_tokenizer(path, vocab_size or 256, max_positions)
        v3 = {**DEBERTA_V3, "position_buckets": 256 if max_positions >= 512 else 32}
        config = DebertaV2Config(vocab_size=model_vocab_size or size, pad_token_id=SPM_SPECIALS["pad_id"],
                                 **shape, **v3)
    else:
        raise ValueError(f"unknown demo model kind {kind!r}: use 'bert' or 'deberta-v2'")
    import torch

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def ensure_demo(settings: Settings | None = None) -> dict[str, Path]:
    """Make sure the demo data and both demo models exist; build what is missing."""
    settings = settings or Settings.from_env()
    if not all((settings.data_dir / name).is_file() for name in (*DATASET_FILES, *CALL_FILES)):
        write_dataset(settings.data_dir)
    paths = {}
    for name, kind in zip(DEMO_MODELS, ("bert", "deberta-v2")):
        path = settings.demo_models_dir / name
        if not _complete(path, kind):
            _build_in_place(path, kind)
        paths[name] = path
    return paths


def _complete(path: Path, kind: str) -> bool:
    """A demo model as this version builds it. The DeBERTa built before the v3 layout (a ``tokenizer.json``,
    no ``spm.model``) counts as missing, so the demo walks the real v3 tokenizer path everywhere."""
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        return False
    return kind != "deberta-v2" or (path / "spm.model").is_file()


def _build_in_place(path: Path, kind: str) -> None:
    """Build beside ``path``, then swap it in: a build cut off half-way never looks like a model."""
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build_model(fresh, kind)
        if path.exists():
            shutil.rmtree(path)
        fresh.rename(path)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
