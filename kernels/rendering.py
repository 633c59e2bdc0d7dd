"""gsdi.kernels.rendering: `rasterization`, the entry point with `gsplat.rasterization`'s arguments and
outputs (gsplat keeps its own in gsplat/rendering.py); the package's docstring says what it supports."""

from __future__ import annotations

import torch
from torch import Tensor

from .projection import project_gaussians, quat_scale_to_covar, spherical_harmonics
from .rasterize import rasterize_to_pixels


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D], or [N, K, 3] SH coefficients with sh_degree
    viewmats: Tensor,  # [C, 4, 4] world-to-camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = False,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,  # [C, D]
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    chunk_elements: int = 1 << 20,
) -> tuple[Tensor, Tensor, dict]:
    """Render C views of N Gaussians: colors [C,H,W,D], alphas [C,H,W,1], meta (see module doc)."""
    N, C = means.shape[0], viewmats.shape[0]
    assert means.shape == (N, 3), means.shape
    assert quats.shape == (N, 4) and scales.shape == (N, 3) and opacities.shape == (N,), (quats.shape, scales.shape, opacities.shape)
    assert viewmats.shape == (C, 4, 4) and Ks.shape == (C, 3, 3), (viewmats.shape, Ks.shape)
    if packed or render_mode != "RGB" or rasterize_mode != "classic":
        raise NotImplementedError("gsdi.kernels supports packed=False, render_mode='RGB', rasterize_mode='classic'")

    covars = quat_scale_to_covar(quats, scales)
    radii, means2d, depths, conics = project_gaussians(
        means, covars, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane, radius_clip
    )
    if sh_degree is None:
        assert colors.shape[0] == N and colors.dim() == 2, colors.shape
        view_colors = colors.expand(C, N, colors.shape[-1])
    else:
        assert colors.shape[0] == N and colors.dim() == 3 and colors.shape[-1] == 3, colors.shape
        campos = -(viewmats[:, :3, :3].transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]  # [C, 3]
        dirs = means[None] - campos[:, None]  # [C, N, 3]
        view_colors = spherical_harmonics(sh_degree, dirs, colors.expand(C, *colors.shape))
        view_colors = torch.clamp_min(view_colors + 0.5, 0.0)
    view_opacities = opacities.expand(C, N)

    render_colors, render_alphas, isect = rasterize_to_pixels(
        means2d, conics, view_colors, view_opacities, radii, depths, width, height,
        tile_size=tile_size, backgrounds=backgrounds, chunk_elements=chunk_elements,
    )
    meta = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": view_opacities,
        "width": width,
        "height": height,
        "n_cameras": C,
        **isect,
    }
    return render_colors, render_alphas, meta
