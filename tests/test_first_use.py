"""What a new user meets first: documented prompt forms, clean failures, the progress bar, --help."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from io import StringIO

import pytest

from gsdi.cli import main


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.mark.parametrize("prompt", ["a red castle, front view", "a blue car, back view", "a duck"])
def test_documented_prompt_forms_generate(prompt, tmp_path):
    """A prompt that names a view works: the view phrase is replaced per camera."""
    import gsdi
    from gsdi.prompts import view_prompts

    result = gsdi.generate(prompt, out=tmp_path / "out", preset="preview", steps=2, device="cpu", progress=False,
                           turntable_frames=0)
    assert result.ply.is_file()
    assert view_prompts(prompt, ["side", "back"])[0].endswith(", side view")
    assert view_prompts(prompt, ["side"])[0].count("view") == 1


@pytest.mark.parametrize("argv, words", [
    (["generate", "a dragon"], "does not know 'dragon'"),
    (["generate", "a red castle, left view"], "view"),
    (["generate", "a castle", "--prior", "/nonexistent/sd"], "does not exist"),
])
def test_refused_runs_leave_no_folder(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_main([*argv, "--out", str(out), "--device", "cpu"], capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_run_failing_at_its_first_step_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """A new folder is removed; a --force folder keeps what it held before; the same command can rerun."""
    import gsdi
    from gsdi.errors import GsdiError
    from gsdi.step import Generation

    def broken(self):
        raise GsdiError("broken on purpose")

    monkeypatch.setattr(Generation, "advance", broken)
    common = dict(preset="preview", steps=2, device="cpu", progress=False, turntable_frames=0)
    with pytest.raises(GsdiError):
        gsdi.generate("a castle", out=tmp_path / "new", **common)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(GsdiError):
        gsdi.generate("a castle", out=kept, force=True, **common)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    monkeypatch.undo()
    assert gsdi.generate("a castle", out=tmp_path / "new", **common).ply.is_file()  # the retry is not refused


def test_offline_stable_diffusion_fails_fast_with_one_line(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "gsdi.cli", "generate", "a castle", "--prior",
                               "stabilityai/stable-diffusion-2-1-base", "--out", str(tmp_path / "sd"), "--device", "cpu"],
                              capture_output=True, text=True, timeout=60, env={**env, **extra})
        elapsed = time.perf_counter() - start
        assert proc.returncode == 2, proc.stderr
        # a download that retries takes minutes; the bound leaves a slow machine's imports room
        assert elapsed < 45, elapsed
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--prior FOLDER" in lines[0] and "config.json" not in lines[0], proc.stderr
        assert not (tmp_path / "sd").exists()


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


@pytest.mark.parametrize("command", [[], ["generate"], ["export"], ["render"], ["batch"], ["info"], ["view"]])
def test_help_reads_at_80_columns(command):
    proc = subprocess.run([sys.executable, "-m", "gsdi.cli", *command, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", "TERM": "dumb"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines)
    body = "\n".join(line for line in lines if not line.startswith("Usage:"))
    assert "…" not in body and "..." not in body, body  # nothing cut short


def test_render_grid_defaults_to_the_preview_views(tmp_path, capsys):
    import torch

    from gsdi.formats import write_ply

    n = 50
    write_ply(tmp_path / "s.ply", {"means": torch.randn(n, 3) * 0.2, "scales": torch.full((n, 3), -3.0),
                                   "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), "opacities": torch.zeros(n),
                                   "sh0": torch.zeros(n, 1, 3), "shN": torch.zeros(n, 0, 3)})
    main(["render", str(tmp_path / "s.ply"), "--grid", str(tmp_path / "g.png"), "--size", "32"])
    assert "8 views" in capsys.readouterr().out


def test_a_missing_system_library_for_open3d_is_named(monkeypatch):
    import builtins

    from gsdi.errors import GsdiError
    from gsdi.mesh import open3d

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "open3d":
            raise ImportError("libusb-1.0.so.0: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(GsdiError, match="system library libusb-1.0.so.0 is missing; install libusb-1.0-0"):
        open3d()


def test_a_cpu_run_announces_the_measured_duration_of_its_preset():
    from gsdi.config import make_config
    from gsdi.presets import CPU_SECONDS, PRESETS
    from gsdi.run import expected_cpu_time

    text = expected_cpu_time(make_config("a red castle", "long"))
    assert f"about {CPU_SECONDS[('long', 'sds')] / 60:.0f} min on 2 cores" in text and len(text) <= 80, text
    half = expected_cpu_time(make_config("a red castle", "preview", steps=PRESETS["preview"]["steps"] // 2))
    assert f"about {CPU_SECONDS[('preview', 'sds')] / 2:.0f} s" in half, half
    assert expected_cpu_time(make_config("a castle", "default", prior="some/sd-model")) is None
