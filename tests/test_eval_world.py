"""examples/eval_world.py --score: any scene file scored against the world without generating."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "eval_world.py"), "--score", str(tmp_path / "blob.ply"),
                          "--prompts", "a red castle", "a blue car", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "exactly one prompt" in bad.stderr
