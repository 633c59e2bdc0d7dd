"""The shape of the house: cheap imports, no import cycles, a short step file, and the same outputs
as before the code moved (a fixed-seed CPU generation and its resume byte for byte on this machine,
and its renders against the stored golden scene on any processor)."""

from __future__ import annotations

import ast
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "gsdi"
KERNELS = Path(__file__).resolve().parents[1] / "kernels"

# GOLDEN_SCENE is scene.ply of GOLDEN_RUN, made with torch 2.13.0 (CPU build) before the step, the run and
# the output folder were moved into files of their own (sha256 750566ac...). Floating-point sums differ
# between processors and thread counts (vector width, reduction order), so a run elsewhere is held to it
# through renders, not bytes: from GOLDEN_VIEWS, 1 vs 2 threads on one machine differ by 83 dB PSNR, while
# a CFG scale of 7.4 instead of 7.5 gives 60 dB and a 10% higher colour learning rate 55 dB. On the machine that runs the
# test, the run and its resume must agree byte for byte. The late opacity penalty of that time is named
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


def module_imports() -> dict[str, set[str]]:
    """Every gsdi module -> the gsdi modules it imports anywhere (top level or inside functions), read with ast."""
    files = {f"gsdi.{'.'.join(p.relative_to(PACKAGE).with_suffix('').parts)}".removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    files.update({f"gsdi.kernels.{p.stem}".removesuffix(".__init__"): p for p in KERNELS.glob("*.py")})
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # `from gsdi import run` names a module
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_no_import_cycles_among_the_package_modules():
    graph = module_imports()
    assert "gsdi.run" in graph and "gsdi.kernels.rasterize" in graph
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_import_gsdi_and_help_load_no_heavy_library():
    code = ("import sys, gsdi, gsdi.cli; sys.argv = ['gsdi', '--help']\n"
            "try:\n    gsdi.cli.main()\nexcept SystemExit:\n    pass\n"
            "heavy = {'torch', 'diffusers', 'transformers', 'gsplat', 'open3d'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "generate" in proc.stdout, proc.stdout + proc.stderr


def test_the_step_reads_in_about_a_page():
    lines = (PACKAGE / "step.py").read_text().splitlines()
    assert len(lines) <= 210, len(lines)
    assert "def advance" in "\n".join(lines) and "def state_dict" in "\n".join(lines)
