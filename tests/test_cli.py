"""The command as users run it: end to end on CPU with a tiny prior, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import run_main, small_scene

from gsdi.cli import main
from gsdi.config import GenerateConfig
from gsdi.formats import read_ply, write_ply


@pytest.mark.slow
def test_generate_end_to_end_in_a_subprocess(tmp_path, tiny_sd):
    out = tmp_path / "castle"
    proc = subprocess.run(
        ["gsdi", "generate", "a castle", "--prior", str(tiny_sd), "--steps", "6", "--preset", "preview",
         "--out", str(out), "--seed", "3", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    params = read_ply(out / "scene.ply")
    config = GenerateConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config.prompt == "a castle" and config.steps == 6 and config.seed == 3 and config.preset == "preview"
    assert config.guidance.perp_neg  # on for Stable Diffusion unless --no-perp-neg
    assert params["means"].shape[0] == config.scene.num_points
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["renderer"] == "torch" and metrics["steps"] == 6 and metrics["history"][-1]["step"] == 6
    from PIL import Image

    assert Image.open(out / "preview.png").size == (4 * 256, 2 * 256)  # 256 px a view whatever the prior renders at


def test_python_api_is_deterministic_and_methods_differ(tmp_path, tiny_sd):
    import gsdi

    common = dict(prior=str(tiny_sd), steps=4, preset="preview", progress=False, device="cpu")
    a = gsdi.generate("a red car", out=tmp_path / "a", **common)
    b = gsdi.generate("a red car", out=tmp_path / "b", **common)
    c = gsdi.generate("a red car", out=tmp_path / "c", **common, **{"guidance.method": "sds"})
    pa, pb, pc = (read_ply(r.ply) for r in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["means"], pc["means"])
    assert a.history and a.history[-1]["step"] == 4


@pytest.mark.parametrize("args, message", [
    (["generate", ""], "prompt is empty"),
    (["generate", "   "], "prompt is empty"),
    (["generate", "a castle", "--preset", "ultra"], "unknown preset 'ultra'"),
    (["generate", "a castle", "--steps", "0"], "--steps must be at least 1"),
    (["generate", "a castle", "--guidance", "magic"], "--guidance must be auto, sdi, sds or ism"),
    (["generate", "a castle", "--device", "cuda", "--renderer", "torch"], None),  # cuda only errors without a GPU
    (["generate", "a castle", "--renderer", "gsplat", "--device", "cpu"], "gsplat renderer needs a CUDA device"),
    (["generate", "a castle", "--prior", "/no/such/folder"], "does not exist"),
])
def test_user_mistakes_exit_2_with_one_line(args, message, capsys, tmp_path, tiny_sd):
    if message is None:
        if torch.cuda.is_available():
            return
        message = "no CUDA GPU"
    if "--prior" not in args:
        args = [*args, "--prior", str(tiny_sd)]
    code, out, err = run_main([*args, "--out", str(tmp_path / "o"), "-q"], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err + out


def test_unwritable_or_taken_out_folder(capsys, tmp_path, tiny_sd):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, _, err = run_main(["generate", "a castle", "--prior", str(tiny_sd), "--out", str(blocker / "sub"), "-q"], capsys)
    assert code == 2 and "cannot write to --out" in err and blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run_main(["generate", "a castle", "--prior", str(tiny_sd), "--out", str(locked / "o"), "-q"], capsys)
        assert code == 2 and "cannot write" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "scene.ply").write_text("earlier work")
    code, _, err = run_main(["generate", "a castle", "--prior", str(tiny_sd), "--out", str(taken), "-q"], capsys)
    assert code == 2 and "--force" in err and (taken / "scene.ply").read_text() == "earlier work"


def test_help_and_import_are_cheap():
    code = ("import sys, gsdi, gsdi.cli; heavy = {'torch', 'diffusers', 'transformers', 'gsplat'} & set(sys.modules);"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    proc = subprocess.run(["gsdi", "generate", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--guidance" in proc.stdout and "--preset" in proc.stdout


def test_a_failed_load_leaves_out_reusable(capsys, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_main(["generate", "a castle", "--prior", str(tmp_path), "--out", str(out), "-q"], capsys)
    assert code == 2 and "could not load Stable Diffusion weights" in err
    assert not out.exists()  # the prior loads before anything is written: nothing blocks the next try


def test_version_prints_the_package_version():
    from gsdi import __version__

    proc = subprocess.run([sys.executable, "-m", "gsdi.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gsdi {__version__}", proc.stdout + proc.stderr


@pytest.mark.parametrize("argv", [["--nope"], ["generate", "--stepz", "3"], ["export"]])
def test_usage_errors_are_usage_errors_not_internal_errors(argv, capsys):
    code, out, err = run_main(argv, capsys)
    assert code == 2 and "internal error" not in err and "Usage:" in err, err


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


@pytest.mark.parametrize("command", [[], ["generate"], ["export"], ["render"], ["batch"], ["info"], ["view"]])
def test_help_reads_at_80_columns(command):
    proc = subprocess.run([sys.executable, "-m", "gsdi.cli", *command, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", "TERM": "dumb"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines)
    body = "\n".join(line for line in lines if not line.startswith("Usage:"))
    assert "…" not in body and "..." not in body, body  # nothing cut short


def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys):
    code, _, err = run_main(["generate", "--resume", str(tmp_path), "--steps", "5", "--seed", "2", "--no-turntable"], capsys)
    assert code == 2 and "--steps, --seed, --no-turntable" in err and "checkpoint's own settings" in err, err


def test_info_reads_an_output_folders_scene(tmp_path, capsys):
    write_ply(tmp_path / "scene.ply", small_scene())
    main(["info", str(tmp_path)])
    assert "64" in capsys.readouterr().out


def test_output_folders_leave_out_the_view_phrase_and_files_are_readable_by_others(tmp_path):
    import stat

    import gsdi
    from gsdi.outputs import slug

    assert slug("a blue car, front view") == "a-blue-car"
    threads = torch.get_num_threads()
    try:
        result = gsdi.generate("a red castle.", out=tmp_path / "run", steps=2, device="cpu", progress=False,
                               turntable_frames=0, cpu_threads=1)
    finally:
        torch.set_num_threads(threads)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.out.iterdir()}
    assert modes["checkpoint.safetensors"] == modes["scene.ply"], modes
