"""A kind of job the tests define themselves: the queue, the worker and a job's process run it knowing nothing
of it but what ``TUNEBOARD_JOB_KINDS=tests.echo_kind`` lists (issue 18: the queue names no kind of job).

An echo job writes its message as an artifact, after ``seconds`` of work in ``steps`` steps, reporting its
progress like any job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from core.jobkind import JobContext, Outcome, Planned
from core.progress import Progress
from core.settings import Settings


@dataclass(frozen=True)
class EchoSpec:
    message: str
    seconds: float = 0.0
    steps: int = 4
    experiment: str = "Echo jobs"
    kind: str = field(default="echo", init=False)

    @property
    def run_name(self) -> str:
        return f"echo {self.message}"

    def params(self) -> dict[str, Any]:
        return {"message": self.message, "seconds": self.seconds}

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class EchoKind:
    names = ("echo",)
    labels: ClassVar[dict[str, str]] = {"echo": "say it back"}

    def accepts(self, request: object) -> bool:
        return isinstance(request, EchoSpec)

    def plan(self, request: EchoSpec, settings: Settings, confined: bool) -> list[Planned]:
        if not request.message:
            raise ValueError("an echo needs a message")
        return [Planned(request, request.experiment, {"run_type": "echo", "mlflow.runName": request.run_name})]

    def spec_from_json(self, text: str) -> EchoSpec:
        data = json.loads(text)
        data.pop("kind")
        return EchoSpec(**data)

    def retry_tags(self, spec: EchoSpec, tags: Mapping[str, str]) -> dict[str, str]:
        return {"run_type": "echo", "mlflow.runName": spec.run_name}

    def run(self, spec: EchoSpec, context: JobContext) -> Outcome:
        import mlflow

        mlflow.start_run(run_id=context.run_id)
        context.stage("echoing")
        for step in range(1, spec.steps + 1):
            time.sleep(spec.seconds / spec.steps)  # the job's own work
            context.report(Progress(stage="echoing", step=step, total_steps=spec.steps, updated_at=time.time()))
        mlflow.log_text(spec.message, "echo.txt")
        context.before_end("FINISHED")
        mlflow.end_run("FINISHED")
        return Outcome("FINISHED", detail=f"said {spec.message!r}")

    def gpu_bytes(self, spec: EchoSpec, memory_peak: Callable[[str], tuple[float, int] | None]) -> int | None:
        return None


KIND = EchoKind()
