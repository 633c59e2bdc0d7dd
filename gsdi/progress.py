"""The progress of a generation: a bar that fits 80 columns on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from collections import deque
from typing import Any


class StepProgress:
    """A progress bar that fits 80 columns: steps, bar, rate, ETA (from the first step on), and t, loss
    and Gaussian count of the last logged step; silent when disabled. When the output is a file or a
    pipe rather than a terminal, a plain line every LINE_EVERY of the run instead. `console` is for tests.

    Rate and ETA come from the last RECENT share of the run's steps, not from its start: steps slow down
    as densification grows the Gaussians, and an average from the start promised too little time."""

    LINE_EVERY = 0.05
    RECENT = 0.05

    def __init__(self, total: int, enabled: bool = True, start: int = 0, console=None):
        self.total, self.enabled, self.progress, self.task, self.first = total, enabled, None, None, start
        self.console = console
        self.next_line = start + max(1, round(total * self.LINE_EVERY))
        self.last = {"t": "-", "loss": "-", "gaussians": "-"}
        self.recent: deque[tuple[float, int]] = deque()  # (time, step) of the updates in the recent window

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("{task.completed}/{task.total}"), BarColumn(bar_width=16),
                TextColumn("{task.fields[rate]}"), TextColumn("eta {task.fields[eta]}"),
                TextColumn("t={task.fields[t]} loss={task.fields[loss]} N={task.fields[gaussians]}"),
                console=self.console,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("generate", total=self.total, completed=self.first,
                                               t="-", loss="-", gaussians="-", rate="-", eta="-")
            self.start = time.perf_counter()
        return self

    def note(self, text: str | None) -> None:
        """A line above the bar (nothing when disabled or `text` is None)."""
        if self.progress is not None and text:
            self.progress.console.print(text, soft_wrap=True)  # one line in a log, however long

    def update(self, step: int, record: "dict[str, Any] | None" = None) -> None:
        """After every step; `record` (t, loss, gaussians) when the step was logged."""
        if self.progress is None:
            return
        now = time.perf_counter()
        window = max(10, round(self.total * self.RECENT))
        while self.recent and self.recent[0][1] < step - window:
            self.recent.popleft()
        since, first = self.recent[0] if self.recent else (self.start, self.first)
        self.recent.append((now, step))
        done, elapsed = step - first, now - since
        fields = {"rate": rate_text(done, elapsed), "eta": clock(elapsed / max(done, 1) * (self.total - step))}
        if record is not None:
            self.last = {"t": record["t"], "loss": f"{record['loss']:.3g}", "gaussians": record["gaussians"]}
        fields.update(self.last)
        self.progress.update(self.task, completed=step, **fields)
        if not self.progress.console.is_terminal and (step >= self.next_line or step == self.total):
            self.next_line = step + max(1, round(self.total * self.LINE_EVERY))
            self.progress.console.print(
                f"step {step}/{self.total} ({100 * step / self.total:.0f}%) {fields['rate']} eta {fields['eta']} "
                f"t={self.last['t']} loss={self.last['loss']} N={self.last['gaussians']}", highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def rate_text(steps: int, seconds: float) -> str:
    """'12.3 it/s' or, below one step a second, '1.9 s/it'."""
    if steps <= 0 or seconds <= 0:
        return "-"
    per_second = steps / seconds
    return f"{per_second:.1f} it/s" if per_second >= 1 else f"{1 / per_second:.1f} s/it"


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
