"""The rough edges of a first day: --version, usage errors, export names, busy CPUs, progress in logs,
framed previews and the messages that tell a user what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
import torch

from gsdi.cli import main
from gsdi.errors import GsdiError


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_version_prints_the_package_version():
    from gsdi import __version__

    proc = subprocess.run([sys.executable, "-m", "gsdi.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gsdi {__version__}", proc.stdout + proc.stderr


@pytest.mark.parametrize("argv", [["--nope"], ["generate", "--stepz", "3"], ["export"]])
def test_usage_errors_are_usage_errors_not_internal_errors(argv, capsys):
    code, out, err = run_main(argv, capsys)
    assert code == 2 and "internal error" not in err and "Usage:" in err, err


def small_scene(n: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    quats = torch.randn(n, 4, generator=g)
    return {"means": 0.3 * torch.randn(n, 3, generator=g), "scales": torch.full((n, 3), -3.5),
            "quats": quats / quats.norm(dim=-1, keepdim=True), "opacities": torch.full((n,), 2.0),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 0, 3)}


def test_export_without_out_never_targets_the_input(tmp_path, capsys):
    from gsdi.formats import read_ply, write_ply

    scene = tmp_path / "scene.ply"
    write_ply(scene, small_scene())
    main(["export", str(scene), "--format", "ply"])
    main(["export", str(scene), "--format", "splat"])
    main(["export", str(scene), "--format", "ply", "--sh-degree", "3"])
    out = capsys.readouterr().out
    assert "scene.export.ply" in out and "scene.splat" in out and "scene.sh3.ply" in out, out
    assert read_ply(tmp_path / "scene.export.ply")["means"].shape == (64, 3)
    assert read_ply(tmp_path / "scene.sh3.ply")["shN"].shape == (64, 15, 3)
    code, _, err = run_main(["export", str(scene), "--format", "splat", "--sh-degree", "3"], capsys)
    assert code == 2 and "--sh-degree applies to --format ply" in err


def test_cpu_threads_follow_the_free_cores(monkeypatch):
    import gsdi.device
    from gsdi.device import choose_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(gsdi.device, "busy_cores", lambda: 1.6)
    threads, note = choose_cpu_threads()
    assert threads == 1 and "OMP_NUM_THREADS" in note and "--set cpu_threads" in note
    monkeypatch.setattr(gsdi.device, "busy_cores", lambda: 0.2)
    assert choose_cpu_threads() == (2, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_cpu_threads() == (3, None)


def test_busy_cores_reads_the_non_idle_share_of_the_window(monkeypatch):
    """From two /proc/stat samples: the share of CPU time that was not idle (idle + iowait) over the
    window, times the cores. Given samples, so that the machine's own load cannot change the answer."""
    from gsdi.device import busy_cores

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # cpu  user nice system idle iowait irq softirq
    lines = iter(["cpu  100 0 50 800 50 0 0 0", "cpu  175 0 75 875 75 0 0 0"])  # +100 busy, +100 idle of 200
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == pytest.approx(1.0)
    lines = iter(["cpu  100 0 50 800 50 0 0 0", "cpu  100 0 50 1000 50 0 0 0"])  # all idle
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == 0.0
    lines = iter(["cpu  100 0 50 800 50 0 0 0"] * 2)  # no ticks passed
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == 0.0
    real = busy_cores(window=0.05)  # this machine's: whatever it is, a number of cores
    assert 0.0 <= real <= 2.0 + 1e-6


def test_a_cpu_run_records_the_threads_it_used(tmp_path):
    import json

    import gsdi

    out, before = tmp_path / "run", torch.get_num_threads()
    try:
        gsdi.generate("a red castle", out=out, steps=2, device="cpu", progress=False, turntable_frames=0, cpu_threads=1)
        assert json.loads((out / "metrics.json").read_text())["cpu_threads"] == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


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


def test_previews_are_framed_to_the_scene():
    """A small object off the origin fills most of the tile in every view."""
    from gsdi.media import render_orbit

    scene = small_scene(400)
    scene["means"] = 0.05 * scene["means"] + torch.tensor([0.3, 0.1, -0.2])  # ~0.1 across, off centre
    views = render_orbit(scene, 4, 64, backend="torch")
    for view in views:
        covered = (view < 0.97).any(-1)
        rows, cols = covered.any(1).nonzero(), covered.any(0).nonzero()
        assert rows.numel() and cols.numel()
        extent = max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) + 1
        assert extent >= 0.6 * 64, extent
        centre = torch.stack([rows.float().mean(), cols.float().mean()])
        assert (centre - 31.5).abs().max() < 10, centre


def test_unknown_word_error_lists_words_only():
    from gsdi.world import parse

    with pytest.raises(GsdiError) as info:
        parse("a red dragon")
    message = str(info.value)
    words = message.split("its words are: ")[1].split(" (")[0].split()
    assert "," not in words and "castle" in words and "red" in words and "view" in words


def test_missing_extras_name_the_readme_install(monkeypatch):
    import builtins

    from gsdi import mesh

    real_import = builtins.__import__

    def no_open3d(name, *args, **kwargs):
        if name == "open3d":
            raise ImportError("No module named 'open3d'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_open3d)
    with pytest.raises(GsdiError) as info:
        mesh.clean_splats(small_scene())
    assert "--clean" in str(info.value) and 'pip install -e ".[mesh]"' in str(info.value)


def test_turntable_without_ffmpeg_says_it_wrote_a_gif(tmp_path, capsys, monkeypatch):
    from gsdi import media
    from gsdi.formats import write_ply

    write_ply(tmp_path / "scene.ply", small_scene())
    monkeypatch.setattr(media, "has_mp4", lambda: False)
    main(["render", str(tmp_path / "scene.ply"), "--turntable", str(tmp_path / "tt.mp4"), "--frames", "2", "--size", "32",
          "--device", "cpu"])
    captured = capsys.readouterr()
    assert (tmp_path / "tt.gif").is_file() and "tt.gif" in captured.out
    assert "video extra" in captured.err


def test_offline_hub_advice_names_a_command_that_exists(monkeypatch):
    from gsdi.priors import stable_diffusion

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GsdiError) as info:
        stable_diffusion.hub_source("someone/not-cached-model")
    assert "hf download someone/not-cached-model --local-dir" in str(info.value)
    assert "huggingface-cli" not in str(info.value)
