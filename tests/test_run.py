"""A whole run (gsdi.run): documented prompt forms, failures that leave the folder as it was, the
announced CPU time, and the golden scene (a fixed-seed CPU generation and its resume byte for byte on
this machine, and its renders against the stored golden scene on any processor)."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch


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


def test_a_cpu_run_announces_the_measured_duration_of_its_preset():
    from gsdi.config import make_config
    from gsdi.presets import CPU_SECONDS, PRESETS
    from gsdi.run import expected_cpu_time

    text = expected_cpu_time(make_config("a red castle", "long", prior="embedded"))
    assert f"about {CPU_SECONDS[('embedded', 'long', 'sds')] / 60:.0f} min on a 2-core AMD EPYC" in text and len(text) <= 80, text
    half = expected_cpu_time(make_config("a red castle", "preview", prior="embedded", steps=PRESETS["preview"]["steps"] // 2))
    assert f"about {CPU_SECONDS[('embedded', 'preview', 'sds')] / 2:.0f} s" in half, half
    # A three-stage preset was measured over all its stages: what --prior world runs announces its own time.
    refined = expected_cpu_time(make_config("a blue car with yellow stripes", prior="world"))
    assert f"refined (1200 steps) took about {CPU_SECONDS[('world', 'refined', 'sds')] / 60:.0f} min" in refined, refined
    assert expected_cpu_time(make_config("a castle", "default", prior="some/sd-model")) is None


# GOLDEN_SCENE is scene.ply of GOLDEN_RUN, made with torch 2.13.0 (CPU build) before the step, the run and
# the output folder were moved into files of their own (sha256 750566ac...). Floating-point sums differ
# between processors and thread counts (vector width, reduction order), so a run elsewhere is held to it
# through renders, not bytes: from GOLDEN_VIEWS, 1 vs 2 threads on one machine differ by 83 dB PSNR, while
# a CFG scale of 7.4 instead of 7.5 gives 60 dB and a 10% higher colour learning rate 55 dB. On the
# machine that runs the test, the run and its resume must agree byte for byte. The late opacity penalty of that time is named
# here: the default recipe has since turned it off.
GOLDEN_TORCH = "2.13.0+cpu"
GOLDEN_SCENE = Path(__file__).resolve().parent / "data" / "golden_scene.ply"
GOLDEN_MIN_PSNR = 70.0  # dB over GOLDEN_VIEWS, between this machine's run and GOLDEN_SCENE
GOLDEN_VIEWS = {"frames": 8, "size": 64, "distance": 1.5, "backend": "torch"}
GOLDEN_RUN = {"prompt": "a red castle", "steps": 20, "seed": 3, "device": "cpu", "cpu_threads": 1, "turntable_frames": 0,
              "progress": False, "densify.opacity_l1": 0.02}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def golden_generation(out: Path, interrupt_at: int | None = None) -> Path:
    """GOLDEN_RUN into `out`; with interrupt_at, SIGINT arrives at that logged step and the run is resumed."""
    import gsdi
    from gsdi.run import Interrupted

    def on_log(gen):
        if gen.step == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the run: checkpoint, then Interrupted

    threads = torch.get_num_threads()
    try:
        run = dict(GOLDEN_RUN)
        prompt = run.pop("prompt")
        if interrupt_at is None:
            return gsdi.generate(prompt, out=out, **run).ply
        with pytest.raises(Interrupted):
            gsdi.generate(prompt, out=out, on_log=on_log, **run)
        return gsdi.generate(resume=out, progress=False).ply
    finally:
        torch.set_num_threads(threads)


def render_psnr(a: Path, b: Path) -> float:
    """PSNR (dB) between two scene files rendered from the same GOLDEN_VIEWS."""
    from gsdi.formats import read_ply
    from gsdi.media import render_orbit

    views = [render_orbit(read_ply(path), **GOLDEN_VIEWS) for path in (a, b)]
    mse = (views[0] - views[1]).pow(2).mean().clamp_min(1e-20)
    return float(-10 * torch.log10(mse))


@pytest.mark.skipif(torch.__version__ != GOLDEN_TORCH, reason=f"the golden scene was made with torch {GOLDEN_TORCH}")
def test_a_fixed_seed_cpu_generation_its_resume_and_the_golden_scene_agree(tmp_path):
    from gsdi.formats import read_ply

    full = golden_generation(tmp_path / "full")
    resumed = golden_generation(tmp_path / "resumed", interrupt_at=10)
    assert sha256(full) == sha256(resumed), "a run and its resume on one machine must write the same bytes"
    count, golden_count = read_ply(full)["means"].shape[0], read_ply(GOLDEN_SCENE)["means"].shape[0]
    assert abs(count - golden_count) <= 0.01 * golden_count, (count, golden_count)
    psnr = render_psnr(full, GOLDEN_SCENE)
    assert psnr >= GOLDEN_MIN_PSNR, f"renders {psnr:.1f} dB from the golden scene's (at least {GOLDEN_MIN_PSNR} expected)"


def test_the_golden_check_sees_a_small_change_of_recipe(tmp_path):
    """The render comparison is strict enough: the golden scene against a run with CFG 7.4 for 7.5."""
    global GOLDEN_RUN
    saved = GOLDEN_RUN
    GOLDEN_RUN = {**saved, "guidance.cfg_scale": 7.4}
    try:
        changed = golden_generation(tmp_path / "changed")
    finally:
        GOLDEN_RUN = saved
    assert render_psnr(changed, GOLDEN_SCENE) < GOLDEN_MIN_PSNR


if __name__ == "__main__":  # write this checkout's golden scene (replace GOLDEN_SCENE with it only on purpose)
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        made = golden_generation(Path(folder) / "full")
        shutil.copy(made, Path("golden_scene.ply"))
        print(torch.__version__, sha256(made), "-> golden_scene.ply")
