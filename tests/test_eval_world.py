"""examples/eval_world.py --score: any scene file scored against the world without generating; --merge
and examples/guidance_picture.py cut its grid by prompt and method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsdi.formats import write_ply, write_splat

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_score_writes_rows_named_after_the_files_and_the_ddim_reference(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 300
    quats = torch.randn(n, 4, generator=g)
    scene = {"means": 0.25 * torch.randn(n, 3, generator=g), "scales": torch.full((n, 3), -3.0),
             "quats": quats / quats.norm(dim=-1, keepdim=True), "opacities": torch.full((n,), 3.0),
             "sh0": torch.full((n, 1, 3), -1.0), "shN": torch.zeros(n, 0, 3)}
    write_ply(tmp_path / "blob.ply", scene)
    write_splat(tmp_path / "blob-web.splat", scene)
    out = tmp_path / "scores"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "eval_world.py"), "--score", str(tmp_path / "blob.ply"),
                           str(tmp_path / "blob-web.splat"), "--prompts", "a red castle", "--out", str(out),
                           "--reference-instances", "8"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "eval.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["blob", "blob-web"]
    for row in result["rows"]:
        assert {"fidelity_kid", "sharpness", "best_instance_psnr", "silhouette_iou"} <= set(row)
        assert row["seconds"] is None and row["critic"] == "plain"  # --critic auto: the embedded prior's 64-px views
    ddim = result["ddim"]["a red castle"]
    # A dark blob is far from the world; the prior's own samples are much nearer and sharper.
    assert ddim["ddim_fidelity_kid"] < result["rows"][0]["fidelity_kid"]
    assert ddim["ddim_sharpness"] > result["rows"][0]["sharpness"]
    assert (out / "grid.png").is_file() and "fidelity_kid" in (out / "eval.md").read_text()

    # --merge with --methods keeps those rows and their grid rows (under each prompt's world and DDIM rows).
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB"))  # [world, DDIM, blob, blob-web] x 8 views
    size = grid.shape[1] // 8
    assert grid.shape[0] == 4 * size
    merged = tmp_path / "merged"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "eval_world.py"), "--merge", str(out), str(out),
                           "--methods", "blob-web", "--out", str(merged)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["method"] for r in json.loads((merged / "eval.json").read_text())["rows"]] == ["blob-web", "blob-web"]
    kept = np.asarray(Image.open(merged / "grid.png").convert("RGB"))
    assert np.array_equal(kept, np.concatenate([grid[: 2 * size], grid[3 * size:]] * 2))
    # The README's picture: one view of the world row, one DDIM sample, then the methods asked for, in that order.
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "guidance_picture.py"), "--eval", str(out),
                           "--methods", "blob-web", "blob", "--view", "2", "--sample", "5", "--out", str(tmp_path / "p.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cell = lambda row, view: grid[row * size:(row + 1) * size, view * size:(view + 1) * size]  # noqa: E731
    picture = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert np.array_equal(picture, np.concatenate([cell(0, 2), cell(1, 5), cell(3, 2), cell(2, 2)], axis=1))
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "eval_world.py"), "--score", str(tmp_path / "blob.ply"),
                          "--prompts", "a red castle", "a blue car", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "exactly one prompt" in bad.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "eval_world.py"), "--score", str(tmp_path / "blob.ply"),
                          "--prompts", "a red castle", "--methods", "a", "b", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "one name a file" in bad.stderr
