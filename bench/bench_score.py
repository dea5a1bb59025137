"""Scoring a file with a registered model: end to end, pure inference, topic tagging, GPU against CPU.

    python bench/bench_score.py --shape tiny                     # tiny demo BERT on CPU: 500 rows, 100 for topics
    python bench/bench_score.py --shape base --json score.json   # DeBERTa-v3-base shape (GPU): 20000 rows, 2000

One process, offline, on a fresh MLflow store (SQLite) in a temporary folder. The model is the benchmarks'
randomly initialised one (``bench_pipeline.SHAPES``) with a three-way NLI head (entailment / neutral /
contradiction), logged by the product's own ``core.models.loading.log_model``, registered and promoted to
``production`` by ``core.registry.model_transition.ModelTransition``; random weights time the same as trained ones.
The file is ``--rows`` call transcripts (``bench_pipeline.write_data``'s long premises, its "32-256 token
mix"); the tokens the model's tokenizer counts, and the share cut at the length limit, are printed.

1. classify: ``core.scoring.job.score`` with ``models:/NAME@production``, timed end to end (resolve, download
   into the model cache, load, read, infer, write, MLflow run) with each phase from its status messages; pure
   inference is the run's own ``rows_per_second`` metric (the time around ``predict_proba``);
2. topics: the same in topic mode, 10 topics on ``--topic-rows`` transcripts (one model pass per
   transcript and topic; the model is loaded already);
3. parity (CUDA only): the first 64 transcripts through ``predict_proba`` on the GPU (the product's default:
   bf16 autocast) and on the CPU in fp32: largest absolute probability difference and argmax agreement. With
   random weights the classes are close (the fp32 top-two margin is printed), so a few argmax flips can be
   rounding rather than a fault; the probability difference is the figure to judge.

Prints one line per stage and a summary; ``--json`` is rewritten after every stage, so a run cut off still
leaves what it measured. Exits 1 when a scoring run does not end FINISHED. The temporary folder (about 2 GB
of model copies for the base shape) is removed at the end; ``--keep`` keeps it.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["HF_HUB_OFFLINE"] = "1"  # never a download, whatever the caller's environment says
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bars in the device's log
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from bench_pipeline import SHAPES, write_data  # after the path and env set-up

MODEL_NAME = "Bench_Score_NLI"
NLI_LABELS = ("entailment", "neutral", "contradiction")  # MNLI's head, so topic mode uses p(e) / (p(e) + p(c))
PARITY_ROWS = 64


def register_nli(folder: Path) -> tuple[str, dict]:
    """Log the model in ``folder`` with a three-way NLI head and promote it to production; (reference, figures).

    ``build_model`` gives a two-way head (entailment / not_entailment): the body is loaded as built and the
    head is made afresh with MNLI's three labels (random, like the rest)."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForSequenceClassification

    from core.models.loading import log_model
    from core.registry.model_transition import ModelTransition
    from core.settings import configure_mlflow, ensure_experiment
    from core.tokenizer import load_tokenizer

    started = time.perf_counter()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), num_labels=len(NLI_LABELS), id2label=dict(enumerate(NLI_LABELS)),
        label2id={name: i for i, name in enumerate(NLI_LABELS)}, ignore_mismatched_sizes=True)
    tokenizer = load_tokenizer(folder.name, str(folder))
    settings = configure_mlflow()
    experiment = ensure_experiment("Bench - scoring model", settings)
    with mlflow.start_run(experiment_id=experiment, run_name=f"nli_{folder.name}") as run:
        info = log_model(model, tokenizer, pairs=True)
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    transition = ModelTransition(MODEL_NAME)
    version = transition.register_run(client.get_run(run.info.run_id), info.model_uri)
    transition.promote(version.version, "Production", reason="bench_score", user="bench")
    params = sum(p.numel() for p in model.parameters())
    return f"models:/{MODEL_NAME}@production", {"register_s": round(time.perf_counter() - started, 1),
                                                 "parameters_m": round(params / 1e6, 1),
                                                 "model_version": str(version.version)}


def write_transcripts(work: Path, rows: int, topic_rows: int) -> tuple[Path, Path, list[str]]:
    """``transcripts.csv`` (``rows`` calls) and ``topic_calls.csv`` (the first ``topic_rows``): call_id, transcript."""
    train, _ = write_data(work / "pairs", rows, 64, long=True)  # the eval file is not used
    with train.open(newline="", encoding="utf-8") as f:
        texts = [row["premise"] for row in csv.DictReader(f)]
    paths = []
    for name, n in (("transcripts.csv", rows), ("topic_calls.csv", topic_rows)):
        path = work / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("call_id", "transcript"))
            writer.writerows((f"call{i:06d}", text) for i, text in enumerate(texts[:n], start=1))
        paths.append(path)
    return paths[0], paths[1], texts


def token_mix(folder: Path, texts: list[str], max_length: int) -> dict:
    """Tokens per transcript (a sample of 2000) as the model's tokenizer counts them, and the share longer than
    the limit scoring cuts them to (``--max-length``, capped by what the model takes: ``infer.length_limit``).

    From the built folder: the registered model is not downloaded before the timed job does it."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from core.models.infer import length_limit
    from core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(folder.name, str(folder))
    limit = length_limit(SimpleNamespace(config=AutoConfig.from_pretrained(str(folder))), tokenizer, max_length)
    lengths = sorted(len(ids) for ids in tokenizer(texts[:2000])["input_ids"])
    return {"tokens_min": lengths[0], "tokens_p50": lengths[len(lengths) // 2],
            "tokens_p95": lengths[int(len(lengths) * 0.95)], "tokens_max": lengths[-1], "token_limit": limit,
            "share_truncated": round(sum(n > limit for n in lengths) / len(lengths), 3)}


def rate(value: float) -> float:
    """A rate to four significant figures (a CPU's 0.2 rows/s and a GPU's 5000 alike)."""
    return float(f"{value:.4g}")


def timed_score(spec) -> dict:
    """Run one scoring job; its wall time, phases (from its status messages) and the run's own figures."""
    from mlflow.tracking import MlflowClient

    from core.scoring.job import score
    from core.settings import Settings

    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    result = score(spec, on_status=lambda message: marks.append((message, time.perf_counter())))
    wall = time.perf_counter() - started
    settings = Settings.from_env()
    run = MlflowClient(settings.tracking_uri, settings.registry_uri).get_run(result.run_id)
    points = [("resolve_and_open_run", started), *marks, ("end", started + wall)]
    phases = {f"{name.replace(' ', '_')}_s": round(after - at, 3)
              for (name, at), (_, after) in itertools.pairwise(points)}
    metrics = run.data.metrics
    out = {"status": run.info.status, "run_id": result.run_id, "rows": result.rows, "wall_s": round(wall, 3),
           "rows_per_s_end_to_end": rate(result.rows / wall) if result.rows else 0.0, "phases": phases,
           "inference_s": round(metrics.get("scoring_seconds", 0.0), 3),
           "inference_rows_per_s": rate(metrics.get("rows_per_second", 0.0))}
    if result.error:
        out["error"] = result.error
    if result.output is not None and result.output.is_file():
        with result.output.open(newline="", encoding="utf-8") as f:
            out["output_rows"] = sum(1 for _ in csv.DictReader(f))
    return out


def parity(ref: str, texts: list[str], batch: int, max_length: int) -> dict:
    """The product's GPU path (autocast) against the CPU in fp32 on the same texts."""
    import numpy as np
    import torch

    from core.models import sources as models
    from core.models.infer import predict_proba

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device: nothing to compare the CPU with"}
    source = models.resolve(ref)
    gpu_model, tokenizer, _ = models.load(source)  # the one the jobs used, on cuda
    cpu_model, _, _ = models.load(source, "cpu")  # loaded again from the cache folder, fp32
    gpu = predict_proba(gpu_model, tokenizer, texts, batch_size=batch, max_length=max_length)
    cpu = predict_proba(cpu_model, tokenizer, texts, batch_size=batch, max_length=max_length, device="cpu")
    top2 = np.sort(cpu, axis=1)[:, -2:]
    return {"rows": len(texts), "max_abs_prob_diff": float(np.abs(gpu - cpu).max()),
            "mean_abs_prob_diff": float(np.abs(gpu - cpu).mean()),
            "argmax_agreement": float((gpu.argmax(1) == cpu.argmax(1)).mean()),
            "cpu_top2_margin_median": float(statistics.median((top2[:, 1] - top2[:, 0]).tolist())),
            "gpu_autocast": "bf16" if torch.cuda.is_bf16_supported() else "fp16"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--rows", type=int, help="transcripts to classify (default 20000 on a GPU, 500 on CPU)")
    parser.add_argument("--topic-rows", type=int, help="transcripts to tag (default 2000 on a GPU, 100 on CPU)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--json", help="also write the figures to this file (rewritten after every stage)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store, model and files")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tuneboard-score-"))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)  # the base shape leaves about 2 GB of model copies


def run(args: argparse.Namespace, work: Path) -> None:
    os.environ["TUNEBOARD_HOME"] = str(work / "home")
    os.environ["TUNEBOARD_DATA_ROOTS"] = os.environ["TUNEBOARD_MODEL_ROOTS"] = str(work)  # the bench's own files
    os.environ["TUNEBOARD_USER"] = "bench"
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(variable, None)
    import mlflow
    import torch
    import transformers

    from core.demo import TOPICS, build_model
    from core.scoring.job import ScoreSpec

    cuda = torch.cuda.is_available()
    rows = args.rows or (20000 if cuda else 500)
    topic_rows = min(args.topic_rows or (2000 if cuda else 100), rows)
    topics = tuple(sorted(TOPICS))  # the demo's 10
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    figures: dict = {"device": device, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "transformers": transformers.__version__,
                     "mlflow": mlflow.__version__, "shape": args.shape, "rows": rows, "topic_rows": topic_rows,
                     "topics": len(topics), "batch": args.batch, "max_length": args.max_length}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    print(f"shape {args.shape} on {device}; {rows} transcripts, {topic_rows} x {len(topics)} topics, "
          f"batch {args.batch}; store {work}", flush=True)
    save()
    started = time.perf_counter()
    folder = build_model(work / f"model-{args.shape}", **SHAPES[args.shape])
    ref, registered = register_nli(folder)
    registered["build_and_register_s"] = round(time.perf_counter() - started, 1)
    figures["model"] = {"ref": ref, **registered}
    calls, topic_calls, texts = write_transcripts(work, rows, topic_rows)
    figures["transcripts"] = token_mix(folder, texts, args.max_length)
    print(f"  model {ref} ({registered['parameters_m']} M parameters), registered in "
          f"{registered['build_and_register_s']} s; tokens per transcript {figures['transcripts']}", flush=True)
    save()

    classify = timed_score(ScoreSpec(model=ref, input_path=str(calls), output_path=str(work / "out" / "scored.csv"),
                                     mode="classify", batch_size=args.batch, max_length=args.max_length))
    figures["classify"] = classify
    print(f"  classify: {classify['status']}, {classify['rows']} rows in {classify['wall_s']} s end to end "
          f"({classify['rows_per_s_end_to_end']} rows/s); inference {classify['inference_rows_per_s']} rows/s; "
          f"phases {classify['phases']}", flush=True)
    save()

    tagged = timed_score(ScoreSpec(model=ref, input_path=str(topic_calls), output_path=str(work / "out" / "tagged.csv"),
                                   mode="topics", topics=topics, batch_size=args.batch, max_length=args.max_length))
    pairs = tagged["rows"] * len(topics)
    tagged["inference_pairs_per_s"] = rate(pairs / tagged["inference_s"]) if tagged["inference_s"] else 0.0
    figures["topics_mode"] = tagged
    print(f"  topics:   {tagged['status']}, {tagged['rows']} transcripts x {len(topics)} topics in "
          f"{tagged['wall_s']} s end to end; inference {tagged['inference_rows_per_s']} transcripts/s = "
          f"{tagged['inference_pairs_per_s']} pairs/s", flush=True)
    save()

    try:
        figures["parity"] = parity(ref, texts[:PARITY_ROWS], args.batch, args.max_length)
    except Exception as exc:  # noqa: BLE001 - the timings above are already measured: keep them, say why
        figures["parity"] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    if cuda:
        figures["gpu_memory_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(f"  parity (GPU autocast vs CPU fp32, first {PARITY_ROWS}): {figures['parity']}", flush=True)
    statuses = {classify["status"], tagged["status"]}
    figures["mlflow_run_status"] = statuses.pop() if len(statuses) == 1 else "MIXED"
    save()

    print(json.dumps({k: figures[k] for k in ("device", "shape", "rows", "batch", "mlflow_run_status")}))
    print(f"classify {classify['rows_per_s_end_to_end']} rows/s end to end, {classify['inference_rows_per_s']} "
          f"inference; topics {tagged['inference_rows_per_s']} transcripts/s ({tagged['inference_pairs_per_s']} "
          f"pairs/s); runs {figures['mlflow_run_status']}")
    if figures["mlflow_run_status"] != "FINISHED":
        for stage in (classify, tagged):
            if stage.get("error"):
                print(f"  failed: {stage['error']}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
