"""Pictures of a scene: previews and grids framed to the scene, turntables, image grids."""

from __future__ import annotations

import numpy as np
import torch
from conftest import small_scene

from gsdi.cli import main
from gsdi.media import image_grid


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


def test_render_grid_defaults_to_the_preview_views(tmp_path, capsys):
    import torch

    from gsdi.formats import write_ply

    n = 50
    write_ply(tmp_path / "s.ply", {"means": torch.randn(n, 3) * 0.2, "scales": torch.full((n, 3), -3.0),
                                   "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), "opacities": torch.zeros(n),
                                   "sh0": torch.zeros(n, 1, 3), "shN": torch.zeros(n, 0, 3)})
    main(["render", str(tmp_path / "s.ply"), "--grid", str(tmp_path / "g.png"), "--size", "32"])
    assert "8 views" in capsys.readouterr().out


def test_image_grid():
    images = torch.zeros(5, 2, 3, 3)
    images[1] = 1.0
    grid = image_grid(images, 4)
    assert grid.shape == (4, 12, 3) and grid.dtype == np.uint8
    assert (grid[:2, 3:6] == 255).all() and (grid[:2, :3] == 0).all() and (grid[2:, 3:] == 255).all()
