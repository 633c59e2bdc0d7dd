"""Standard 3DGS .ply files (the INRIA layout every splat viewer reads) and preview images.

Per vertex, float32: x y z, nx ny nz (zeros), f_dc_0..2, f_rest_* (SH bands above 0, channel-major
as INRIA writes them), opacity (logit), scale_0..2 (log), rot_0..3 (quaternion wxyz). Axes as in
`gsdi.cameras`: -Y up, front towards +Z.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsdi.errors import GsdiError

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def write_ply(path: str | Path, params: dict[str, Tensor]) -> None:
    """Write Gaussians (raw parameters as in gsdi.scene) to a binary little-endian .ply."""
    from plyfile import PlyData, PlyElement

    p = {k: params[k].detach().float().cpu().numpy() for k in PARAM_NAMES}
    N = p["means"].shape[0]
    f_rest = p["shN"].transpose(0, 2, 1).reshape(N, -1)  # [N, 3 * (K - 1)], channel-major
    columns = [
        ("x", p["means"][:, 0]), ("y", p["means"][:, 1]), ("z", p["means"][:, 2]),
        ("nx", np.zeros(N)), ("ny", np.zeros(N)), ("nz", np.zeros(N)),
        *[(f"f_dc_{i}", p["sh0"][:, 0, i]) for i in range(3)],
        *[(f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])],
        ("opacity", p["opacities"].reshape(N)),
        *[(f"scale_{i}", p["scales"][:, i]) for i in range(3)],
        *[(f"rot_{i}", p["quats"][:, i]) for i in range(4)],
    ]
    vertex = np.empty(N, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        vertex[name] = values
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(path))


def read_ply(path: str | Path) -> dict[str, Tensor]:
    """Read a 3DGS .ply back into raw parameters (means, scales, quats, opacities, sh0, shN)."""
    from plyfile import PlyData, PlyParseError

    try:
        vertex = PlyData.read(str(path))["vertex"]
    except (OSError, ValueError, KeyError, IndexError, PlyParseError) as error:
        raise GsdiError(f"cannot read {path} as a Gaussian splat .ply: {error}") from None
    names = set(vertex.data.dtype.names or ())
    required = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", *(f"scale_{i}" for i in range(3)),
                *(f"rot_{i}" for i in range(4))}
    if missing := sorted(required - names):
        raise GsdiError(f"{path} is not a 3DGS .ply: missing properties {', '.join(missing)}")
    n_rest = len([n for n in names if n.startswith("f_rest_")])
    degree = int(round(math.sqrt(n_rest / 3 + 1))) - 1
    if 3 * ((degree + 1) ** 2 - 1) != n_rest:
        raise GsdiError(f"{path}: {n_rest} f_rest_* properties is not 3 * ((d+1)^2 - 1) for any SH degree d")

    def cols(*keys: str) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=-1))

    N = len(vertex.data)
    shN = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else torch.zeros(N, 0)
    return {
        "means": cols("x", "y", "z"),
        "scales": cols("scale_0", "scale_1", "scale_2"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": cols("opacity")[:, 0],
        "sh0": cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
        "shN": shN.reshape(N, 3, -1).transpose(1, 2).contiguous(),
    }


def image_grid(images: Tensor, columns: int) -> np.ndarray:
    """[C, H, W, 3] in [0, 1] -> one uint8 image [rows*H, columns*W, 3] (row-major, white filler)."""
    C, H, W, _ = images.shape
    rows = math.ceil(C / columns)
    grid = torch.ones(rows * columns, H, W, 3)
    grid[:C] = images.detach().float().cpu().clamp(0, 1)
    grid = grid.reshape(rows, columns, H, W, 3).permute(0, 2, 1, 3, 4).reshape(rows * H, columns * W, 3)
    return (grid * 255).round().to(torch.uint8).numpy()


def write_png(path: str | Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(str(path))
