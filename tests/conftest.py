"""Shared fixtures: a temporary MLflow store per test, demo models and a store of finished runs built once per
session.

Everything is real: SQLite MLflow stores in temporary folders, models built
with ``save_pretrained``, training through the HF Trainer. Nothing reaches a
model hub.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from shared_store import SharedStore

    from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# fp32 on every CPU, so tests compare scores with a plain forward pass to 1e-5 (tests/test_infer_bf16.py turns
# bf16 on where the CPU has it)
os.environ["TUNEBOARD_CPU_BF16"] = "off"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# One intra-op thread in every torch process the tests start (this one, training subprocesses, the worker's jobs,
# which keep an OMP_NUM_THREADS they are given): two xdist workers on two cores never oversubscribe them.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_threads] = "1"

DATA = ROOT / "data"


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**overrides: str) -> dict:
    """The environment for a subprocess on its own store: mlflow.set_tracking_uri / set_registry_uri
    write MLFLOW_* variables into os.environ, so an earlier test's store would leak into the child."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    return {**env, "HF_HUB_OFFLINE": "1", **overrides}


def copy_data(folder: Path) -> Path:
    """A private copy of the demo data files (tests may break or add files in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("full_dataset.csv", "train_sample.csv", "test.csv"):
        shutil.copy(DATA / name, folder / name)
    return folder


# Our own code's deprecation warnings fail the test that meets them (pandas' Pandas4Warning, MLflow's and
# transformers' FutureWarnings: "in a future version ... will raise"), so the next upgrade does not break a page.
# Matched by the file the warning points at, not by module name: a page runs as Streamlit's "__main__".
OWN_CODE = (ROOT / "core", ROOT / "pages", ROOT / "app.py")


def own_deprecation(caught: warnings.WarningMessage) -> bool:
    """Whether a warning is a deprecation (or future change) raised from core/, pages/ or app.py."""
    if not issubclass(caught.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        return False
    where = Path(caught.filename).resolve()
    return any(where == own or own in where.parents for own in OWN_CODE)


@pytest.fixture(autouse=True)
def no_deprecations_from_our_code() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:  # the filters in force stay: what our code ignores on
        yield  # purpose (MLflow's stage deprecation, core.registry.model_transition) is not counted
    ours = [w for w in caught if own_deprecation(w)]
    for w in caught:  # the rest go on to pytest's warning summary as before
        if w not in ours:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if ours:
        pytest.fail("our code raised deprecation warnings (mend them before an upgrade makes them errors):\n"
                    + "\n".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in ours),
                    pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains real models, or starts a browser, a server or a worker")
    # The warnings our code silences with a filter set on import: pytest restores its filters around every test
    # (and around loading this file), so a module's own filter would hold only in the test that imported it.
    from core.registry.model_transition import STAGES_DEPRECATION

    config.addinivalue_line("filterwarnings", f"ignore:{STAGES_DEPRECATION}:FutureWarning")


# The slowest modules first (seconds of test time, `make test` on the 2-core machine, Dec 2026), so the two
# xdist workers do not end on one long module while the other waits; the rest keep their order.
HEAVY_FIRST = {"test_cli": 110, "test_seed_workflow": 70, "test_browser": 80, "test_faults": 200, "test_jobs": 160,
               "test_trust_boundary": 55, "test_team_mode": 40, "test_scoring": 40, "test_foreign_runs": 30,
               "test_ray_backend": 30, "test_auth": 25, "test_speed": 25, "test_examples": 25,
               "test_served_long": 35, "test_scoring_long": 35, "test_long_calls": 25, "test_browser_team": 60,
               "test_approval_marked": 40, "test_docs": 20}


def pytest_collection_modifyitems(config, items):
    order = sorted(HEAVY_FIRST, key=lambda m: -HEAVY_FIRST[m])
    rank = {m: i for i, m in enumerate(order)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: a module keeps its order


@pytest.fixture
def allowed_roots(tmp_path_factory, monkeypatch):
    """Roots turned on, allowing pytest's temporary folders (and the repo's data/), where the tests' files live.

    For tests where reads are confined though nothing names the roots: a team's workers (a tracking server
    confines every job, core.paths). Set in os.environ, so workers the test starts (child_env) get them too.
    Everywhere else the tests run as the API and CLI do, with no roots: the user's process reads its files.
    """
    from core.paths import DATA_ROOTS, MODEL_ROOTS

    base = str(tmp_path_factory.getbasetemp())
    monkeypatch.setenv(DATA_ROOTS, os.pathsep.join([base, str(DATA)]))
    monkeypatch.setenv(MODEL_ROOTS, base)


def log_one_dataset_at_once(tracking_uri: str, rounds: int = 6, runs: int = 4) -> list[str]:
    """Runs of one experiment log the same dataset at the same moment (threads held at a barrier), as a grid's
    jobs starting together do, through ``core.tracking.log_input``; returns what failed. Each run must end up
    linked to the one dataset."""
    import threading

    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from core import tracking

    client = MlflowClient(tracking_uri)
    frame = pd.DataFrame({"text": ["a call", "another call"], "label": ["loan", "card"]})
    failed: list[str] = []
    for n in range(rounds):
        experiment = client.create_experiment(f"datasets_at_once_{n}")
        run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]
        barrier = threading.Barrier(runs)

        def log(run_id: str, barrier: threading.Barrier) -> None:
            dataset = mlflow.data.from_pandas(frame, source="train_sample.csv", name="train_sample",
                                              targets="label", digest="0123456789abcdef")
            try:
                with mlflow.start_run(run_id=run_id):  # the active run is the thread's own
                    barrier.wait(timeout=60)
                    tracking.log_input(dataset, "training")
            except Exception as exc:  # noqa: BLE001 - what failed is the result
                barrier.abort()  # the others go on rather than wait for this one
                failed.append(f"{type(exc).__name__}: {str(exc)[:300]}")

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment_id=experiment)  # an earlier test's active experiment refuses these runs
        threads = [threading.Thread(target=log, args=(r, barrier)) for r in run_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not failed:
            linked = [[i.dataset.name for i in client.get_run(r).inputs.dataset_inputs] for r in run_ids]
            assert linked == [["train_sample"]] * runs, linked
    return failed


def use_store(mp: pytest.MonkeyPatch, home: Path):
    """Point the library at a fresh embedded store under ``home``."""
    from core.settings import Settings

    mp.setenv("TUNEBOARD_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mp.setenv("TUNEBOARD_USER", "tester")
    return Settings.from_env()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for one test; yields its Settings."""
    import mlflow

    settings = use_store(monkeypatch, tmp_path / "home")
    yield settings
    while mlflow.active_run():
        mlflow.end_run()


def point_at(mp: pytest.MonkeyPatch, store: SharedStore) -> Settings:
    """Point the library (and the workers it starts) at a shared store, or a copy of it, and its data folder."""
    settings = use_store(mp, store.home)
    mp.setenv("TUNEBOARD_DATA_DIR", str(store.data_dir))
    return settings


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStore]:
    """The session's store of finished runs (tests/shared_store.py), built once for every xdist worker.

    It lives in the folder all workers of this session share; the first worker builds it under a file lock, the
    others wait on the lock and reuse it. Read it only (``point_at``); a test that writes uses ``private_store``.
    At the end, the store must be as it was built: a test that wrote to it fails here.
    """
    from shared_store import ensure, fingerprint

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-store"
    store = ensure(root)
    yield store
    assert fingerprint(store.home) == store.fingerprint, \
        f"a test wrote to the shared store {store.home}: tests that write must use private_store"


@pytest.fixture(scope="module")
def private_store(shared_store: SharedStore, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[SharedStore]:
    """The module's own copy of the shared store (ids unchanged, paths inside the copy), for tests that write."""
    from core.worker import stop_worker

    name = request.module.__name__.rpartition(".")[2]
    store = shared_store.copied_to(tmp_path_factory.mktemp(f"{name}-store") / "home")
    yield store
    stop_worker(store.settings())  # a worker a test started on the copy


@pytest.fixture(scope="session")
def short_calls(tmp_path_factory) -> Path:
    """A folder with ``calls_train.csv`` (400) and ``calls_test.csv`` (100): short labelled calls, as the demo's
    data files were before they became as long as real calls; for tests of the pipeline that need many calls
    and must stay fast (long calls have tests of their own, with few calls)."""
    import csv

    from core.demo import make_calls

    folder = tmp_path_factory.mktemp("short-calls")
    for name, rows in {"calls_train.csv": make_calls(400, seed=3, prefix="T"),
                       "calls_test.csv": make_calls(100, seed=4, prefix="V")}.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
            writer.writeheader()
            writer.writerows(rows)
    return folder


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, Path]:
    """Both demo base models, built once for the whole session."""
    from core.demo import DEMO_MODELS, build_model

    root = tmp_path_factory.mktemp("demo-models")
    return {name: build_model(root / name, kind) for name, kind in zip(DEMO_MODELS, ("bert", "deberta-v2"),
                                                                        strict=True)}


@pytest.fixture(scope="session")
def bert_model(demo_models) -> str:
    return str(demo_models["demo-bert-tiny"])


# -- a model that recognises one word: long calls read whole (tests/test_long_calls.py) ------------------------------
MARKER = "rollover"  # one token of the demo BERT's WordPiece vocabulary
# Words of the demo BERT's vocabulary, one token each, never the marker
MARKER_FILLER = ("okay", "thank", "please", "help", "account", "balance", "check", "date", "email", "good", "hello",
                 "money", "morning", "plan", "today", "want", "need", "form", "fund", "address", "loan", "fees",
                 "change", "payment", "statement", "send", "start", "update", "move", "save", "code", "mail", "call",
                 "bill", "interest", "rate", "target", "risk", "house", "copy", "long", "year", "next", "last", "the",
                 "you", "this", "that", "with", "will", "what", "here", "there")
MARKER_OTHER_TOPICS = ("other topic", "fees", "loan request", "address change")  # hypotheses it never entails
_MARKER_COSTS: dict = {}  # per tokenizer: the tokens of each word marker_turns writes


def marker_turns(seed: int, tokenizer, tokens: int, *, marker: bool = False) -> list[str]:
    """Call turns ("Agent: ..." / "Customer: ...", 3-12 MARKER_FILLER words each, drawn by ``seed``) of at most
    ``tokens`` of the tokenizer's tokens once joined by line breaks; with ``marker``, MARKER is one more word of a
    turn drawn at random."""
    import random

    if tokenizer not in _MARKER_COSTS:
        _MARKER_COSTS[tokenizer] = {w: len(tokenizer.tokenize(w)) for w in (*MARKER_FILLER, MARKER, "Agent:",
                                                                           "Customer:", ".")}
    cost, rng = _MARKER_COSTS[tokenizer], random.Random(seed)
    left = tokens - (cost[MARKER] if marker else 0)
    turns: list[tuple[str, list[str]]] = []
    while True:
        speaker = rng.choice(("Agent", "Customer"))
        spent, words = cost[f"{speaker}:"] + cost["."], []
        for _ in range(rng.randint(3, 12)):
            word = rng.choice(MARKER_FILLER)
            if spent + cost[word] > left:
                break
            words.append(word)
            spent += cost[word]
        if not words:
            break
        turns.append((speaker, words))
        left -= spent
    if marker:
        _, words = rng.choice(turns)
        words.insert(rng.randint(0, len(words)), MARKER)
    return [f"{speaker}: {' '.join(words)}." for speaker, words in turns]


@pytest.fixture(scope="session")
def marker_model(demo_models, tmp_path_factory) -> Path:
    """The demo BERT taught to recognise one word, saved with its tokenizer in a folder of its own (the path).

    Premise: call turns of MARKER_FILLER words (``marker_turns``), up to a whole 128-token window; hypothesis
    "This call is about rollover.": entailment when MARKER is anywhere in the premise, not otherwise; a hypothesis
    about one of MARKER_OTHER_TOPICS (15% of the pairs): never. Plain torch on this process's one thread, seeded:
    800 steps of 16 pairs (AdamW, lr 1e-3, betas 0.9/0.98, 10% warmup then linear decay, dropout off while it
    learns); the longest premise grows from 24 tokens to the whole window over the first half, and the second half
    weighs the pairs it still gets wrong more (focal loss). About 20 s on the 2-core machine. The demo tokenizer's
    vocabulary differs from build to build (so do the embeddings each word gets): where 500 fresh premises show a
    miss, up to 5 rounds of 200 gentler steps follow (5 s each) until 1,500 fresh premises show none. Checked on 500
    other fresh premises before it is saved:
    entailment above 0.9 with the word, below 0.1 without (and for another topic).
    """
    import random

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = demo_models["demo-bert-tiny"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert tokenizer.tokenize(MARKER) == [MARKER], f"{MARKER!r} is not one token of the demo BERT's vocabulary"
    torch.manual_seed(0)
    # no dropout while it learns: dropping the one token that decides, or the attention to it, only slows learning
    model = AutoModelForSequenceClassification.from_pretrained(base, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    entail, not_entail = model.config.label2id["entailment"], model.config.label2id["not_entailment"]
    about = f"This call is about {MARKER}."
    others = [f"This call is about {topic}." for topic in MARKER_OTHER_TOPICS]
    room = 128 - tokenizer.num_special_tokens_to_add(pair=True) - max(len(tokenizer.tokenize(h))
                                                                       for h in [about, *others])
    rng = random.Random(0)

    def pairs(n: int, longest: int) -> tuple[list[str], list[str], list[int]]:
        premises, hypotheses, labels = [], [], []
        tokens = rng.randint(8, longest)  # the premises of a batch about as long: little padding
        for _ in range(n):
            has = rng.random() < 0.5
            turns = marker_turns(rng.getrandbits(32), tokenizer, rng.randint(max(8, tokens - 8), tokens), marker=has)
            premises.append("\n".join(turns))
            if rng.random() < 0.15:  # another topic's hypothesis, for a few pairs: never entailed
                hypotheses.append(rng.choice(others))
                labels.append(not_entail)
            else:
                hypotheses.append(about)
                labels.append(entail if has else not_entail)
        return premises, hypotheses, labels

    def train(steps: int, lr: float, ramp: int) -> None:
        """``steps`` of 16 pairs; the longest premise grows to the window over the first ``ramp`` steps (a jump
        from short premises to long ones undoes what was learnt); from halfway, the focal loss (gamma 2)."""
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
        warmup = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warmup if s < warmup else (steps - s) / (steps - warmup))
        model.train()
        for step in range(steps):
            longest = room if step >= ramp else 24 + (room - 24) * step // ramp
            premises, hypotheses, labels = pairs(16, longest)
            logits = model(**tokenizer(premises, hypotheses, padding=True, return_tensors="pt")).logits
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels), reduction="none")
            if step >= steps // 2:
                loss = loss * 4 * (1 - torch.exp(-loss)) ** 2
            loss.mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        model.eval()

    def check(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` fresh premises, every other one with the word: which have it, the entailment of "about MARKER"
        for each, and of another topic for those with the word."""
        fresh = random.Random(seed)
        has = torch.tensor([i % 2 == 0 for i in range(n)])
        premises = ["\n".join(marker_turns(fresh.getrandbits(32), tokenizer, fresh.randint(8, room), marker=bool(h)))
                    for h in has]

        def entailment(texts: list[str], hypothesis: str) -> torch.Tensor:
            return torch.cat([model(**tokenizer(texts[i:i + 100], [hypothesis] * len(texts[i:i + 100]), padding=True,
                                                return_tensors="pt")).logits.softmax(-1)[:, entail]
                              for i in range(0, len(texts), 100)])

        with torch.inference_mode():
            return (has, entailment(premises, about),
                    entailment([p for p, h in zip(premises, has, strict=True) if h], others[0]))

    train(800, 1e-3, 400)
    for _ in range(5):  # a miss in 1 premise of 250 once passed a check of 500 and failed the final one: check 1,500
        has, scores, other = check(2, 1500)
        if scores[has].min() > 0.9 and scores[~has].max() < 0.1 and other.max() < 0.1:
            break
        train(200, 2e-4, 0)
    has, scores, other = check(1, 500)
    said, unsaid = scores[has], scores[~has]
    assert said.min() > 0.9 and unsaid.max() < 0.1 and other.max() < 0.1, \
        (f"the marker model did not learn its word: {said.min():.3f} at least with it, {unsaid.max():.3f} at most "
         f"without, {other.max():.3f} at most for {others[0]!r}")
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.1  # as the demo BERT has them
    path = tmp_path_factory.mktemp("marker-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# -- team mode: a real `mlflow server` on the machine's PostgreSQL ---------------------------------------------------
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


class TeamServer:
    """A real ``mlflow server`` on a PostgreSQL database of its own on 127.0.0.1:5432, serving artifacts.

    The database is created here and dropped by ``close``. ``kill`` (kill -9 of the server and its workers) and
    ``start`` again reuse the same port and database. Unpacks as ``url, folder``.
    """

    def __init__(self, folder: Path, workers: int = 2):
        import uuid

        self.folder, self.workers = folder, workers
        self.db = f"tuneboard_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        pg_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {self.db}")

    def __iter__(self):
        return iter((self.url, self.folder))

    def start(self) -> None:
        from core.team import start_server

        self.proc = start_server(f"postgresql://postgres@127.0.0.1:5432/{self.db}", self.folder / "served-artifacts",
                                 port=self.port, log=self.folder / "server.log", workers=self.workers)

    def kill(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        pg_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One MLflow server on its own PostgreSQL database per test module (a TeamServer)."""
    team_server = TeamServer(tmp_path_factory.mktemp("team"))
    try:
        team_server.start()
        yield team_server
    finally:
        team_server.close()


# -- team mode with sign-in: Tuneboard's server app on PostgreSQL (tests/app_server.py) -----------------------------
@pytest.fixture(scope="module")
def app_server_approval() -> str | None:
    """``TUNEBOARD_APPROVAL`` in the environment of the module's ``app_server`` (None: unset). A module that needs
    the rule overrides this fixture with its own (``return "required"``)."""
    return None


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory, app_server_approval: str | None) -> Iterator[str]:
    """One server per test module as ``core.cli server --auth-db`` runs it (its address): tracking and users each
    in a PostgreSQL database of their own, admin ``app_server.ADMIN``, no other user yet. Mark the module with an
    ``xdist_group`` so that one worker runs its tests on one server."""
    from app_server import running

    with running(tmp_path_factory.mktemp("app-server"), app_server_approval) as url:
        yield url
