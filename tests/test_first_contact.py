"""First contact with real models (issue 27): a hub id is tried unless the user switched the hub off, and refused in
plain words where the hub cannot be reached; a grid written as people write YAML (``learning_rate: 5e-5``) is taken.

The tests themselves keep HF_HUB_OFFLINE=1 (conftest); the hub tests unset it for a subprocess, since
huggingface_hub reads it once, at import. No test here reaches the internet: the hub is a closed port on this
machine, or a small server of ours that answers as the hub does for a model it lacks.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time

import pytest
import yaml
from conftest import DATA, ROOT, child_env, free_port

from core.errors import GridError
from core.grid import GridSpec
from core.hyperparameter_sets import OTHER, sets_from_rows

MODEL = "MoritzLaurer/deberta-v3-base-zeroshot-v2.0"
# Load each name as a base model is checked; print the message a user sees, or "loaded".
LOAD = """
import sys
from core.errors import ModelPathError
from core.models.loading import load_config
for name in sys.argv[1:]:
    try:
        load_config(name)
        print("loaded")
    except ModelPathError as exc:
        print(exc)
"""


def hub_env(tmp_path, endpoint: str, **overrides: str) -> dict:
    """A child's environment as on a user's machine: the hub not switched off, an empty Hugging Face cache."""
    env = child_env(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint, **overrides)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if variable not in overrides:
            env.pop(variable, None)
    return env


def load(tmp_path, env: dict, *names: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", LOAD, *names], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done.stdout.strip().splitlines()


class FakeHub(http.server.ThreadingHTTPServer):
    """Answers as the hub does for a repository it lacks (or a gated one), and keeps the paths it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                hub.asked.append(self.path)
                gated = "gated" in self.path
                self.send_response(403 if gated else 404)
                self.send_header("X-Error-Code", "GatedRepo" if gated else "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_hub():
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- 1. a hub id is tried, and a hub out of reach is said in plain words -----------------------------------------


def test_a_hub_out_of_reach_is_refused_at_once_in_plain_words(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nobody listens: refused at once, no DNS, no timeout
    start = time.monotonic()
    [message] = load(tmp_path, hub_env(tmp_path, endpoint), MODEL)
    assert time.monotonic() - start < 30  # transformers alone retries for about 25 s before it gives up
    assert message.startswith(f"{MODEL}: could not reach the model hub at {endpoint} to download this model")
    for words in ("network connection and proxy", "HF_ENDPOINT", "a hub mirror",
                  f"download the model on a machine that can reach the hub (`hf download {MODEL}",
                  "give its path instead"):
        assert words in message, message
    assert "HF_HUB_OFFLINE" not in message  # the hub was not switched off: it was tried


def test_a_hub_id_is_asked_of_the_hub_when_it_is_not_switched_off(tmp_path, fake_hub):
    missing, gated = "someorg/no-such-model", "someorg/gated-model"
    messages = load(tmp_path, hub_env(tmp_path, fake_hub.url), missing, gated)
    assert f"/{missing}/resolve/main/config.json" in fake_hub.asked
    assert messages[0].startswith(f"{missing}: the model hub at {fake_hub.url} has no model of that name, or it is "
                                  "private"), messages
    assert "Check the spelling" in messages[0] and "HF_TOKEN" in messages[0]
    assert messages[1].startswith(f"{gated}: this model is gated on the model hub: accept its terms"), messages
    assert f"{fake_hub.url}/{gated}" in messages[1]


@pytest.mark.parametrize("value", ["1", "ON"])
def test_a_hub_the_user_switched_off_is_never_asked_and_says_so(tmp_path, fake_hub, value):
    [message] = load(tmp_path, hub_env(tmp_path, fake_hub.url, HF_HUB_OFFLINE=value), MODEL)
    assert fake_hub.asked == []
    assert message.startswith(f"{MODEL}: could not load this model: the model hub is switched off here "
                              f"(HF_HUB_OFFLINE={value})"), message
    assert "Download it to a folder and give that folder's path instead" in message


def test_make_leaves_the_hub_to_the_user_but_the_tests_keep_it_off(tmp_path):
    probe = tmp_path / "probe.mk"
    probe.write_text("hub-setting:\n\t@echo \"[$$HF_HUB_OFFLINE]\"\n", encoding="utf-8")
    env = child_env()
    env.pop("HF_HUB_OFFLINE")
    done = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", str(probe), "hub-setting"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
    plan = subprocess.run(["make", "-p", "-n", "-f", "Makefile", "-f", str(probe), "hub-setting"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False).stdout
    assert "test: HF_HUB_OFFLINE := 1" in plan and "check: HF_HUB_OFFLINE := 1" in plan


# --- 2. floats as people write them in YAML ------------------------------------------------------------------------


GRID = """
base_name: FirstContact
data_src: Demo
user_id: first-contact
dataset_versions: [train_sample.csv]
base_model_versions: ["{model}"]
hyperparameters:
  - {{n_epochs: 2, learning_rate: 5e-5, weight_decay: 1e-2, train_batch_size: 8}}
  - {{learning_rate: 2E-5, max_grad_norm: +1e0}}
  - {{learning_rate: .5e-3}}
  - {{learning_rate: 1e-3, n_epochs: 3}}
train_file: "{data}/{{data_version}}"
validation_file: "{data}/test.csv"
output_dir: "{out}"
evaluate_pretrained_model: false
"""


def grid_file(tmp_path, model: str = "/models/deberta-v3-base", **replace: str):
    text = GRID.format(model=model, data=DATA, out=tmp_path / "out")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "grid.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_grid_file_takes_floats_written_without_a_dot(tmp_path):
    spec = GridSpec.from_file(grid_file(tmp_path))
    assert [s["learning_rate"] for s in spec.hyperparameters] == [5e-5, 2e-5, 5e-4, 1e-3]
    assert spec.hyperparameters[0]["weight_decay"] == 0.01 and spec.hyperparameters[1]["max_grad_norm"] == 1.0
    assert spec.hyperparameters[0]["per_device_train_batch_size"] == 8
    assert all(type(s["learning_rate"]) is float for s in spec.hyperparameters)
    assert GridSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec  # written back as floats


@pytest.mark.parametrize(("old", "new", "words"), [
    ("learning_rate: 5e-5", "learning_rate: abc", "learning_rate: has the wrong type: expected float, got str 'abc'"),
    ("train_batch_size: 8", "train_batch_size: 1e1", "train_batch_size: has the wrong type: expected int, got str"),
    ("learning_rate: 5e-5", "learning_rate: true", "learning_rate: has the wrong type: expected float, got bool True"),
    ("learning_rate: 5e-5", "learning_rate: 5e5", "learning_rate: value 500000.0 is impossible"),
    ("learning_rate: 5e-5", "learning_rate: nan", "learning_rate: has the wrong type"),
], ids=["not-a-number", "int-field", "bool", "out-of-range", "nan-text"])
def test_a_grid_file_still_refuses_what_is_not_a_float_naming_the_key(tmp_path, old, new, words):
    path = grid_file(tmp_path, **{old: new})
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    assert str(info.value).startswith(f"{path}: hyperparameters[0].{words}"), str(info.value)


def test_composes_table_and_other_settings_take_numbers_written_as_text(tmp_path):
    rows = [{"n_epochs": 2, "learning_rate": "5e-5", "weight_decay": None, "train_batch_size": 8,
             "eval_batch_size": None, OTHER: '{"max_grad_norm": "1e0", "warmup_steps": 10}'}]
    spec = GridSpec.from_dict({**yaml.safe_load(grid_file(tmp_path).read_text(encoding="utf-8")),
                               "hyperparameters": sets_from_rows(rows)})
    assert spec.hyperparameters == ({"num_train_epochs": 2, "learning_rate": 5e-5, "per_device_train_batch_size": 8,
                                     "max_grad_norm": 1.0, "warmup_steps": 10},)


# --- both, from the command line, as a user meets them --------------------------------------------------------------


def test_the_cli_takes_the_grid_and_tries_the_hub_for_its_model(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = hub_env(tmp_path, endpoint, TUNEBOARD_HOME=str(tmp_path / "home"), TUNEBOARD_USER="first-contact")
    done = subprocess.run([sys.executable, "-m", "core.cli", "submit", str(grid_file(tmp_path, model=MODEL))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "wrong type" not in done.stderr
    assert f"{MODEL}: could not reach the model hub at {endpoint}" in done.stderr, done.stderr[-3000:]
