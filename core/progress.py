"""Training progress, computed once and shown wherever someone is watching.

:class:`TrainingProgress` follows the HF Trainer through its callbacks: stage, step of total, epoch, the last
training loss, samples per second and ETA, as a :class:`Progress`. The job queue writes it into a
run's ``job_progress`` tag (``core.train_job``); :class:`ProgressBar` shows it to a person: one bar per run
redrawn in place on a terminal, or, where output is not a terminal (a CI log, a notebook, a job's log file),
one line each time another tenth of the steps is done, so a log never fills with carriage returns.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Progress:
    """What a running job last reported: stage, step of total, epoch, loss, speed and ETA.

    ``unit`` says what a step counts: ``step`` (a training step, of so many samples) or ``row`` (a file's row,
    as a scoring job counts them); pages and the CLI word the numbers by it.
    """

    stage: str = "queued"
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None
    updated_at: float = 0.0
    unit: str = "step"

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Progress | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None


REDRAW_SECONDS = 0.2  # a terminal bar is redrawn at most this often: fast GPU steps would flood it
BAR_WIDTH = 20


class TrainingProgress:
    """Where one run stands; :meth:`callback` keeps it up to date from inside ``Trainer.train``."""

    def __init__(self) -> None:
        self.stage = "starting"
        self.loss: float | None = None
        self._t0: float | None = None
        self._step0 = 0
        self._numbers: dict = {}  # step, total, epoch, speed and ETA, kept across stage changes

    def callback(self, on_change: Callable[[str], None] | None = None):
        """A TrainerCallback; ``on_change`` is called with "begin", "step" or "end" once the numbers are updated."""
        from transformers import TrainerCallback

        progress, notify = self, on_change or (lambda event: None)

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                progress._t0, progress._step0 = time.monotonic(), state.global_step
                progress.observe(state, args)
                notify("begin")

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    progress.loss = float(logs["loss"])

            def on_step_end(self, args, state, control, **kwargs):
                progress.observe(state, args)
                notify("step")

            def on_train_end(self, args, state, control, **kwargs):
                progress.observe(state, args)
                notify("end")

        return _Callback()

    def observe(self, state, args) -> None:
        """Take step, total and epoch from the Trainer's state; speed and ETA from the steps since training began."""
        numbers = self._numbers
        numbers.update(step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0))
        if self._t0 is not None and state.global_step > self._step0:
            steps_per_s = (state.global_step - self._step0) / max(1e-9, time.monotonic() - self._t0)
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
            numbers["samples_per_second"] = round(steps_per_s * per_step, 2)
            numbers["eta_seconds"] = round(max(0, state.max_steps - state.global_step) / steps_per_s, 1)

    def snapshot(self) -> Progress:
        fields = {**self._numbers, "stage": self.stage, "loss": self.loss, "updated_at": time.time()}
        if self.stage in ("finished", "failed"):
            fields["eta_seconds"] = 0.0
        return Progress(**fields)


def duration_text(seconds: float) -> str:
    """12 s, 3 min 05 s, 2 h 04 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(p: Progress, *, detail: bool = True) -> str:
    """" 45% step 45/100 epoch 2.25 loss 0.6733 120 samples/s ETA 12 s": what is known so far."""
    rows = p.unit == "row"  # a scoring job (core.scoring.job) counts a file's rows, not training steps
    text = f"{p.fraction:4.0%} {p.unit} {p.step}/{p.total_steps}" if p.total_steps else ""
    if detail and p.total_steps and not rows:
        text += f" epoch {p.epoch:.2f}"
    if p.loss is not None:
        text += f" loss {p.loss:.4f}"
    if detail and p.samples_per_second:
        text += f" {p.samples_per_second:.0f} {'rows' if rows else 'samples'}/s"
    if p.eta_seconds is not None:
        text += f" ETA {duration_text(p.eta_seconds)}"
    return text.strip()


class ProgressBar:
    """One run's progress for a person: a bar redrawn in place on a terminal, lines elsewhere.

    ``stage`` reports a step of the run ("loading model"), ``update`` the Trainer's progress and ``close``
    ends with the run's result. Off a terminal a line is written per stage and per tenth of the steps.
    """

    def __init__(self, label: str = "", stream: TextIO | None = None, *, tty: bool | None = None):
        self.label = label
        self.stream = stream or sys.stdout
        self.tty = _isatty(self.stream) if tty is None else tty
        self.stage_name = "starting"
        self.progress: Progress | None = None
        self._drawn_at = 0.0
        self._tenth = 0
        self._open = False  # a bar line is on screen without its newline

    def stage(self, stage: str) -> None:
        self.stage_name = stage
        if self.tty:
            self._draw()
        else:
            self._line(stage)

    def update(self, progress: Progress) -> None:
        self.progress, self.stage_name = progress, progress.stage
        if self.tty:
            now = time.monotonic()
            if now - self._drawn_at >= REDRAW_SECONDS or progress.step >= progress.total_steps:
                self._drawn_at = now
                self._draw()
            return
        tenth = int(progress.fraction * 10 + 1e-9)
        if progress.total_steps and tenth > self._tenth:
            self._tenth = tenth
            self._line(f"{self.stage_name} {progress_text(progress)}")

    def close(self, text: str) -> None:
        """Replace the bar with ``text`` (the run's result) and end the line."""
        if self.tty and self._open:
            self.stream.write("\r\x1b[K")
        self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write((f"{self.label}: {text}" if self.label else text) + "\n")
        self.stream.flush()

    def _draw(self) -> None:
        """Redraw the line, fitted to the terminal (a wrapped line could not be redrawn in place): the numbers are
        kept whole; the run's name is shortened in the middle, then the epoch and speed, then the bar, dropped."""
        width = max(40, shutil.get_terminal_size((120, 24)).columns - 1)
        p, tails = self.progress, [""]
        if p is not None and p.total_steps and self.stage_name in ("training", "scoring"):
            filled = int(p.fraction * BAR_WIDTH)
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
            tails = [bar + progress_text(p), bar + progress_text(p, detail=False), progress_text(p, detail=False)]
        for tail in tails:
            rest = f"{self.stage_name} {tail}".rstrip()
            room = width - len(rest) - 2  # ": " after the label
            if room >= min(len(self.label), 16):
                break
        line = f"{_shorten(self.label, room)}: {rest}" if self.label and room >= 8 else rest
        self.stream.write("\r\x1b[K" + line[:width])
        self.stream.flush()
        self._open = True


def _shorten(text: str, room: int) -> str:
    """``text`` cut in the middle to ``room`` characters: a run name's model and its param set both stay."""
    if len(text) <= room:
        return text
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head):]


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: behave as a log
        return False
