"""One run: evaluate a pretrained model, or fine-tune it with the HF Trainer, and log it all.

:func:`execute` takes a :class:`~core.grid.RunSpec` and reads top to bottom:

1. open the MLflow run (a new one, or one created earlier by the job queue);
2. log the spec: hyperparameters, base model, dataset paths and digests;
3. read and check the data through its column mapping (inside the allowed roots when
   the spec is confined: ``core.paths``); calls labelled with topics become NLI pairs
   (``core.topic_pairs``); align the labels with the model's head (``core.training.check``);
4. load the model and tokenizer, tokenize with dynamic padding;
5. fine-tune with the Trainer (skipped for a baseline), logging loss and
   learning rate per logging step and eval metrics per epoch, asynchronously;
6. evaluate on the validation file: accuracy, F1, precision, recall, ROC-AUC,
   confusion matrix and ROC curve, and every example's prediction as a table
   (``core.examples``; a seeded sample above ``TUNEBOARD_PREDICTIONS_MAX_ROWS``); for
   calls with topics, every call against every topic: ``topic_*`` metrics, a table per
   topic, and the table per call (its true and tagged topics);
7. save the model under ``output_dir`` and log it with
   ``mlflow.transformers.log_model``;
8. end the run FINISHED, or FAILED with the error's message on it (a full
   disk is named as such, with the file system that is full).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from core import paths, speed, tracking
from core.data import Examples, LabelMapping
from core.errors import explain
from core.examples import table as predictions
from core.grid import OWN_KEYS, RunSpec
from core.metrics import classification_metrics, softmax
from core.models import loading
from core.models.infer import length_limit
from core.models.windows import Reading
from core.naming import MODEL_URI_TAG
from core.scoring.topic_eval import topic_metrics, truth_matrix
from core.scoring.topics import read_topics
from core.settings import Settings, configure_mlflow, ensure_experiment
from core.topic_pairs import TopicPairs
from core.training import bags
from core.training.check import Inputs, read_inputs

log = logging.getLogger(__name__)

TOPIC_TABLE = "topic_metrics.json"  # per topic: support, tagged, precision, recall, F1 (and the averages)



# Model families whose modules a warm spare imports before its job names one (the rest load on first use)
WARM_FAMILIES = ("bert", "deberta_v2", "roberta", "xlm_roberta", "distilbert", "electra", "modernbert")


def warm_up() -> None:
    """Pay a run's first-time costs now (a warm spare, waiting for its job): the model families' modules,
    scikit-learn's metrics, the data reader's builders, and MLflow's map of installed packages (which
    ``log_model`` builds on first use to check the model's requirements: seconds)."""
    import importlib

    import datasets.packaged_modules.csv.csv  # noqa: F401 - the reader's builder, imported on first read
    import mlflow.transformers  # noqa: F401
    import sklearn.metrics  # noqa: F401
    from mlflow.utils import requirements_utils

    for family in WARM_FAMILIES:
        try:
            importlib.import_module(f"transformers.models.{family}.modeling_{family}")
        except ImportError:  # a family this transformers does not have
            pass
    try:
        requirements_utils._init_packages_to_modules_map()  # private, cached by MLflow once built
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the spare: log_model builds it itself
        log.info("could not warm MLflow's package map: %s", exc)


class StageClock:
    """Says each stage of a run (``say``) and times it: a stage lasts from its start to the next one's."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.seconds = say, {}
        self._stage: str | None = None
        self._since = 0.0

    def __call__(self, stage: str) -> None:
        self._close()
        self._stage, self._since = stage, time.perf_counter()
        self.say(stage)

    def _close(self) -> None:
        if self._stage is not None:
            key = self._stage.replace(" ", "_")
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - self._since
            self._stage = None

    def metrics(self) -> dict[str, float]:
        """``stage_<name>_seconds`` of every stage so far (the last one ends now)."""
        self._close()
        return {f"stage_{name}_seconds": round(seconds, 3) for name, seconds in self.seconds.items()}


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_name: str
    status: str  # FINISHED | FAILED
    metrics: dict[str, float]
    error: str | None = None


def execute(spec: RunSpec, *, run_id: str | None = None, settings: Settings | None = None,
            callbacks: list | None = None, on_status: Callable[[str], None] | None = None,
            requeue: Callable[[Exception], bool] | None = None,
            before_end: Callable[[str], None] | None = None) -> RunResult:
    """Run one spec end to end; never raises for a failure inside the run (it ends FAILED).

    ``requeue``: asked about a failure; when it answers True the run is left open (status "REQUEUED") for
    the caller to queue again (the worker's packed jobs that ran out of GPU memory). ``before_end``: called
    while the run is still open, just before it ends FINISHED or FAILED (a job attaches its log there, so
    a run that reads as ended already holds it).
    """
    import mlflow

    settings = configure_mlflow(settings)
    say = StageClock(on_status or (lambda message: log.info(message)))
    # 1. open the run
    if run_id is None:
        experiment_id = ensure_experiment(spec.experiment_name, settings)
        active = mlflow.start_run(experiment_id=experiment_id, run_name=spec.run_name, tags=spec.tags())
    else:
        active = mlflow.start_run(run_id=run_id)
    run_id, artifact_uri = active.info.run_id, active.info.artifact_uri
    try:
        with paths.confined(spec.confined):
            metrics = _run_body(spec, run_id, callbacks or [], say)
    except Exception as exc:  # noqa: BLE001 - the run ends FAILED with the reason; the caller goes on
        if requeue is not None and requeue(exc):
            tracking.flush()
            return RunResult(run_id, spec.run_name, "REQUEUED", {}, f"{type(exc).__name__}: {exc}")
        try:
            message = explain(exc, artifact_uri)
        except Exception:  # noqa: BLE001 - explaining must never stop the run from ending FAILED
            message = f"{type(exc).__name__}: {exc}"
        log.warning("run %s failed: %s", spec.run_name, message)
        tracking.record_failure(run_id, exc, message, before_end)
        return RunResult(run_id, spec.run_name, "FAILED", {}, message)
    try:
        mlflow.log_metrics(say.metrics())  # where the run's time went, stage by stage
        tracking.flush()
        if before_end is not None:
            before_end("FINISHED")
        mlflow.end_run("FINISHED")
    except Exception as exc:  # noqa: BLE001 - MLflow went away at the very end; say so, the worker records it
        message = f"the run trained and logged, but MLflow could not record its end: {explain(exc)}"
        log.warning("run %s: %s", spec.run_name, message)
        tracking.record_failure(run_id, exc, message)
        return RunResult(run_id, spec.run_name, "FAILED", metrics, message)
    return RunResult(run_id, spec.run_name, "FINISHED", metrics)


def _run_body(spec: RunSpec, run_id: str, callbacks: list, say: Callable[[str], None]) -> dict[str, float]:
    import mlflow

    # 2. what this run is made of
    mlflow.log_params(spec.params())
    mlflow.log_text(spec.to_json(), "run_spec.json")

    # 3. data and labels (and, confined, where the model may be saved: checked before any training)
    say("reading data")
    cap = predictions.max_rows()  # a mistyped cap stops the run here, not after training
    inputs = read_inputs(spec)
    validation, train, mapping = inputs.validation, inputs.train, inputs.mapping
    if inputs.calls is not None:  # calls labelled with topics, trained and evaluated as NLI pairs
        mlflow.log_params({"topic_pairs.train_pairs": len(train) if train is not None else 0,
                           "topic_pairs.validation_pairs": len(validation),
                           "topic_pairs.held_out_calls": inputs.held_out,
                           "topics": "; ".join(inputs.topics)[:6000]})
    if inputs.expanded:
        mlflow.log_param("multi_topic_rows", inputs.expanded)  # each read as one example per topic
    _log_dataset(validation, "validation")
    if train is not None:
        _log_dataset(train, "training")
        mlflow.log_params({"dataset_digest": train.digest[:16]})
    mlflow.log_params({"validation_digest": validation.digest[:16], "num_labels": mapping.num_labels,
                       "label_names": ",".join(mapping.id2label[i] for i in sorted(mapping.id2label))})

    # 4. model and tokenizer; every text read whole, as windows of what the model takes (core.training.bags)
    say("loading model")
    model, tokenizer, new_weights = loading.load_for_classification(spec.base_model, mapping, with_new=True)
    new_head = not mapping.keeps_head or bool(new_weights)  # its scores mean nothing yet
    # a checkpoint with no head for these labels (an encoder as pretrained) gets one made at random: not kept
    mlflow.log_param("keeps_pretrained_head", not new_head)
    if new_weights:
        mlflow.log_param("new_weights", ", ".join(new_weights)[:500])
    reading = Reading.from_settings(spec.hyperparameters, 128)
    limit = length_limit(model, tokenizer, reading.max_length)
    say("tokenizing")
    topics = [pairs.template.format(t) for t in inputs.topics] if (pairs := TopicPairs.parse(spec.topic_pairs)) \
        else None
    budget = bags.room(tokenizer, limit, validation, train, hypotheses=topics)
    evaluated = bags.encode(validation, tokenizer, mapping, budget, reading)
    eval_set = bags.Rows(evaluated)
    train_set, choose = None, None
    if train is not None:
        # topic pairs may train on shorter parts of a long call than evaluation reads (TopicPairs.train_window);
        # truncate reads the first window of max_length only, in training as in evaluation
        short = pairs and pairs.train_window and not reading.truncate
        trained = bags.encode(train, tokenizer, mapping, min(budget, pairs.train_window) if short else budget, reading)
        if trained.entail is not None:  # pairs labelled per call: train on the windows that decide them
            train_set = bags.Chosen(trained, pairs.top_windows if pairs else 1,
                                    int(spec.hyperparameters.get("seed", 42)), pairs.hard_negatives if pairs else 0)
            if train_set.several:
                choose = bags.ChooseWindows(train_set, speed.BucketCollator(tokenizer), new_head,
                                            int(spec.hyperparameters.get("per_device_eval_batch_size", 32)))
        else:
            train_set = bags.Rows(trained)
    _log_reading(reading, limit, budget, evaluated, train_set, choose, new_head)
    plan = _speed_plan(spec, train_set, limit)
    mlflow.set_tags(plan.tags())
    callbacks = [*callbacks, *([choose] if choose else [])]
    trainer = _make_trainer(spec, model, tokenizer, mapping, eval_set, train_set, run_id, callbacks, plan,
                            evaluated)
    try:
        return _train_and_log(spec, trainer, tokenizer, inputs, eval_set, say, cap)
    except Exception as exc:
        if plan.compile_mode is None or not speed.is_compile_failure(exc):
            raise
        # compiling failed (a backend compiler missing, an unsupported op...): train eagerly from the start
        note = f"failed, trained eagerly: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        log.warning("run %s: compilation %s", spec.run_name, note)
        mlflow.set_tag(speed.COMPILE_TAG, note)
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
        eager = speed.Plan(None, [], {k: v for k, v in plan.arguments.items() if not k.startswith("torch_compile")})
        model, tokenizer = loading.load_for_classification(spec.base_model, mapping)
        trainer = _make_trainer(spec, model, tokenizer, mapping, eval_set, train_set, run_id, callbacks, eager,
                                evaluated)
        return _train_and_log(spec, trainer, tokenizer, inputs, eval_set, say, cap)
    finally:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # the Trainer's scratch folder


def _train_and_log(spec: RunSpec, trainer, tokenizer, inputs: Inputs, eval_set, say: Callable[[str], None],
                   cap: int) -> dict[str, float]:
    """Steps 5 to 7; ``cap``: the most rows the predictions table keeps."""
    import mlflow

    train, validation, mapping = inputs.train, inputs.validation, inputs.mapping
    # 5. fine-tune
    started = time.perf_counter()
    if train is not None:
        say("training")
        trainer.train()
        for callback in trainer.callback_handler.callbacks:  # long calls: how the window choices settled
            if isinstance(callback, bags.ChooseWindows):
                for epoch, share in enumerate(callback.changed):
                    mlflow.log_metric("windows_rechosen", share, step=epoch)

    # 6. evaluate (the last epoch's evaluation, when it was on the final weights: the same numbers, once)
    say("evaluating")
    reused = trainer.compute_metrics.of_final_weights(trainer) if train is not None else None
    if reused is None:
        trainer.compute_metrics = None  # the metrics below are computed once, from these predictions
        output = trainer.predict(eval_set)
        logits, label_ids = output.predictions, output.label_ids
        if train is None:  # how long a baseline's evaluation took, and its speed (a fine-tune logs them per epoch)
            mlflow.log_metrics({"eval_runtime": round(output.metrics.get("test_runtime", 0.0), 4),
                                "eval_samples_per_second": output.metrics.get("test_samples_per_second", 0.0)})
    else:
        logits, label_ids = reused
    per_example = eval_set.encoded
    mlflow.set_tag("final_evaluation", "the last epoch's evaluation (the same weights)" if reused is not None
                   else "evaluated after training")
    probs = per_example.probabilities(softmax(logits))  # each example from its windows
    label_ids = per_example.labels
    metrics, details = classification_metrics(label_ids, probs, mapping.id2label)
    mlflow.log_metrics({**metrics, **_costs(trainer, time.perf_counter() - started)}, step=trainer.state.global_step)
    mlflow.set_tags({"metric_average": details["average"],
                     **({"positive_label": details["positive_label"]} if "positive_label" in details else {})})
    mlflow.log_dict(details["confusion_matrix"], "confusion_matrix.json")
    if "roc" in details:
        mlflow.log_dict(details["roc"], "roc_curve.json")
    if "roc_auc_skipped" in details:
        mlflow.set_tag("roc_auc_skipped", details["roc_auc_skipped"])
    if inputs.calls is None:
        predictions.log_predictions(validation, probs, label_ids, mapping.id2label, cap)
    else:  # calls and their topics: every call against every topic, and the per-call table
        say("evaluating topics")
        metrics.update(_topic_evaluation(spec, trainer.model, tokenizer, inputs, cap))

    # 7. keep the model
    if spec.kind == "fine_tune":
        say("saving model")
        out = Path(spec.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        mlflow.set_tag("output_dir", str(out.resolve()))
        say("logging model")
        # served as it was evaluated: the same windows, and for topic runs the same template and threshold
        reading, pairs = Reading.from_settings(spec.hyperparameters, 128), TopicPairs.parse(spec.topic_pairs)
        info = loading.log_model(trainer.model, tokenizer, pairs=train.text_b is not None,
                                 max_length=reading.max_length, window_overlap=reading.overlap,
                                 **({"template": pairs.template, "threshold": pairs.threshold} if pairs else {}))
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return metrics


def _topic_evaluation(spec: RunSpec, model, tokenizer, inputs: Inputs, cap: int) -> dict[str, float]:
    """Tag every validation call with every topic (``core.scoring.topics``) and score the tags against its true
    topics (``core.scoring.topic_eval``): logged as ``topic_*`` metrics, a per-topic table and the per-call
    predictions table. Returns the metrics."""
    import mlflow

    pairs, calls, topics = TopicPairs.parse(spec.topic_pairs), inputs.calls, list(inputs.topics)
    started = time.perf_counter()
    read = read_topics(model, tokenizer, calls.text_a, topics, pairs.template,
                       reading=Reading.from_settings(spec.hyperparameters, 128),
                       batch_size=int(spec.hyperparameters.get("per_device_eval_batch_size", 32)))
    scores = read.scores
    seconds = time.perf_counter() - started
    table = topic_metrics(calls.labels, scores, topics, pairs.threshold)
    by = table.set_index("topic")
    truth = truth_matrix(calls.labels, topics)
    found = {"topic_f1_macro": by.loc["macro avg", "f1"], "topic_f1_micro": by.loc["micro avg", "f1"],
             "topic_precision_macro": by.loc["macro avg", "precision"],
             "topic_recall_macro": by.loc["macro avg", "recall"],
             # the likeliest topic is one of the call's own
             "topic_accuracy": float(truth[np.arange(len(truth)), scores.argmax(axis=1)].mean())}
    found = {k: float(v) for k, v in found.items()}
    # what reading whole calls cost: every window of every call against every topic is one forward pass
    mlflow.log_metrics({**found, "topic_eval_seconds": round(seconds, 3),
                        "topic_eval_forward_passes": float(len(read.split.windows) * len(topics))})
    mlflow.log_table(table, artifact_file=TOPIC_TABLE)
    predictions.log_call_predictions(calls, scores, topics, pairs.threshold, cap, evidence=read)
    return found


def _log_dataset(examples: Examples, context: str) -> None:
    import mlflow
    import pandas as pd

    columns = {examples.columns[0]: examples.text_a, examples.columns[2]: [str(x) for x in examples.labels]}
    if examples.text_b is not None:
        columns[examples.columns[1]] = examples.text_b
    frame = pd.DataFrame(columns)
    with warnings.catch_warnings():  # "the source can be interpreted in multiple ways": a local file; say nothing
        warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=str(Path(examples.path).resolve()),
                                          name=Path(examples.path).stem, targets=examples.columns[2],
                                          digest=examples.digest[:16])
    tracking.log_input(dataset, context)


def _log_reading(reading: Reading, limit: int, budget: int, evaluated: bags.Encoded, train_set, choose,
                 new_head: bool) -> None:
    """How the run reads its texts (params) and what that meant for its files (metrics); a cut, as a tag."""
    import mlflow

    mlflow.log_params({"windows.max_length": limit, "windows.budget_tokens": budget,
                       "windows.overlap": evaluated.split.overlap, "windows.aggregation": evaluated.aggregation,
                       "windows.truncate": reading.truncate,
                       **({"windows.train_budget_tokens": train_set.encoded.split.budget}
                          if train_set is not None and train_set.encoded.split.budget != budget else {}),
                       **({"windows.first_choice": "the words' evidence, ties at random (new head)" if new_head
                           else "the words' evidence, ties by the model"}
                          if choose else {})})
    found = {f"validation_{k}": v for k, v in evaluated.split.summary().items()}
    if train_set is not None:
        found.update({f"train_{k}": v for k, v in train_set.encoded.split.summary().items()})
    mlflow.log_metrics(found)
    cut = found["validation_tokens_cut"] + found.get("train_tokens_cut", 0.0)
    if cut:
        mlflow.set_tag("truncated", f"read the first window only (truncate: true): {int(cut):,} tokens of "
                                    f"{int(found['validation_texts_cut'] + found.get('train_texts_cut', 0)):,} "
                                    "texts were not read")


def training_arguments(spec: RunSpec, output_dir: str, steps_per_epoch: int, plan: speed.Plan | None = None):
    """TrainingArguments for a spec: the user's choices, plus fast defaults where they chose nothing
    (``plan``: dataloader workers, a larger evaluation batch, compilation; see :mod:`core.speed`)."""
    import torch
    from transformers import TrainingArguments

    chosen = {k: v for k, v in spec.hyperparameters.items() if k not in OWN_KEYS}
    defaults: dict[str, Any] = {
        "eval_strategy": "epoch", "logging_strategy": "steps",
        "logging_steps": max(1, min(50, steps_per_epoch // 4)), "save_strategy": "no",
        "report_to": "none", "disable_tqdm": True, "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(), **(plan.arguments if plan else {}),
    }
    if torch.cuda.is_available():
        defaults["optim"] = "adamw_torch_fused"
        if torch.cuda.is_bf16_supported():
            defaults["bf16"] = True
        else:
            defaults["fp16"] = True
    merged = {**defaults, **chosen}
    for fixed in ("eval_strategy", "save_strategy", "report_to"):
        merged[fixed] = defaults[fixed]
    return TrainingArguments(output_dir=output_dir, **merged)


def _speed_plan(spec: RunSpec, train_set, max_length: int) -> speed.Plan:
    import torch

    chosen = {k: v for k, v in spec.hyperparameters.items() if k not in OWN_KEYS}
    batch = int(chosen.get("per_device_train_batch_size", 8)) * int(chosen.get("gradient_accumulation_steps", 1))
    steps = -(-len(train_set) // batch) * float(chosen.get("num_train_epochs", 3)) if train_set is not None else 0
    if int(chosen.get("max_steps", -1)) > 0:
        steps = int(chosen["max_steps"])
    return speed.plan(chosen, max_length=max_length, total_steps=int(steps), cuda=torch.cuda.is_available())


def _make_trainer(spec: RunSpec, model, tokenizer, mapping: LabelMapping, eval_set, train_set,
                  run_id: str, callbacks: list, plan: speed.Plan, evaluated: bags.Encoded):
    import torch
    from transformers import PrinterCallback, Trainer

    batch = int(spec.hyperparameters.get("per_device_train_batch_size", 16))
    steps_per_epoch = max(1, -(-len(train_set) // batch)) if train_set is not None else 1
    scratch = tempfile.mkdtemp(prefix="tuneboard-trainer-")
    args = training_arguments(spec, scratch, steps_per_epoch, plan)
    pad = 8 if torch.cuda.is_available() else None
    if plan.compile_mode is not None:
        speed.prepare_compile()
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=speed.BucketCollator(tokenizer, plan.edges, pad),
        processing_class=tokenizer, compute_metrics=LastEvaluation(mapping, evaluated),
        callbacks=[MlflowMetricsCallback(run_id), speed.CostCallback(), *callbacks],
    )
    trainer.compute_metrics.trainer = trainer
    # With tqdm off (our default) the Trainer prints every log as a raw dict; the numbers go to MLflow, and
    # progress to the callbacks the caller passed (core.progress), so drop the printer, in notebooks too.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _costs(trainer, seconds: float) -> dict[str, float]:
    """What the run cost: steady training throughput, peak GPU memory, GPU seconds (training and evaluation)."""
    import torch

    figures = next((dict(cb.figures) for cb in trainer.callback_handler.callbacks
                    if isinstance(cb, speed.CostCallback)), {})
    if torch.cuda.is_available():
        figures["gpu_seconds"] = round(seconds, 2)
        figures["gpu_memory_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return figures


class LastEvaluation:
    """The Trainer's ``compute_metrics``, keeping the latest evaluation's predictions and the step its weights
    had: when training ends on those same weights, the final evaluation is that one, not a second pass."""

    def __init__(self, mapping: LabelMapping, evaluated: bags.Encoded):
        self.mapping, self.evaluated, self.trainer = mapping, evaluated, None
        self.step: int | None = None
        self.predictions = self.label_ids = None

    def __call__(self, prediction) -> dict[str, float]:
        self.step = self.trainer.state.global_step if self.trainer is not None else None
        self.predictions, self.label_ids = prediction.predictions, prediction.label_ids
        metrics, _ = classification_metrics(self.evaluated.labels,  # each example read from its windows
                                            self.evaluated.probabilities(softmax(prediction.predictions)),
                                            self.mapping.id2label)
        return metrics

    def of_final_weights(self, trainer) -> tuple | None:
        """(predictions, label ids) when the latest evaluation was on the weights training ended with."""
        if self.predictions is None or self.step != trainer.state.global_step:
            return None
        return self.predictions, self.label_ids


def describe(result: RunResult) -> str:
    if result.status == "FINISHED":
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        return f"{result.run_name}: finished ({shown})"
    return f"{result.run_name}: FAILED — {result.error}"


class MlflowMetricsCallback(TrainerCallback):
    """Log loss, learning rate and eval metrics per step to one MLflow run, in the background
    (``core.tracking.writer``), so no training step waits for a round trip to the store."""

    SKIP = frozenset({"total_flos"})

    def __init__(self, run_id: str, flush_seconds: float = 2.0):
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._client = MlflowClient()
        self._pending: list = []
        self._last_flush = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        for key, value in (logs or {}).items():
            if key in self.SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._pending.append(Metric(key, float(value), now_ms, state.global_step))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def on_evaluate(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()

    def flush(self) -> None:
        # MLflow caps one batch at 1000 metrics
        while self._pending:
            chunk, self._pending = self._pending[:1000], self._pending[1000:]
            tracking.writer.submit(lambda chunk=chunk: self._client.log_batch(self.run_id, metrics=chunk))
        self._last_flush = time.monotonic()
