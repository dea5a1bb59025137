"""Holding out a share of one labelled file (core.holdout): seeded, stratified, disjoint, complete, recorded."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from core.data import load_examples, split_topics
from core.errors import DataError, GridError
from core.holdout import BY_LABEL, BY_RAREST_TOPIC, hold_out, read_record, split_rows, strata

LABELS = ["fees"] * 30 + ["rollover"] * 20 + ["loan request"] * 10 + ["account access"] * 5


def write_calls(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def calls(labels: list[str], prefix: str = "C") -> list[dict]:
    return [{"call_id": f"{prefix}-{i:04d}", "transcript": f"call {i} about {label}", "topic": label}
            for i, label in enumerate(labels)]


def test_the_split_is_seeded_disjoint_and_covers_every_row():
    train, validation = split_rows(LABELS, 0.2, 42)
    assert (train, validation) == split_rows(LABELS, 0.2, 42)  # the same share and seed: the same rows
    assert set(train).isdisjoint(validation) and sorted(train + validation) == list(range(len(LABELS)))
    assert list(train) == sorted(train) and list(validation) == sorted(validation)  # in file order
    assert split_rows(LABELS, 0.2, 7)[1] != validation  # another seed, other rows


def test_each_label_keeps_its_share_and_a_row_on_each_side():
    _, validation = split_rows(LABELS, 0.2, 42)
    held = Counter(LABELS[i] for i in validation)
    assert held == {"fees": 6, "rollover": 4, "loan request": 2, "account access": 1}
    # a share so small that it rounds to nothing still checks every label once; so large, it leaves one to train
    assert Counter(LABELS[i] for i in split_rows(LABELS, 0.01, 1)[1]) == {label: 1 for label in set(LABELS)}
    train, _ = split_rows(LABELS, 0.99, 1)
    assert Counter(LABELS[i] for i in train) == {label: 1 for label in set(LABELS)}


def test_cells_of_several_topics_are_stratified_by_their_rarest_topic():
    labels = ["fees"] * 40 + ["rollover"] * 30 + ["fees; withdrawal"] * 5 + ["withdrawal; rollover"] * 5
    stratum, how = strata(labels)
    assert how == BY_RAREST_TOPIC and stratum[70:] == ["withdrawal"] * 10
    assert strata(LABELS)[1] == BY_LABEL
    train, validation = split_rows(labels, 0.2, 3)
    assert sum("withdrawal" in labels[i] for i in validation) == 2  # the rare topic is checked, not drowned
    assert {t for i in train for t in split_topics(labels[i])} == {"fees", "rollover", "withdrawal"}


def test_rows_with_ids_keep_their_side_when_the_file_is_reordered():
    ids = [f"C-{i:04d}" for i in range(len(LABELS))]
    _, validation = split_rows(LABELS, 0.25, 5, keys=ids)
    order = list(reversed(range(len(LABELS))))
    _, again = split_rows([LABELS[i] for i in order], 0.25, 5, keys=[ids[i] for i in order])
    assert {ids[i] for i in validation} == {ids[order[i]] for i in again}


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.5, "a fifth", True, None])
def test_a_share_outside_zero_and_one_is_refused(share):
    with pytest.raises(GridError) as info:
        split_rows(LABELS, share, 1)
    assert str(info.value).startswith("split.share: the share held out for validation must be a number between 0 "
                                      "and 1")


def test_a_topic_on_one_row_is_refused_naming_the_file_the_topic_and_its_row(tmp_path):
    source = write_calls(tmp_path / "bank_calls.csv", calls([*LABELS, "card fraud", "fees; Lost Card"]))
    with pytest.raises(DataError) as info:
        hold_out(source, 0.2, 42, tmp_path / "uploads")
    message = str(info.value)
    assert message.startswith(f"{source}: column 'topic': 'card fraud' (line 67, call_id C-0065), 'Lost Card' "
                              "(line 68, call_id C-0066) label only one row, too few to hold out a share")
    assert "upload a validation file of your own" in message
    assert not (tmp_path / "uploads").exists()  # nothing written


@pytest.mark.parametrize("content, words", [
    ("", "the file is empty"),
    ("call_id,transcript,topic\n", "has a header but no rows"),
    ("call_id,transcript,topic\nC-1,hello,fees\nC-2,hi,\nC-3,hey,fees\n", "the label in column 'topic' is empty"),
], ids=["empty", "header-only", "blank-label"])
def test_an_empty_file_or_label_is_refused(tmp_path, content, words):
    source = tmp_path / "calls.csv"
    source.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        hold_out(source, 0.2, 42, tmp_path / "uploads", columns={"text": "transcript", "label": "topic"})
    assert str(info.value).startswith(str(source)) and words in str(info.value)


def test_the_parts_are_written_once_read_as_files_and_recorded(tmp_path):
    rows = calls(LABELS)
    rows[0]["call_id"] = "0042"  # an id that is a number written with zeros stays as written
    source = write_calls(tmp_path / "bank_calls.csv", rows)
    split = hold_out(source, 0.2, 42, tmp_path / "uploads")
    assert Path(split.train_file).name == "bank_calls.holdout-s42-p20.train.csv"
    assert Path(split.validation_file).name == "bank_calls.holdout-s42-p20.validation.csv"
    columns = {"text": "transcript", "label": "topic"}
    train, validation = (load_examples(f, columns) for f in (split.train_file, split.validation_file))
    assert len(train) + len(validation) == len(LABELS) and len(validation) == 13
    assert split.id_column == "call_id" and "0042" in split.train_rows + split.validation_rows
    assert set(split.train_rows).isdisjoint(split.validation_rows)
    assert [r.rsplit("call_id ", 1)[1] for r in validation.rows] == list(split.validation_rows)
    assert read_record(split.record) == split  # the record holds every row's side
    summary = split.summary()
    assert summary["source_sha256"] == load_examples(source, columns).digest and summary["validation_rows"] == 13
    assert summary["stratified_by"] == BY_LABEL and len(summary["rows_sha256"]) == 64

    # the same file, share and seed: the parts are kept as they are; a changed file is split again
    stamp = Path(split.train_file).stat().st_mtime_ns
    assert hold_out(source, 0.2, 42, tmp_path / "uploads") == split
    assert Path(split.train_file).stat().st_mtime_ns == stamp
    write_calls(source, calls(LABELS, prefix="D"))
    again = hold_out(source, 0.2, 42, tmp_path / "uploads")
    assert again.source_sha256 != split.source_sha256 and again.validation_rows[0].startswith("D-")


def test_a_grid_on_the_parts_records_the_split_in_every_run(tmp_path):
    from core.grid import GridSpec

    source = write_calls(tmp_path / "bank_calls.csv", calls(LABELS))
    split = hold_out(source, 0.25, 9, tmp_path)
    spec = GridSpec(base_name="Calls", data_src="CallTranscript", user_id="u",
                    dataset_versions=(Path(split.train_file).name,), hyperparameters=({"n_epochs": 1},),
                    base_model_versions=("some/model",), output_dir=str(tmp_path / "out"),
                    train_file=str(tmp_path / "{data_version}"), validation_file=split.validation_file,
                    columns={"text": "transcript", "label": "topic"}, split=split.summary())
    baseline, tune = spec.expand()
    for run in (baseline, tune):
        params = run.params()
        assert params["split.source"] == str(source) and params["split.seed"] == "9"
        assert params["split.share"] == "0.25" and params["split.rows_sha256"] == split.rows_sha256
        assert params["split.record"] == split.record
    assert GridSpec.from_dict(__import__("yaml").safe_load(spec.to_yaml())) == spec  # saved and loaded as YAML
    with pytest.raises(GridError, match=r"^split\.share: "):
        GridSpec.from_dict({**spec.to_dict(), "split": {**split.summary(), "share": 2}})
