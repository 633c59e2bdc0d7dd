"""Progress on long work: the bar at 80 columns and plain lines in logs."""

from __future__ import annotations

from io import StringIO


def test_progress_prints_plain_lines_when_not_a_terminal():
    from rich.console import Console

    from gsdi.progress import StepProgress

    text = StringIO()
    console = Console(file=text, width=80, force_terminal=False, color_system=None)
    with StepProgress(100, console=console) as bar:
        for step in range(1, 101):
            bar.update(step, {"t": 900 - step, "loss": 0.5, "gaussians": 2048} if step % 10 == 0 else None)
    lines = [line for line in text.getvalue().splitlines() if line.startswith("step ")]
    assert len(lines) == 20, lines  # every 5% of the run
    assert lines[0].startswith("step 5/100 (5%)") and lines[-1].startswith("step 100/100 (100%)")
    assert "loss=0.5" in lines[-1] and "N=2048" in lines[-1] and "eta" in lines[-1]


def test_progress_bar_fits_80_columns_and_shows_rate_and_eta_from_the_first_step():
    from rich.console import Console

    from gsdi.progress import StepProgress

    console = Console(file=StringIO(), width=80, force_terminal=False, color_system=None)
    with StepProgress(1500, console=console) as bar:
        bar.start -= 2.0  # two seconds spent on the first step
        bar.update(1)
        text = StringIO()
        Console(file=text, width=80, color_system=None).print(bar.progress.get_renderable())
    line = text.getvalue().rstrip("\n")
    assert "1/1500" in line and "s/it" in line and "eta 49:58" in line, line
    assert all(len(row) <= 80 for row in line.splitlines())
    with StepProgress(1500, console=console) as bar:
        bar.update(1500, {"t": 250, "loss": 0.0123456, "gaussians": 100000})
        text = StringIO()
        Console(file=text, width=80, color_system=None).print(bar.progress.get_renderable())
    assert "1500/1500" in text.getvalue() and "N=100000" in text.getvalue() and "t=250" in text.getvalue()


def test_a_note_is_one_line_in_a_log_however_long():
    from rich.console import Console

    from gsdi.progress import StepProgress

    text = StringIO()
    note = "CPU: other work keeps 1.0 of 2 cores busy: using 1 thread (choose with OMP_NUM_THREADS=N or --set cpu_threads=N)"
    with StepProgress(10, console=Console(file=text, width=80, force_terminal=False, color_system=None)) as bar:
        bar.note(note)
    assert note + "\n" in text.getvalue(), text.getvalue()


def test_the_eta_follows_steps_that_slow_down(monkeypatch):
    """0.1 s a step for the first half, then 0.5 s: the ETA soon counts 0.5 s for each step left."""
    from rich.console import Console

    import gsdi.progress
    from gsdi.progress import StepProgress

    now = [0.0]
    monkeypatch.setattr(gsdi.progress.time, "perf_counter", lambda: now[0])
    console = Console(file=StringIO(), width=80, force_terminal=True, color_system=None)
    with StepProgress(400, console=console) as bar:
        for step in range(1, 231):
            now[0] += 0.1 if step <= 200 else 0.5
            bar.update(step)
        fields = bar.progress.tasks[0].fields
    assert fields["eta"] == clock_of(170 * 0.5) and fields["rate"] == "2.0 it/s", fields


def clock_of(seconds: float) -> str:
    from gsdi.progress import clock

    return clock(seconds)
