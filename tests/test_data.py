"""core.data: reading training/validation files and aligning labels; errors name the file and line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.data import align_labels, load_examples, read_table
from core.errors import DataError

NLI = {"entailment": 0, "not_entailment": 1}


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def refused(path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert str(path) in str(info.value), "every data error names the file"
    return info.value


# --- formats and columns --------------------------------------------------------------------------------------


def test_csv_with_premise_hypothesis_label(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\n"
                 "I moved house,This call is about address change.,entailment\n"
                 "\"where is my 1099-R, please\",This call is about fees.,not_entailment\n")
    examples = load_examples(path)
    assert len(examples) == 2
    assert examples.text_a == ("I moved house", "where is my 1099-R, please")
    assert examples.text_b == ("This call is about address change.", "This call is about fees.")
    assert examples.labels == ("entailment", "not_entailment")
    assert examples.columns == ("premise", "hypothesis", "label")
    assert examples.path == str(path)
    assert len(examples.digest) == 64


def test_tsv(tmp_path):
    path = write(tmp_path / "train.tsv", "premise\thypothesis\tlabel\n"
                 "hello, there\tgreeting\tentailment\nbye\tgreeting\tnot_entailment\n")
    examples = load_examples(path)
    assert examples.text_a == ("hello, there", "bye")
    assert examples.text_b == ("greeting", "greeting")
    assert examples.labels == ("entailment", "not_entailment")


def test_jsonl(tmp_path):
    path = write(tmp_path / "train.jsonl",
                 '{"premise": "a", "hypothesis": "b", "label": "entailment"}\n'
                 '{"premise": "c", "hypothesis": "d", "label": "not_entailment"}\n')
    examples = load_examples(path)
    assert examples.text_a == ("a", "c")
    assert examples.text_b == ("b", "d")
    assert examples.labels == ("entailment", "not_entailment")


def test_parquet_with_sentence1_sentence2_and_int_labels(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"], "label": [0, 1, 0]}).to_parquet(path)
    examples = load_examples(path)
    assert examples.text_a == ("a", "b", "c")
    assert examples.text_b == ("x", "y", "z")
    assert examples.labels == (0, 1, 0)
    assert examples.columns == ("sentence1", "sentence2", "label")


def test_sentence1_sentence2_csv(tmp_path):
    path = write(tmp_path / "pairs.csv", "sentence1,sentence2,label\na,b,yes\nc,d,no\n")
    examples = load_examples(path)
    assert examples.columns == ("sentence1", "sentence2", "label")
    assert examples.text_b == ("b", "d")


def test_single_text_column_with_extra_columns_ignored_and_int_labels(tmp_path):
    path = write(tmp_path / "texts.csv", "id,text,label,agent\n1,I moved,0,ann\n2,fees again,1,bob\n")
    examples = load_examples(path)
    assert examples.text_a == ("I moved", "fees again")
    assert examples.text_b is None
    assert examples.labels == (0, 1)
    assert all(isinstance(x, int) for x in examples.labels)
    assert examples.columns == ("text", None, "label")


def test_read_table_returns_a_dataframe(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\na,x\nb,y\n")
    frame = read_table(path)
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 2


# --- refusals ---------------------------------------------------------------------------------------------------


def test_missing_file_lists_the_files_in_its_folder(tmp_path):
    write(tmp_path / "full_dataset.csv", "text,label\na,x\n")
    write(tmp_path / "test.csv", "text,label\na,x\n")
    error = refused(tmp_path / "ful_dataset.csv")
    message = str(error)
    assert "does not exist" in message
    assert "full_dataset.csv" in message and "test.csv" in message
    assert str(tmp_path) in message


def test_unsupported_suffix_lists_the_supported_ones(tmp_path):
    message = str(refused(write(tmp_path / "train.docx", "text,label\na,x\n")))
    assert "unsupported file type '.docx'" in message
    assert ".csv" in message and ".parquet" in message and ".xlsx" in message


@pytest.mark.parametrize("content", ["", "   \n\n \t\n"], ids=["zero-bytes", "whitespace-only"])
def test_empty_file_is_refused(tmp_path, content):
    message = str(refused(write(tmp_path / "train.csv", content)))
    assert "the file is empty" in message
    assert "Add a header row and at least one example" in message


def test_header_only_csv_says_there_are_no_rows(tmp_path):
    message = str(refused(write(tmp_path / "train.csv", "premise,hypothesis,label\n")))
    assert "no rows" in message
    assert "Add at least one example" in message


def test_header_only_csv_is_refused_naming_the_file(tmp_path):
    refused(write(tmp_path / "train.csv", "premise,hypothesis,label\n"))


def test_missing_label_column_lists_the_columns(tmp_path):
    message = str(refused(write(tmp_path / "train.csv", "premise,hypothesis,topic\na,b,x\n")))
    assert "needs a 'label' column" in message
    assert "premise, hypothesis, topic" in message
    assert "Say which column is which instead: columns: {text: " in message  # not "rename the columns"


def test_missing_text_columns_lists_the_columns(tmp_path):
    message = str(refused(write(tmp_path / "train.csv", "transcript,label\na,x\n")))
    assert "premise" in message and "hypothesis" in message and "'text'" in message
    assert "the columns are: transcript, label" in message
    assert "Say which column is which instead: columns: {text: " in message


def test_empty_text_cell_names_the_line_counting_the_header_as_line_1(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\na,b,entailment\nc,d,entailment\n"
                                         "e,,not_entailment\n")
    error = refused(path)
    assert error.row == "line 4"
    message = str(error)
    assert message.startswith(f"{path}, line 4:")
    assert "the text in column 'hypothesis' is empty" in message
    assert "Fill it in or remove the row" in message


def test_empty_label_names_the_line(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\na,b,entailment\nc,d,\n")
    message = str(refused(path))
    assert message.startswith(f"{path}, line 3:")
    assert "the label in column 'label' is empty" in message


def test_empty_text_in_jsonl_names_the_line(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": "x"}\n{"text": " ", "label": "y"}\n')
    assert str(refused(path)).startswith(f"{path}, line 2:")


def test_line_number_is_right_after_a_blank_line(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\na,b,entailment\n\nc,,not_entailment\n")
    assert str(refused(path)).startswith(f"{path}, line 4:")


def test_text_that_reads_na_is_kept(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\nNA,b,entailment\nc,d,None\n")
    examples = load_examples(path)
    assert examples.text_a[0] == "NA"
    assert examples.labels[1] == "None"


def test_undecodable_bytes_name_the_line_and_say_to_save_as_utf8(tmp_path):
    path = write(tmp_path / "train.csv", b"premise,hypothesis,label\na,b,entailment\nca\xff\xfef\xe9,d,entailment\n")
    error = refused(path)
    assert error.row == "line 3"
    message = str(error)
    assert message.startswith(f"{path}, line 3:")
    assert "not valid UTF-8" in message
    assert "Save the file as UTF-8" in message


def test_ragged_row_names_the_line(tmp_path):
    path = write(tmp_path / "train.csv", "premise,hypothesis,label\na,b,entailment\n"
                                         "I moved, so update my address,b,entailment\n")
    message = str(refused(path))
    assert message.startswith(f"{path}, line 3:")
    assert "4 fields but the header has 3" in message
    assert "unquoted comma" in message


def test_folder_named_like_a_data_file_is_refused(tmp_path):
    folder = tmp_path / "train.csv"
    folder.mkdir()
    message = str(refused(folder))
    assert "is a folder, not a data file" in message


def test_plain_folder_is_refused_saying_it_is_a_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    message = str(refused(folder))
    assert "is a folder" in message
    assert "unsupported file type" not in message


# --- align_labels -----------------------------------------------------------------------------------------------


def examples(tmp_path: Path, name: str, labels: list) -> object:
    rows = "".join(f"text {i},{label}\n" for i, label in enumerate(labels))
    return load_examples(write(tmp_path / name, "text,label\n" + rows))


def test_label_names_matching_the_model_keep_its_head(tmp_path):
    train = examples(tmp_path, "train.csv", ["not_entailment", "entailment", "entailment"])
    validation = examples(tmp_path, "test.csv", ["entailment", "not_entailment"])
    mapping = align_labels(train, validation, NLI, 2)
    assert mapping.keeps_head is True
    assert dict(mapping.label2id) == NLI
    assert mapping.num_labels == 2
    assert mapping.id2label == {0: "entailment", 1: "not_entailment"}
    assert mapping.encode(validation.labels) == [0, 1]


def test_model_order_is_kept_even_when_not_sorted(tmp_path):
    train = examples(tmp_path, "train.csv", ["entailment", "not_entailment"])
    mapping = align_labels(train, train, {"not_entailment": 0, "entailment": 1}, 2)
    assert mapping.keeps_head is True
    assert dict(mapping.label2id) == {"entailment": 1, "not_entailment": 0}
    assert mapping.encode(train.labels) == [1, 0]


def test_label_names_match_the_model_case_insensitively(tmp_path):
    train = examples(tmp_path, "train.csv", ["Entailment", "NOT_ENTAILMENT"])
    validation = examples(tmp_path, "test.csv", ["NOT_ENTAILMENT", "Entailment"])
    mapping = align_labels(train, validation, NLI, 2)
    assert mapping.keeps_head is True
    assert {k.lower(): v for k, v in mapping.label2id.items()} == NLI
    assert mapping.encode(validation.labels) == [1, 0]


def test_one_label_in_two_cases_is_still_one_class(tmp_path):
    train = examples(tmp_path, "train.csv", ["Entailment", "entailment", "not_entailment"])
    mapping = align_labels(train, train, NLI, 2)
    assert mapping.num_labels == 2


def test_unmatched_names_get_sorted_new_ids_and_a_new_head(tmp_path):
    train = examples(tmp_path, "train.csv", ["withdrawal", "fees", "rollover", "fees"])
    validation = examples(tmp_path, "test.csv", ["rollover"])
    mapping = align_labels(train, validation, NLI, 2)
    assert mapping.keeps_head is False
    assert dict(mapping.label2id) == {"fees": 0, "rollover": 1, "withdrawal": 2}
    assert mapping.encode(train.labels) == [2, 0, 1, 0]


def test_hf_placeholder_names_are_not_treated_as_matching(tmp_path):
    train = examples(tmp_path, "train.csv", ["LABEL_1", "LABEL_0"])
    mapping = align_labels(train, train, {"LABEL_0": 1, "LABEL_1": 0}, 2)
    assert mapping.keeps_head is False
    assert dict(mapping.label2id) == {"LABEL_0": 0, "LABEL_1": 1}


def test_int_labels_use_their_own_values_as_ids(tmp_path):
    train = examples(tmp_path, "train.csv", [1, 0, 1])
    mapping = align_labels(train, train, {"LABEL_0": 0, "LABEL_1": 1}, 2)
    assert dict(mapping.label2id) == {"0": 0, "1": 1}
    assert mapping.keeps_head is True
    assert mapping.encode(train.labels) == [1, 0, 1]


def test_single_class_training_set_is_refused_naming_the_training_file(tmp_path):
    train = examples(tmp_path, "train.csv", ["entailment", "entailment"])
    validation = examples(tmp_path, "test.csv", ["entailment", "not_entailment"])
    with pytest.raises(DataError) as info:
        align_labels(train, validation, NLI, 2)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "train.csv"))
    assert "'entailment'" in message and "at least two" in message
    assert "Add examples of the other classes" in message


def test_validation_label_unseen_in_training_names_file_line_and_training_labels(tmp_path):
    train = examples(tmp_path, "train.csv", ["fees", "rollover", "fees"])
    validation = examples(tmp_path, "test.csv", ["fees", "rollover", "withdrawal"])
    with pytest.raises(DataError) as info:
        align_labels(train, validation, None, 2)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'test.csv'}, line 4:")
    assert "'withdrawal'" in message
    assert str(tmp_path / "train.csv") in message
    assert "fees, rollover" in message
    assert "Use the same label names in both files" in message
