from __future__ import annotations

import numpy as np
import pytest
import torch

from gsdi.config import SceneConfig
from gsdi.errors import GsdiError
from gsdi.formats import read_ply, write_ply
from gsdi.media import image_grid
from gsdi.scene import init_params


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_ply_round_trip(tmp_path, sh_degree):
    params = init_params(SceneConfig(num_points=100, sh_degree=sh_degree), torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    write_ply(tmp_path / "s.ply", params)
    back = read_ply(tmp_path / "s.ply")
    for name, value in params.items():
        assert torch.equal(back[name], value.detach()), name


def test_ply_layout_is_the_inria_3dgs_one(tmp_path):
    """Read with plyfile directly: property names, float32, and f_rest channel-major ordering."""
    from plyfile import PlyData

    params = init_params(SceneConfig(num_points=3, sh_degree=1), torch.Generator().manual_seed(0))
    with torch.no_grad():
        params["shN"].copy_(torch.arange(27, dtype=torch.float32).reshape(3, 3, 3))  # [N, K-1, channel]
    write_ply(tmp_path / "s.ply", params)
    vertex = PlyData.read(str(tmp_path / "s.ply"))["vertex"]
    names = [p.name for p in vertex.properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert names[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(p.val_dtype in ("f4", "float32") for p in vertex.properties)
    # f_rest_{c * (K-1) + k} holds channel c of band coefficient k.
    assert vertex["f_rest_1"][0] == params["shN"][0, 1, 0] and vertex["f_rest_3"][0] == params["shN"][0, 0, 1]


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(GsdiError):
        read_ply(tmp_path / "junk.ply")
    from plyfile import PlyData, PlyElement

    PlyData([PlyElement.describe(np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(GsdiError, match="missing properties"):
        read_ply(tmp_path / "pts.ply")


def test_image_grid():
    images = torch.zeros(5, 2, 3, 3)
    images[1] = 1.0
    grid = image_grid(images, 4)
    assert grid.shape == (4, 12, 3) and grid.dtype == np.uint8
    assert (grid[:2, 3:6] == 255).all() and (grid[:2, :3] == 0).all() and (grid[2:, 3:] == 255).all()
