"""core.grid: GridSpec validation (errors name the key), expansion into runs, and file round trips."""

from __future__ import annotations

import json
import math

import pytest

from core.errors import GridError
from core.grid import GridSpec, RunSpec

SEED_USER = "santhosh.kumar3@voya.com"
SEED_SETS = [
    {"n_epochs": 5, "learning_rate": 2e-5, "weight_decay": 0.01, "train_batch_size": 16, "eval_batch_size": 16},
    {"n_epochs": 8, "learning_rate": 3e-5, "weight_decay": 0.02, "train_batch_size": 24, "eval_batch_size": 24},
]
BASE_MODEL = "/models/MoritzLaurer/deberta-v3-base-zeroshot-v2"
LARGE_MODEL = "/models/MoritzLaurer/deberta-v3-large-zeroshot-v2"
EXPERIMENT = f"/Users/{SEED_USER}/Mass_ConsumerTopic_FineTune_DeBERTa_v3_CallTranscript_20241205"


def seed_args(**overrides) -> dict:
    """The seed's ExperimentManager arguments, paths swapped for placeholders."""
    args = {
        "base_name": "Mass_ConsumerTopic_FineTune_DeBERTa_v3",
        "data_src": "CallTranscript",
        "dataset_versions": ["full_dataset.csv", "train_sample.csv"],
        "hyperparameters": [dict(s) for s in SEED_SETS],
        "base_model_versions": [BASE_MODEL, LARGE_MODEL],
        "output_dir": "/tmp/trained_models",
        "train_file": "/data/{data_version}",
        "validation_file": "/data/test.csv",
        "evaluate_pretrained_model": True,
        "user_id": SEED_USER,
        "run_date": "20241205",
    }
    args.update(overrides)
    return args


def with_second_set(**params) -> list[dict]:
    """A valid first set plus ``params`` as hyperparameters[1]."""
    return [dict(SEED_SETS[0]), params]


def refused(**overrides) -> str:
    with pytest.raises(GridError) as info:
        GridSpec(**seed_args(**overrides))
    return str(info.value)


# --- the seed's example ----------------------------------------------------------------------------------------


def test_seed_example_experiment_name():
    spec = GridSpec(**seed_args())
    assert spec.experiment_name == EXPERIMENT
    assert spec.run_count == 10


def test_seed_example_expands_baselines_first_then_model_dataset_set_order():
    runs = GridSpec(**seed_args()).expand(grid_id="g1")
    assert len(runs) == 10
    assert [r.kind for r in runs] == ["baseline"] * 2 + ["fine_tune"] * 8
    assert [r.base_model for r in runs[:2]] == [BASE_MODEL, LARGE_MODEL]
    assert [r.run_name for r in runs[2:]] == [
        "deberta-v3-base-zeroshot-v2_full_dataset_param_set1",
        "deberta-v3-base-zeroshot-v2_full_dataset_param_set2",
        "deberta-v3-base-zeroshot-v2_train_sample_param_set1",
        "deberta-v3-base-zeroshot-v2_train_sample_param_set2",
        "deberta-v3-large-zeroshot-v2_full_dataset_param_set1",
        "deberta-v3-large-zeroshot-v2_full_dataset_param_set2",
        "deberta-v3-large-zeroshot-v2_train_sample_param_set1",
        "deberta-v3-large-zeroshot-v2_train_sample_param_set2",
    ]
    assert [r.param_set for r in runs[2:]] == [1, 2] * 4
    assert all(r.experiment_name == EXPERIMENT for r in runs)
    assert all(r.grid_id == "g1" for r in runs)
    assert all(r.validation_path == "/data/test.csv" for r in runs)
    assert all(r.train_path is None and r.dataset_version is None for r in runs[:2])
    # every fine-tune writes to its own folder
    assert len({r.output_dir for r in runs[2:]}) == 8
    assert runs[2].output_dir.endswith("deberta-v3-base-zeroshot-v2_full_dataset_param_set1")


def test_seed_keys_become_training_arguments_names():
    runs = GridSpec(**seed_args()).expand()
    first, second = runs[2].hyperparameters, runs[3].hyperparameters
    for key in ("n_epochs", "train_batch_size", "eval_batch_size"):
        assert key not in first
    assert first["num_train_epochs"] == 5
    assert first["per_device_train_batch_size"] == 16
    assert first["per_device_eval_batch_size"] == 16
    assert first["learning_rate"] == 2e-5
    assert first["weight_decay"] == 0.01
    assert second["num_train_epochs"] == 8
    assert second["per_device_train_batch_size"] == 24
    assert second["per_device_eval_batch_size"] == 24
    assert second["learning_rate"] == 3e-5
    assert second["weight_decay"] == 0.02


def test_train_paths_substitute_the_dataset_version():
    runs = [r for r in GridSpec(**seed_args()).expand() if r.kind == "fine_tune"]
    assert [r.train_path for r in runs] == ["/data/full_dataset.csv"] * 2 + ["/data/train_sample.csv"] * 2 + \
        ["/data/full_dataset.csv"] * 2 + ["/data/train_sample.csv"] * 2
    assert [r.dataset_version for r in runs[:4]] == ["full_dataset.csv"] * 2 + ["train_sample.csv"] * 2
    assert runs[0].dataset_name == "full_dataset"
    assert runs[0].base_model_name == "deberta-v3-base-zeroshot-v2"


def test_without_baselines_only_fine_tunes():
    spec = GridSpec(**seed_args(evaluate_pretrained_model=False))
    runs = spec.expand()
    assert spec.run_count == 8
    assert [r.kind for r in runs] == ["fine_tune"] * 8


def test_single_dataset_version_needs_no_placeholder():
    spec = GridSpec(**seed_args(dataset_versions=["full_dataset.csv"], train_file="/data/train.csv"))
    assert {r.train_path for r in spec.expand() if r.kind == "fine_tune"} == {"/data/train.csv"}


def test_any_training_arguments_field_by_its_own_name_is_accepted():
    spec = GridSpec(**seed_args(hyperparameters=with_second_set(seed=3, lr_scheduler_type="cosine")))
    params = spec.hyperparameters[1]
    assert params["seed"] == 3
    assert params["lr_scheduler_type"] == "cosine"


# --- refusals: every message names the key -------------------------------------------------------------------


def test_unknown_key_is_refused_naming_it_and_the_known_keys():
    message = refused(hyperparameters=with_second_set(n_epoch=3))
    assert message.startswith("hyperparameters[1].n_epoch:")
    assert "unknown hyperparameter" in message
    assert "n_epochs" in message and "TrainingArguments" in message


def test_warmup_ratio_which_transformers_5_removed_is_refused_with_what_to_write_instead():
    message = refused(hyperparameters=with_second_set(warmup_ratio=0.1))
    assert message.startswith("hyperparameters[1].warmup_ratio: transformers 5 has no warmup_ratio: give "
                              "warmup_steps the fraction instead (warmup_steps: 0.1")
    assert "warmup_ratio" not in refused(hyperparameters=with_second_set(n_epoch=3))  # not offered as a known key
    spec = GridSpec(**seed_args(hyperparameters=with_second_set(warmup_steps=0.1)))
    assert spec.hyperparameters[1]["warmup_steps"] == 0.1  # and TrainingArguments takes it (the grid's own check)


@pytest.mark.parametrize("key, value, expected", [
    ("learning_rate", "2e-5x", "expected float, got str"),  # "2e-5" is taken (tests/test_first_contact.py)
    ("train_batch_size", 16.0, "expected int, got float"),
    ("n_epochs", True, "got bool"),
])
def test_wrong_type_is_refused_naming_the_key(key, value, expected):
    message = refused(hyperparameters=with_second_set(**{key: value}))
    assert message.startswith(f"hyperparameters[1].{key}:")
    assert "wrong type" in message
    assert expected in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_learning_rate_is_refused(value):
    message = refused(hyperparameters=with_second_set(learning_rate=value))
    assert message.startswith("hyperparameters[1].learning_rate:")
    assert "finite number" in message


@pytest.mark.parametrize("key, value, bound", [
    ("n_epochs", 0, "> 0"),
    ("n_epochs", -2, "> 0"),
    ("weight_decay", -0.01, ">= 0"),
    ("train_batch_size", 0, ">= 1"),
    ("eval_batch_size", 0, ">= 1"),
])
def test_impossible_values_are_refused_with_the_allowed_range(key, value, bound):
    message = refused(hyperparameters=with_second_set(**{key: value}))
    assert message.startswith(f"hyperparameters[1].{key}:")
    assert f"value {value!r} is impossible" in message
    assert bound in message


def test_reserved_key_is_refused_and_told_to_remove_it():
    message = refused(hyperparameters=with_second_set(output_dir="/elsewhere"))
    assert message.startswith("hyperparameters[1].output_dir:")
    assert "set by the pipeline" in message and "remove it" in message


def test_same_key_under_seed_and_own_name_is_refused():
    message = refused(hyperparameters=with_second_set(n_epochs=2, num_train_epochs=2))
    assert "hyperparameters[1]." in message
    assert "given twice" in message


def test_duplicate_hyperparameter_sets_are_refused_even_under_other_names():
    duplicate = {"num_train_epochs": 5, "learning_rate": 2e-5, "weight_decay": 0.01,
                 "per_device_train_batch_size": 16, "per_device_eval_batch_size": 16}
    message = refused(hyperparameters=[dict(SEED_SETS[0]), duplicate])
    assert message.startswith("hyperparameters[1]:")
    assert "same set as hyperparameters[0]" in message
    assert "remove the duplicate" in message


def test_invalid_enum_value_is_refused_naming_the_set():
    message = refused(hyperparameters=with_second_set(lr_scheduler_type="nonsense"))
    assert message.startswith("hyperparameters[1]:")
    assert "nonsense" in message
    assert "cosine" in message  # the valid choices are listed


@pytest.mark.parametrize("key", ["hyperparameters", "dataset_versions", "base_model_versions"])
def test_empty_lists_are_refused(key):
    message = refused(**{key: []})
    assert message.startswith(f"{key}:")
    assert "must not be empty" in message


@pytest.mark.parametrize("key, value", [
    ("hyperparameters", {"n_epochs": 3}),
    ("dataset_versions", "full_dataset.csv"),
    ("base_model_versions", BASE_MODEL),
])
def test_non_lists_are_refused(key, value):
    message = refused(**{key: value})
    assert message.startswith(f"{key}:")
    assert "must be a list" in message


def test_hyperparameter_set_that_is_not_a_mapping_is_refused():
    message = refused(hyperparameters=[dict(SEED_SETS[0]), ["n_epochs", 3]])
    assert message.startswith("hyperparameters[1]:")
    assert "mapping" in message


def test_missing_placeholder_with_two_dataset_versions_is_refused():
    message = refused(train_file="/data/train.csv")
    assert message.startswith("train_file:")
    assert "{data_version}" in message


def test_grid_over_max_runs_is_refused_with_the_count():
    message = refused(max_runs=9)
    assert "10 runs" in message and "limit of 9" in message
    assert "fewer models, datasets or hyperparameter sets" in message
    assert GridSpec(**seed_args(max_runs=10)).run_count == 10


def test_two_models_with_the_same_folder_name_are_refused():
    message = refused(base_model_versions=["/models/a/deberta-v3-base", "/models/b/deberta-v3-base"])
    assert message.startswith("base_model_versions:")
    assert "same folder name" in message


def test_same_dataset_version_twice_is_refused():
    message = refused(dataset_versions=["full_dataset.csv", "full_dataset.csv"])
    assert message.startswith("dataset_versions:")
    assert "'full_dataset.csv' more than once" in message


@pytest.mark.parametrize("run_date", ["2024-12-05", "241205", "Dec 5 2024"])
def test_badly_formatted_run_date_is_refused(run_date):
    message = refused(run_date=run_date)
    assert message.startswith("run_date:")
    assert "YYYYMMDD" in message


def test_impossible_calendar_run_date_is_refused():
    message = refused(run_date="20241305")
    assert message.startswith("run_date:")


def test_slash_in_base_name_is_refused():
    message = refused(base_name="team/project")
    assert message.startswith("base_name:")
    assert "'/'" in message


# --- files and JSON --------------------------------------------------------------------------------------------


def test_to_yaml_then_from_file_gives_an_equal_spec(tmp_path):
    spec = GridSpec(**seed_args())
    path = tmp_path / "grid.yaml"
    path.write_text(spec.to_yaml(), encoding="utf-8")
    again = GridSpec.from_file(path)
    assert again == spec
    assert [r.to_dict() for r in again.expand()] == [r.to_dict() for r in spec.expand()]


def test_from_file_reads_json(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(seed_args()), encoding="utf-8")
    assert GridSpec.from_file(path) == GridSpec(**seed_args())


def test_from_dict_accepts_the_seeds_misspelling():
    args = seed_args()
    del args["evaluate_pretrained_model"]
    args["evalute_pretrained_model"] = False
    spec = GridSpec.from_dict(args)
    assert spec.evaluate_pretrained_model is False
    assert spec.run_count == 8


def test_from_dict_refuses_both_spellings():
    args = seed_args(evalute_pretrained_model=True)
    with pytest.raises(GridError, match="not both") as info:
        GridSpec.from_dict(args)
    assert "evaluate_pretrained_model" in str(info.value)


def test_from_file_on_a_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "grid.yaml"
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_from_file_on_bad_yaml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("base_name: demo\nhyperparameters: [1,\n", encoding="utf-8")
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "could not be read" in message
    assert "line 3" in message  # YAML reports where parsing stopped


def test_from_file_with_an_unknown_argument_names_the_file_and_the_argument(tmp_path):
    args = seed_args(learning_rate=2e-5)  # a hyperparameter given at the top level
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(args), encoding="utf-8")
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: learning_rate:")
    assert "unknown grid argument" in message
    assert "hyperparameters" in message  # the valid arguments are listed


def test_from_file_with_a_missing_required_argument_names_it(tmp_path):
    args = seed_args()
    del args["train_file"]
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(args), encoding="utf-8")
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    assert str(info.value) == f"{path}: train_file: is required."


def test_from_file_with_a_bad_value_names_the_file_and_the_key(tmp_path):
    args = seed_args(hyperparameters=with_second_set(n_epochs=0))
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(args), encoding="utf-8")
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    assert str(info.value).startswith(f"{path}: hyperparameters[1].n_epochs:")


def test_from_file_holding_a_list_is_refused(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("- base_name: demo\n", encoding="utf-8")
    with pytest.raises(GridError) as info:
        GridSpec.from_file(path)
    assert str(path) in str(info.value)
    assert "mapping" in str(info.value)


def test_run_spec_json_round_trip():
    runs = GridSpec(**seed_args()).expand(grid_id="grid-7")
    for run in (runs[0], runs[5]):
        text = run.to_json()
        assert json.loads(text)["run_name"] == run.run_name
        again = RunSpec.from_json(text)
        assert again == run
        assert again.to_json() == text


def test_a_baseline_reads_its_calls_as_the_fine_tunes_do(tmp_path):
    """Windows of 256 tokens for the sets: the baseline reads windows of 256 too, or its gain compares readings."""
    from core.grid import DEFAULTS, GridSpec

    def grid(*sets):
        return GridSpec(base_name="B", data_src="S", dataset_versions=("train.csv",), hyperparameters=sets,
                        base_model_versions=("m",), output_dir=str(tmp_path), train_file="{data_version}",
                        validation_file="v.csv", user_id="u", evaluate_pretrained_model=True)

    wide = grid({"n_epochs": 1, "max_length": 256, "window_overlap": 16, "truncate": False}, {"n_epochs": 2})
    baseline = wide.expand()[0]
    assert baseline.kind == "baseline"
    assert {k: baseline.hyperparameters[k] for k in ("max_length", "window_overlap", "truncate")} == \
        {"max_length": 256, "window_overlap": 16, "truncate": False}
    assert baseline.hyperparameters["learning_rate"] == DEFAULTS["learning_rate"]  # nothing else is taken
    assert grid({"n_epochs": 1}).expand()[0].hyperparameters == DEFAULTS
