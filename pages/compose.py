"""Compose & launch: base models x dataset versions x hyperparameter sets, checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from core import demo, holdout, paths, pretrained_demo
from core import hyperparameter_sets as hsets
from core import runs as runs_mod
from core.data import FORMATS, Columns, guess_columns, read_frame, usual_columns
from core.data import save_upload as data_save_upload
from core.errors import GridError, TuneboardError
from core.grid import GridSpec
from core.hyperparameter_sets import COLUMNS, OTHER, table_row
from core.models.loading import load_config
from core.naming import experiment_name
from core.progress import duration_text
from core.topic_pairs import DEFAULT_TEMPLATE, has_trained_head, is_nli
from core.training import estimate
from core.training import reading as reading_mod
from core.training.kind import past_grid
from pages.common import (
    client,
    experiments,
    jobs_changed,
    md,
    queue,
    settings,
    show_error,
    sign_in_gate,
    user,
)

sign_in_gate()

DEFAULT_SETS = pd.DataFrame([{**row, OTHER: ""} for row in hsets.DEFAULT_SETS])

s = settings()
data_dir = s.data_dir


def data_files() -> list[str]:
    """Dataset files in the data folder (and its uploads/), relative to it."""
    found = [p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS]
    return sorted(str(p.relative_to(data_dir)) for p in found)


def demo_models() -> dict[str, str]:
    """The demo models built here, and the pretrained encoder where its package is installed (make run)."""
    return {name: str(s.demo_models_dir / name) for name in (*demo.DEMO_MODELS, pretrained_demo.NAME)
            if (s.demo_models_dir / name / "config.json").is_file()}


FROM_FILE, HOLD_OUT = "on a validation file", "on a share held out of a training file"
KEPT_WIDGETS = ("c_validation", "c_holdout_src", "c_holdout_share", "c_holdout_seed")  # shown in one mode only


def init_state() -> None:
    files = data_files()
    demo_datasets = [f for f in ("full_dataset.csv", "train_sample.csv") if f in files]
    demo_validation = "test.csv" if "test.csv" in files else None
    defaults = {"c_base_name": "ConsumerTopic_FineTune", "c_data_src": "CallTranscript", "c_user": user(),
                "c_demo": [m for m in demo_models() if m in demo.DEMO_MODELS],  # the encoder: chosen by hand
                "c_paths": "", "c_baseline": True, "c_priority": 0,
                "c_datasets": demo_datasets, "c_validation": demo_validation,
                "c_demo_data": (tuple(demo_datasets), demo_validation),  # what an upload replaces, untouched
                "c_val_mode": FROM_FILE, "c_holdout_share": 0.2, "c_holdout_seed": 42,
                "c_sets": DEFAULT_SETS.copy(), "c_editor_version": 0, "c_output": str(s.home / "trained_models"),
                "c_pairs_template": DEFAULT_TEMPLATE, "c_pairs_negatives": 2}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    for key in KEPT_WIDGETS:  # a widget not drawn in a run loses its value; set again, it keeps it
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def in_data_dir(path: str) -> str:
    """A file of a loaded grid, as a name inside the data folder (the form only offers files there)."""
    return paths.relative_inside(path, data_dir, "the data folder", hint="Copy it there, or upload it here.")


def apply_grid(data: dict) -> None:
    """Fill the form from a grid's arguments (a YAML file or a past experiment)."""
    spec = GridSpec.from_dict(data)
    demos = {path: name for name, path in demo_models().items()}
    datasets = [in_data_dir(spec.train_path(v)) for v in spec.dataset_versions]
    validation = in_data_dir(spec.validation_file)
    st.session_state.update(
        c_base_name=spec.base_name, c_data_src=spec.data_src, c_user=spec.user_id,
        c_demo=[demos[m] for m in spec.base_model_versions if m in demos],
        c_paths="\n".join(m for m in spec.base_model_versions if m not in demos),
        c_baseline=spec.evaluate_pretrained_model, c_output=spec.output_dir, c_datasets=datasets,
        c_validation=validation, c_sets=pd.DataFrame([table_row(p) for p in spec.hyperparameters]),
        c_editor_version=st.session_state.get("c_editor_version", 0) + 1, c_pairs=bool(spec.topic_pairs))
    st.session_state["c_val_mode"] = FROM_FILE
    if spec.split:  # held out of one file: the same file, share and seed give the same parts again
        source = in_data_dir(spec.split["source"])
        part = f"{holdout.part_stem(source, spec.split['share'], spec.split['seed'])}.train"
        datasets = [source if Path(d).stem == part else d for d in datasets]
        st.session_state.update(c_val_mode=HOLD_OUT, c_datasets=datasets, c_holdout_src=source,
                                c_holdout_share=spec.split["share"], c_holdout_seed=spec.split["seed"])
    if spec.columns:  # the grid's mapping, not a new guess
        st.session_state.update(c_col_file=(datasets or [validation])[0], c_col_text=spec.columns["text"],
                                c_col_label=spec.columns["label"],
                                c_col_pair=spec.columns.get("text_pair") or "(none)")
    if spec.topic_pairs:
        st.session_state.update(c_pairs_template=spec.topic_pairs["template"],
                                c_pairs_negatives=spec.topic_pairs["negatives"])


def load_yaml_file() -> None:
    upload = st.session_state.get("c_yaml")
    if upload is None:
        return
    try:
        apply_grid(yaml.safe_load(upload.getvalue().decode("utf-8")) or {})
        st.session_state["c_loaded"] = f"Loaded {upload.name}."
    except (TuneboardError, yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        st.session_state["c_loaded"] = f"error:{upload.name}: {exc}"


def load_calls_demo() -> None:
    try:
        apply_grid(pretrained_demo.calls_demo_grid(s).to_dict())
        st.session_state["c_loaded"] = ("Filled in the calls demo: all-MiniLM-L6-v2 learns the topics of the 160 long "
                                        "demo calls and is read on the 40 held out, its baseline first (about 10 "
                                        "minutes on 2 CPU cores). Launch it, or change what you like first.")
    except TuneboardError as exc:
        st.session_state["c_loaded"] = f"error:{exc}"


def load_experiment() -> None:
    chosen = st.session_state.get("c_past")
    if not chosen:
        return
    try:
        apply_grid(past_grid(client(), chosen))
        st.session_state["c_loaded"] = "Loaded the grid of that experiment; change what you like and launch."
    except TuneboardError as exc:
        st.session_state["c_loaded"] = f"error:{exc}"


def save_upload(upload) -> str:
    """Check an uploaded file and keep it in data/uploads/ only if it reads cleanly (see core.data.save_upload)."""
    saved = data_save_upload(upload.name, upload.getvalue(), data_dir / "uploads")
    return saved.relative_to(data_dir).as_posix()


def take_upload(key: str, *, validation: bool) -> None:
    """Keep a file just uploaded and put it in the form. A training file replaces the demo's files while the form
    still holds them as it started (and the demo's validation file with them): a team's data is not mixed with
    the demo's; once the team's own files are chosen, another upload adds a dataset version."""
    upload = st.session_state.get(key)
    if upload is None or st.session_state.get(f"{key}_seen") == (upload.name, upload.size):
        return
    try:
        saved = save_upload(upload)
    except TuneboardError as exc:
        st.error(md(exc), icon=":material/error:")
        return
    st.session_state[f"{key}_seen"] = (upload.name, upload.size)
    demo_datasets, demo_validation = st.session_state["c_demo_data"]
    chosen = st.session_state["c_datasets"]
    if validation:
        st.session_state.update(c_validation=saved, c_val_mode=FROM_FILE)
        said = f"every run is checked on it ({md(saved)})"
        if demo_datasets and tuple(chosen) == demo_datasets:
            said += ". Now upload the file to train on: the demo's files are still chosen for training"
    elif demo_datasets and tuple(chosen) == demo_datasets:
        st.session_state["c_datasets"] = [saved]
        said = f"it replaces the demo's files: the grid trains on {md(saved)} alone"
        if st.session_state["c_validation"] == demo_validation and demo_validation:
            st.session_state["c_validation"] = None
            said += (". Choose below how runs are checked: on your validation file (upload it beside), or on a "
                     "share held out of this one")
    else:
        st.session_state["c_datasets"] = list(dict.fromkeys([*chosen, saved]))
        said = f"it was added as {md(saved)}"
    st.success(f"{md(upload.name)} reads cleanly: {said}.")


@st.cache_data(show_spinner="Holding out a share for validation...", max_entries=16)
def split_of(path: str, mtime: float, share: float, seed: int, mapping_json: str) -> holdout.Split | str:
    """``core.holdout.hold_out`` into data/uploads/, or why it cannot be held out; cached until the file changes."""
    import json

    try:
        return holdout.hold_out(path, share, seed, data_dir / "uploads", columns=json.loads(mapping_json))
    except TuneboardError as exc:
        return str(exc)


def choose_holdout(mapping: dict | None) -> holdout.Split | None:
    """Hold out a share of one training file: which file, what share, which seed; the parts, or None."""
    import json

    chosen = st.session_state["c_datasets"]
    if not chosen:
        st.info("Choose the file to train on first: the share is held out of it.")
        return None
    if st.session_state.get("c_holdout_src") not in chosen:
        st.session_state["c_holdout_src"] = chosen[0]
    h1, h2, h3 = st.columns([3, 1, 1])
    name = h1.selectbox("Hold out a share of", options=chosen, key="c_holdout_src")
    share = h2.number_input("Share held out", min_value=0.01, max_value=0.9, step=0.05, format="%.2f",
                            key="c_holdout_share")
    seed = h3.number_input("Seed", min_value=0, step=1, key="c_holdout_seed")
    path = data_dir / name
    split = split_of(str(path), path.stat().st_mtime if path.is_file() else 0.0, float(share), int(seed),
                     json.dumps(mapping))
    if isinstance(split, holdout.Split) and not all(Path(f).is_file() for f in (split.train_file,
                                                                                split.validation_file)):
        split_of.clear()  # its parts were removed since: written again
        split = split_of(str(path), path.stat().st_mtime, float(share), int(seed), json.dumps(mapping))
    if isinstance(split, str):
        st.error(md(split), icon=":material/error:")
        return None
    by = "each row's label" if split.stratified_by == holdout.BY_LABEL else \
        "each row's rarest topic (a cell of several topics counts under the one the file has fewest rows of)"
    parts = ", ".join(md(Path(f).relative_to(data_dir).as_posix()) for f in (split.train_file, split.validation_file))
    st.caption(f"{len(split.validation_rows):,} of {len(split.train_rows) + len(split.validation_rows):,} rows of "
               f"{md(name)} are held out for validation and {len(split.train_rows):,} train, stratified by {by}; "
               f"written as {parts}. The same file, share and seed give the same rows to every run of the grid "
               "and to later grids; each run records the split (split.* params; every row's side in "
               f"{md(Path(split.record).relative_to(data_dir).as_posix())}).")
    return split


ERROR_SLOTS: dict[str, object] = {}


def field_error(prefix: str) -> None:
    """A place next to a field where the grid's error about that field is shown once everything is checked."""
    ERROR_SLOTS[prefix] = st.empty()


@st.cache_data(ttl=60, show_spinner=False)
def measured_speed(tracking_uri: str, name: str) -> float | None:
    """Past runs' speed of a base model (core.runs); cached: the page reruns on every click."""
    return runs_mod.training_speed(client(), name)


@st.cache_data(show_spinner=False)
def row_count(path: str, mtime: float) -> int:
    return estimate.row_count(path)


@st.cache_data(show_spinner="Reading the files as the models will...", max_entries=16)
def grid_reading(spec_json: str, stamps: tuple) -> reading_mod.GridReading | str:
    """What the grid's runs will read (``core.training.reading``), or why it could not be measured; cached
    until the grid or a file changes (``stamps``: the files' modification times)."""
    import json

    try:
        return reading_mod.read_grid(GridSpec.from_dict(json.loads(spec_json)),
                                     tokenizer_of=reading_mod.tokenizer_of)
    except TuneboardError as exc:
        return str(exc)


def reading_of(spec: GridSpec) -> reading_mod.GridReading | str:
    import json

    files = [Path(spec.validation_file), *(Path(spec.train_path(v)) for v in spec.dataset_versions)]
    stamps = tuple(f.stat().st_mtime if f.is_file() else 0.0 for f in files)
    return grid_reading(json.dumps(spec.to_dict(), sort_keys=True, default=str), stamps)


def estimate_grid(spec: GridSpec, read: reading_mod.GridReading | None) -> estimate.Estimate:
    return estimate.estimate(spec, lambda name: measured_speed(s.tracking_uri, name),
                             lambda path: row_count(str(path), path.stat().st_mtime), read)


def show_reading(read: reading_mod.GridReading | str, validation: str) -> None:
    """How long the texts are in each model's tokens, and the windows and forward passes that makes."""
    if isinstance(read, str):
        st.caption(f"How long the texts are could not be measured here: {md(read)}")
        return
    st.write(f"**What the models will read.** Every text is read whole, in windows of up to {read.max_length} "
             "tokens that overlap a little (set `max_length` and `window_overlap` in a set's other settings):")
    st.dataframe(pd.DataFrame([f.row() for f in read.files]), hide_index=True)
    longest = max(read.files, key=lambda f: f.windows_mean, default=None)
    if longest is not None and longest.windows_max > 1:
        st.caption(f"A text longer than one window is read window by window: {md(longest.file)} averages "
                   f"{longest.windows_mean:.1f} windows a text under {md(longest.model)}.")
    validation = Path(validation).name
    if read.topics and validation:
        passes = read.topic_passes(validation)
        calls = max((f.texts for f in read.files if f.file == validation), default=0)
        st.caption(f"Tagging topics reads {calls:,} validation calls x their windows x {read.topics} topics: "
                   f"{passes:,} forward passes per run, counted in the time below.")


@st.cache_data(show_spinner=False, max_entries=16)
def file_head(path: str, mtime: float) -> pd.DataFrame:
    """The first rows of a data file, as read for training (cached until the file changes)."""
    return read_frame(path)[0].head(500)


@st.cache_data(show_spinner=False, max_entries=32)
def pairs_head(path: str) -> str | None:
    """How topic pairs would train a base model (its config only): "NLI" (its own head), "a new NLI head" (an
    encoder that comes without one), None (a head for other classes, or a config that cannot be read here)."""
    try:
        config = load_config(path)
    except TuneboardError:
        return None
    if is_nli(getattr(config, "id2label", None) or {}):
        return "NLI"
    return None if has_trained_head(config) else "a new NLI head"


def choose_columns() -> dict | None:
    """The column mapping: none when the files use the usual names; else guessed from the first training file
    (the longest free-text column, a column with few distinct values), changeable, shown on five rows."""
    chosen = [*st.session_state["c_datasets"][:1], st.session_state["c_validation"]]
    chosen.sort(key=lambda name: not str(name).startswith("uploads/"))  # a team's own upload before a demo file
    first = next((name for name in chosen if name and (data_dir / name).is_file()), None)
    if first is None:
        return None
    path = data_dir / first
    try:
        head = file_head(str(path), path.stat().st_mtime)
    except TuneboardError as exc:
        st.error(md(exc), icon=":material/error:")
        return None
    if usual_columns(head) is not None:
        st.caption(f"{md(first)} names its columns the usual way ({md(', '.join(map(str, head.columns)))}): "
                   "nothing to map.")
        return None
    names = [str(c) for c in head.columns]
    if st.session_state.get("c_col_file") != first:  # another file: guess again
        guess = guess_columns(head) or Columns(text=names[0], label=names[-1])
        st.session_state.update(c_col_file=first, c_col_text=guess.text, c_col_label=guess.label,
                                c_col_pair="(none)")
    st.write(f"**Which columns hold what.** {md(first)} names its columns {md(', '.join(names))}; the guess "
             "below reads it as it is (the same columns are read in every file of the grid).")
    c1, c2, c3 = st.columns(3)
    text = c1.selectbox("Text (the call or document)", options=names, key="c_col_text")
    label = c2.selectbox("Label (its topic or class)", options=names, key="c_col_label")
    pair = c3.selectbox("Second text (for sentence pairs; optional)", options=["(none)", *names], key="c_col_pair")
    mapping = {"text": text, "label": label, **({"text_pair": pair} if pair != "(none)" else {})}
    shown = [c for c in (text, pair if pair != "(none)" else None, label) if c]
    if len(set(shown)) == len(shown):
        st.dataframe(head[shown].head(5).rename(columns={text: f"text: {text}", label: f"label: {label}"}),
                     hide_index=True, width="stretch")
    return mapping


def choose_topic_pairs(mapping: dict | None) -> dict | None:
    """Topics as NLI pairs, offered when a chosen base model is NLI or an encoder without a head (a new NLI head)."""
    chosen = [demo_models()[m] for m in st.session_state["c_demo"] if m in demo_models()] + \
        [line.strip() for line in st.session_state["c_paths"].splitlines() if line.strip()]
    nli = [f"{Path(m).name} ({how})" for m in chosen if (how := pairs_head(m))]
    if not nli or mapping is None:
        st.session_state["c_pairs"] = False
        return None
    on = st.toggle(f"Train {', '.join(nli)} to tag the calls' topics: each call entails \"This call is about "
                   "{its topic}.\" and not a few other topics", key="c_pairs")
    if not on:
        return None
    p1, p2 = st.columns([3, 1])
    template = p1.text_input("Hypothesis template ({} is where the topic goes)", key="c_pairs_template")
    negatives = p2.number_input("Other topics per call", min_value=0, max_value=20, step=1,
                                key="c_pairs_negatives")
    st.caption("Several topics in one cell are separated by ';' (\"fees; rollover\"). Every validation call is "
               "also tagged with every topic, so runs are ranked by topic_f1_macro: how well they tag calls.")
    return {"template": template, "negatives": int(negatives)}


init_state()
st.title("Compose & launch")
st.write("Choose base models, dataset versions and hyperparameter sets. Every combination becomes one training run; "
         "the untrained base model is evaluated first so you can see how much fine-tuning helps.")

with st.expander("Start from a saved grid or a past experiment"):
    # loaded as soon as it is uploaded (a click that came before the upload reached the server was lost); the
    # button loads it again, over what was changed since
    st.file_uploader("A grid saved as YAML", type=["yaml", "yml"], key="c_yaml", on_change=load_yaml_file)
    st.button("Load this file again", on_click=load_yaml_file, key="c_load_yaml",
              disabled=st.session_state.get("c_yaml") is None)
    past = {e.experiment_id: e.name for e in experiments()}
    st.selectbox("A past experiment", options=[None, *past], format_func=lambda i: past.get(i, "—"), key="c_past")
    st.button("Start from this experiment", on_click=load_experiment, key="c_load_past")
if pretrained_demo.NAME in demo_models():  # where make run installed the encoder: the demo that shows learning
    st.button("Fill in the calls demo: a real encoder learns the topics of long calls",
              on_click=load_calls_demo, key="c_load_calls_demo",
              help="The grid below trains the tiny demo models, which show the pipeline but learn little. The calls "
                   "demo fine-tunes all-MiniLM-L6-v2 on the 160 long demo calls and reads the 40 held out, against "
                   "its baseline: about 10 minutes on 2 CPU cores.")
message = st.session_state.pop("c_loaded", None)
if message:
    (st.error if message.startswith("error:") else st.success)(md(message.removeprefix("error:")))

st.subheader("1. Name")
c1, c2, c3 = st.columns(3)
c1.text_input("Experiment theme (base_name)", key="c_base_name", help="e.g. Mass_ConsumerTopic_FineTune_DeBERTa_v3")
c2.text_input("Data source (data_src)", key="c_data_src", help="e.g. CallTranscript")
c3.text_input("User id", key="c_user")
field_error("base_name")
field_error("data_src")
field_error("user_id")

st.subheader("2. Base models")
st.multiselect("Demo models (built on this machine)", options=list(demo_models()), key="c_demo",
               help=f"The tiny demo models start from random weights: they show the pipeline. "
                    f"{pretrained_demo.NAME} is all-MiniLM-L6-v2, a real pretrained encoder with a new NLI head: "
                    "it learns the long demo calls' topics (calls_train.csv, topic pairs; about 10 minutes on 2 "
                    "CPU cores).")
st.text_area("Other models: local folders or hub ids, one per line", key="c_paths",
             placeholder="/models/deberta-v3-base-zeroshot-v2\nMoritzLaurer/deberta-v3-large-zeroshot-v2.0")
field_error("base_model_versions")

st.subheader("3. Data")
u1, u2 = st.columns(2)
kinds = [k.lstrip(".") for k in FORMATS]
u1.file_uploader("Your labelled data, to train on (CSV, TSV, JSONL, Parquet or an Excel workbook; checked before "
                 "it is kept). The first replaces the demo's files; later ones add dataset versions.",
                 type=kinds, key="c_upload")
u2.file_uploader("Your validation file, if you have one (every run is checked on it; without one, hold out a "
                 "share of your data below)", type=kinds, key="c_upload_validation")
take_upload("c_upload", validation=False)
take_upload("c_upload_validation", validation=True)
files = data_files()
st.multiselect("Dataset versions to train on", options=sorted(set(files) | set(st.session_state["c_datasets"])),
               key="c_datasets")
field_error("dataset_versions")
field_error("train_file")
column_mapping = choose_columns()
field_error("columns")
st.radio("Check every run", [FROM_FILE, HOLD_OUT], key="c_val_mode", horizontal=True)
held_out = None
if st.session_state["c_val_mode"] == HOLD_OUT:
    held_out = choose_holdout(column_mapping)
else:
    st.selectbox("Validation file (every run is evaluated on it)", options=files, key="c_validation")
    if not st.session_state["c_validation"]:
        st.info("Choose how runs are checked: upload your validation file above, pick one here, or hold out a "
                "share of your data.")
field_error("validation_file")
field_error("split")
topic_pairs = choose_topic_pairs(column_mapping)
field_error("topic_pairs")

st.subheader("4. Hyperparameter sets")
st.caption("One row per set. Leave a cell empty for the default. 'other settings' takes any transformers "
           'TrainingArguments field as JSON, e.g. {"seed": 3, "lr_scheduler_type": "cosine"}.')
with st.expander("Generate sets from value lists"):
    gen = {key: st.text_input(f"{key} values (comma-separated)", key=f"c_gen_{key}",
                              placeholder={"n_epochs": "3, 5", "learning_rate": "2e-5, 3e-5"}.get(key, ""))
           for key in COLUMNS}
    mode = st.radio("Which combinations", ["all combinations", "a random sample"], horizontal=True, key="c_gen_mode")
    sample = st.number_input("How many in the sample", min_value=1, max_value=500, value=8, key="c_gen_n")
    if st.button("Fill the table", key="c_gen_fill"):
        try:
            combos = hsets.generate(hsets.value_lists(gen), int(sample) if mode == "a random sample" else None)
        except ValueError as exc:
            st.error(f"Could not read a value list: {md(exc)}. Write numbers separated by commas, e.g. 2e-5, 3e-5.")
        except GridError as exc:
            st.error(md(exc))
        else:
            st.session_state["c_sets"] = pd.DataFrame(combos or [{}], columns=[*COLUMNS, hsets.OTHER])
            st.session_state["c_editor_version"] += 1
            st.rerun()
table = st.data_editor(st.session_state["c_sets"], num_rows="dynamic", width="stretch",
                       key=f"c_editor_{st.session_state['c_editor_version']}",
                       column_config={"learning_rate": st.column_config.NumberColumn(format="%.2e")})
field_error("hyperparameters")

st.subheader("5. Options")
o1, o2 = st.columns(2)
o1.toggle("Evaluate each pretrained base model first (the baseline)", key="c_baseline")
o2.number_input("Priority (higher runs first)", min_value=-100, max_value=100, step=1, key="c_priority")
st.text_input("Save trained models under", key="c_output")

# -- check everything, then show what would run -----------------------------------------------------
spec = None
datasets, validation, split = list(st.session_state["c_datasets"]), st.session_state["c_validation"], None
if st.session_state["c_val_mode"] == HOLD_OUT:
    validation = None
    if held_out is not None:  # train on its training part; check on its validation part
        part = Path(held_out.train_file).relative_to(data_dir).as_posix()
        datasets = [part if d == st.session_state["c_holdout_src"] else d for d in datasets]
        validation, split = Path(held_out.validation_file).relative_to(data_dir).as_posix(), held_out.summary()
try:
    if not validation:
        raise GridError("choose how runs are checked: a validation file (upload it or pick one), or a share held "
                        "out of your data.")  # no key: the form says it beside the choice already
    models = list(dict.fromkeys([demo_models()[m] for m in st.session_state["c_demo"]] +
                                [line.strip() for line in st.session_state["c_paths"].splitlines() if line.strip()]))
    spec = GridSpec(base_name=st.session_state["c_base_name"].strip(), data_src=st.session_state["c_data_src"].strip(),
                    user_id=st.session_state["c_user"].strip() or user(),
                    dataset_versions=tuple(datasets),
                    hyperparameters=tuple(hsets.sets_from_rows(table.to_dict("records"))),
                    base_model_versions=tuple(models), output_dir=st.session_state["c_output"],
                    train_file=str(data_dir / "{data_version}"),
                    validation_file=str(data_dir / validation),
                    evaluate_pretrained_model=st.session_state["c_baseline"], columns=column_mapping,
                    topic_pairs=topic_pairs, split=split)
    st.session_state["c_error"] = None
except GridError as exc:
    st.session_state["c_error"] = (exc.key or "", str(exc))
except TuneboardError as exc:
    st.session_state["c_error"] = ("", str(exc))
if st.session_state["c_error"]:
    key, message = st.session_state["c_error"]
    slot = next((slot for prefix, slot in ERROR_SLOTS.items() if key.startswith(prefix)), None)
    if slot is not None:
        slot.error(md(message), icon=":material/error:")

st.subheader("6. Check and launch")
if spec is None:
    key, message = st.session_state["c_error"]
    st.error(f"Not ready to launch: {md(message)}", icon=":material/error:")
else:
    runs = spec.expand()
    read = reading_of(spec)
    show_reading(read, spec.validation_file)
    took = estimate_grid(spec, read if not isinstance(read, str) else None)
    st.write(f"Experiment **{md(spec.experiment_name)}** — **{len(runs)} runs**, about "
             f"**{duration_text(took.seconds)}** on one slot (rough: {md(took.basis)}).")
    if spec.topic_pairs:
        st.write("Each run is judged by **topic_f1_macro** (Compare ranks by it): the calls' topics tagged "
                 "against their true ones, each topic weighing the same.")
    st.dataframe(pd.DataFrame({"run": [r.run_name for r in runs],
                               "what": ["evaluate the pretrained model" if r.kind == "baseline" else "fine-tune"
                                        for r in runs]}), hide_index=True, height=min(400, 38 + 35 * len(runs)))
    st.download_button("Save this grid as YAML", spec.to_yaml(), file_name=f"{spec.base_name}.yaml",
                       mime="application/x-yaml", key="c_save")
    if st.button("Launch", type="primary", key="c_launch"):
        try:
            with st.spinner("Checking files and models, then queueing..."):
                jobs = queue().submit(spec, priority=int(st.session_state["c_priority"]))
                jobs_changed()
            st.session_state["last_grid"] = jobs[0].grid_id
            st.session_state["flash"] = f"Queued {len(jobs)} runs of {spec.experiment_name}."
            st.switch_page("pages/jobs.py")
        except TuneboardError as exc:
            st.error(f"Nothing was launched: {md(exc)}", icon=":material/error:")
        except Exception as exc:  # noqa: BLE001 - shown in words, traceback in the log
            show_error(exc, "launching the grid")
st.caption(f"Experiment names follow the seed: {md(experiment_name('<user>', '<base_name>', '<data_src>'))}")
