"""Compose with a team's own files (issue 27): the first upload replaces the demo's files, a validation file has
an uploader of its own, the mapping is read from the team's file, and one file can have a share held out. Under
AppTest, with a model name the grid only names (nothing is trained here; tests/test_browser_uploads.py trains)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import ROOT, copy_data, use_store
from streamlit.testing.v1 import AppTest

from core.demo import make_calls

MODEL = "some-org/deberta-v3-base-zeroshot"  # 1 model x 2 default sets + its baseline: 3 runs a dataset version


def calls_csv(n: int, seed: int, prefix: str, extra: list[dict] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["call_id", "transcript", "topic"])
    writer.writeheader()
    writer.writerows([*make_calls(n, seed=seed, prefix=prefix), *(extra or [])])
    return out.getvalue().encode()


@pytest.fixture
def page(tmp_path, monkeypatch) -> tuple[AppTest, Path]:
    """The Compose page over a data folder holding the demo's files, as a new user first sees it."""
    use_store(monkeypatch, tmp_path / "home")
    data = copy_data(tmp_path / "data")
    monkeypatch.setenv("TUNEBOARD_DATA_DIR", str(data))
    at = AppTest.from_file(str(ROOT / "pages" / "compose.py"), default_timeout=120)
    at.session_state["c_paths"] = MODEL
    at.run()
    assert not at.exception, at.exception
    return at, data


def shown(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "success", "info", "warning", "error", "caption")
                     for e in at.get(kind))


def upload(at: AppTest, key: str, name: str, content: bytes) -> None:
    at.file_uploader(key=key).set_value((name, content, "text/csv")).run()
    assert not at.exception, at.exception


def test_a_team_uploads_its_train_and_validation_files_and_the_grid_uses_them_alone(page):
    at, _ = page
    assert at.multiselect(key="c_datasets").value == ["full_dataset.csv", "train_sample.csv"]
    assert "**5 runs**" in shown(at)  # the demo's grid: 2 files x 2 sets + the baseline

    upload(at, "c_upload", "bank_calls_train.csv", calls_csv(60, 3, "T"))
    assert at.multiselect(key="c_datasets").value == ["uploads/bank_calls_train.csv"]  # replaced, not added
    assert at.selectbox(key="c_validation").value is None  # the demo's test.csv does not check a team's runs
    assert "it replaces the demo's files: the grid trains on uploads/bank_calls_train.csv alone" in shown(at)
    # the mapping, guessed from the team's file
    assert (at.selectbox(key="c_col_text").value, at.selectbox(key="c_col_label").value) == ("transcript", "topic")
    assert any(e.value.startswith("Not ready to launch: choose how runs are checked")
               for e in at.error)

    upload(at, "c_upload_validation", "bank_calls_val.csv", calls_csv(20, 4, "V"))
    assert at.selectbox(key="c_validation").value == "uploads/bank_calls_val.csv"
    assert at.multiselect(key="c_datasets").value == ["uploads/bank_calls_train.csv"]
    assert "**3 runs**" in shown(at)  # the team's one file x 2 sets + the baseline, no demo file
    assert not at.error, [e.value for e in at.error]

    # once the team's own files are chosen, another upload adds a dataset version
    upload(at, "c_upload", "bank_calls_march.csv", calls_csv(30, 5, "M"))
    assert at.multiselect(key="c_datasets").value == ["uploads/bank_calls_train.csv",
                                                       "uploads/bank_calls_march.csv"]
    assert at.selectbox(key="c_validation").value == "uploads/bank_calls_val.csv" and "**5 runs**" in shown(at)


def test_one_file_with_a_share_held_out_for_validation(page):
    at, data = page
    upload(at, "c_upload", "bank_calls.csv", calls_csv(80, 3, "T"))
    at.radio(key="c_val_mode").set_value("on a share held out of a training file").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    parts = data / "uploads" / "bank_calls.holdout-s42-p20.train.csv", \
        data / "uploads" / "bank_calls.holdout-s42-p20.validation.csv"
    assert all(p.is_file() for p in parts)
    text = shown(at)
    assert "rows of uploads/bank_calls.csv are held out for validation" in text
    assert "stratified by each row's rarest topic" in text and "**3 runs**" in text
    runs = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert f"{Path(MODEL).name}_bank_calls.holdout-s42-p20.train_param_set1" in list(runs["run"])
    stamp = parts[0].stat().st_mtime_ns

    # another seed: other parts; the first seed again: the same parts, not written again
    at.number_input(key="c_holdout_seed").set_value(7).run()
    assert (data / "uploads" / "bank_calls.holdout-s7-p20.validation.csv").is_file()
    at.number_input(key="c_holdout_seed").set_value(42).run()
    assert parts[0].stat().st_mtime_ns == stamp and "**3 runs**" in shown(at)

    # back to a validation file: the choice made before is still there (none: the demo's was replaced)
    at.radio(key="c_val_mode").set_value("on a validation file").run()
    assert at.selectbox(key="c_validation").value is None

    # a grid saved with its split (seed 7) comes back as the same hold-out of the same file
    from core.grid import GridSpec
    from core.holdout import read_record

    split = read_record(data / "uploads" / "bank_calls.holdout-s7-p20.split.yaml")
    stamp = Path(split.train_file).stat().st_mtime_ns
    saved = GridSpec(base_name="Calls", data_src="CallTranscript", user_id="u",
                     dataset_versions=(Path(split.train_file).name,), hyperparameters=({"n_epochs": 1},),
                     base_model_versions=(MODEL,), output_dir=str(data / "out"),
                     train_file=str(data / "uploads" / "{data_version}"), validation_file=split.validation_file,
                     split=split.summary())
    at.file_uploader(key="c_yaml").set_value(("calls.yaml", saved.to_yaml().encode(), "application/x-yaml")).run()
    assert not at.exception, at.exception
    assert at.radio(key="c_val_mode").value == "on a share held out of a training file"
    assert at.multiselect(key="c_datasets").value == ["uploads/bank_calls.csv"]
    assert (at.selectbox(key="c_holdout_src").value, at.number_input(key="c_holdout_seed").value) == \
        ("uploads/bank_calls.csv", 7)
    assert "**2 runs**" in shown(at) and Path(split.train_file).stat().st_mtime_ns == stamp


def test_a_file_that_cannot_be_split_by_topic_says_which_topic(page):
    at, _ = page
    lonely = [{"call_id": "X-1", "transcript": "my card was stolen at the airport", "topic": "card fraud"}]
    upload(at, "c_upload", "bank_calls.csv", calls_csv(60, 3, "T", lonely))
    at.radio(key="c_val_mode").set_value("on a share held out of a training file").run()
    assert not at.exception, at.exception
    message = next(e.value for e in at.error if "card fraud" in e.value)
    assert "bank_calls.csv: column 'topic': 'card fraud' (line 62, call_id X-1) labels only one row" in message
    assert "upload a validation file of your own" in message
    assert not any(b.key == "c_launch" for b in at.button)
