"""One `render` for the whole project: gsplat on CUDA, gsdi.kernels elsewhere (or forced by name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gsdi.cameras import Cameras
from gsdi.errors import GsdiError
from gsdi.scene import activated, sh_degree_of

# gsdi always rasterizes unpacked; densify.py passes the same flag to gsplat's strategy.
PACKED = False


@dataclass
class RenderOutput:
    rgb: Tensor  # [C, H, W, 3] in [0, 1] over the background
    alpha: Tensor  # [C, H, W, 1]
    meta: dict[str, Any]  # rasterizer info (means2d with gradient, radii, width, height, n_cameras ...)


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' becomes 'gsplat' on CUDA and 'torch' (gsdi.kernels) elsewhere."""
    if backend == "auto":
        return "gsplat" if device.type == "cuda" else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise GsdiError("the gsplat renderer needs a CUDA device; use --renderer torch or --device cuda")
    if backend not in ("gsplat", "torch"):
        raise GsdiError(f"unknown renderer {backend!r}; choose auto, gsplat or torch")
    return backend


def rasterizer(backend: str):
    if backend == "gsplat":
        from gsplat import rasterization
    else:
        from gsdi.kernels import rasterization
    return rasterization


def render(
    params: torch.nn.ParameterDict,
    cameras: Cameras,
    background: tuple[float, float, float] | Tensor,
    backend: str = "torch",
) -> RenderOutput:
    """Render the Gaussians in `params` from C cameras over a constant background colour."""
    g = activated(params)
    device = g.means.device
    C = len(cameras)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device).reshape(1, 3).expand(C, 3)
    rgb, alpha, meta = rasterizer(backend)(
        means=g.means,
        quats=g.quats,
        scales=g.scales,
        opacities=g.opacities,
        colors=g.colors,
        viewmats=cameras.viewmats.to(device),
        Ks=cameras.Ks.to(device),
        width=cameras.width,
        height=cameras.height,
        sh_degree=sh_degree_of(params),
        packed=PACKED,
        backgrounds=bg.contiguous(),
    )
    return RenderOutput(rgb=rgb, alpha=alpha, meta=meta)


def to_prior_input(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """Renders [B, H, W, 3] -> [B, 3, size, size] (bilinear resize when H != size)."""
    images = rgb.permute(0, 3, 1, 2)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images
