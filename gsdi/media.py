"""Pictures of a splat scene: views around it framed to its bounds (`render_orbit`, which the preview,
the turntable and `gsdi render` share), turntables, image grids and PNG files; on CPU (gsdi.kernels)
or GPU (gsplat).

`write_turntable(params, "out.mp4")` renders N frames around the object and writes an mp4 through
imageio-ffmpeg, or a gif (imageio's pillow writer) when the name says .gif or ffmpeg is missing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsdi.config import TURNTABLE_FRAMES, CameraConfig, RenderConfig
from gsdi.errors import GsdiError


FILL = 0.9  # a framed view's object fills this share of the tile's height


def framing(params: dict[str, Tensor], fov: float) -> tuple[Tensor, float]:
    """Centre [3] and camera distance that frame a scene: the middle of its visible Gaussians'
    1st-99th percentile bounds, and the distance at which the sphere around it holding 99% of them
    (each with 2 sigma of its largest scale) fills FILL of a `fov`-degree view. The same for every view."""

    means = params["means"].detach().float()
    visible = torch.sigmoid(params["opacities"].detach().float().reshape(-1)) > 0.1
    if int(visible.sum()) >= 8:
        means = means[visible]
        extent = 2 * torch.exp(params["scales"].detach().float()[visible]).amax(-1)
    else:
        extent = torch.zeros(means.shape[0], device=means.device)
    lo, hi = torch.quantile(means, 0.01, dim=0), torch.quantile(means, 0.99, dim=0)
    centre = (lo + hi) / 2
    radius = float(torch.quantile((means - centre).norm(dim=-1) + extent, 0.99).clamp_min(1e-3))
    return centre, radius / math.sin(math.radians(fov / 2) * FILL)


def render_orbit(params: dict[str, Tensor], frames: int, size: int, elevation: float = CameraConfig.eval_elevation,
                 distance: float | None = None, fov: float = CameraConfig.eval_fov, backend: str = "auto",
                 background=(1.0, 1.0, 1.0), batch: int = 8) -> Tensor:
    """[frames, size, size, 3] renders at evenly spaced azimuths starting from the front; distance
    None frames the scene to its bounds (`framing`), a number looks at the origin from there."""
    from gsdi.cameras import eval_orbits
    from gsdi.render import render, resolve_backend

    device = params["means"].device
    backend = resolve_backend(backend, device)
    params = {k: v.detach() for k, v in params.items()}
    if distance is None:
        centre, distance = framing(params, fov)
        params["means"] = params["means"] - centre
    ring = eval_orbits(frames, size, size, distance, fov, elevation)
    with torch.no_grad():
        return torch.cat([render(params, ring.take(slice(start, start + batch)), background, backend).rgb.cpu()
                          for start in range(0, frames, batch)])


def write_turntable(params: dict[str, Tensor], path: str | Path, frames: int = TURNTABLE_FRAMES,
                    size: int = RenderConfig.preview_size, elevation: float = CameraConfig.eval_elevation,
                    fov: float = CameraConfig.eval_fov, fps: int = 24, backend: str = "auto") -> Path:
    """Render a turntable framed to the scene and write it as .mp4 (imageio-ffmpeg) or .gif; returns
    the written path (a .gif beside the asked .mp4 when imageio-ffmpeg is not installed: see `has_mp4`)."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise GsdiError(f"--turntable must end in .mp4 or .gif (got {path.name})")
    if frames < 1 or size < 16:
        raise GsdiError("--frames must be at least 1 and --size at least 16")
    images = (render_orbit(params, frames, size, elevation, fov=fov, backend=backend).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        if has_mp4():
            iio.imwrite(path, images, fps=fps, codec="libx264", macro_block_size=1)
            return path
        path = path.with_suffix(".gif")
    iio.imwrite(path, images, duration=1000 / fps, loop=0)
    return path


MP4_HINT = "an .mp4 needs the video extra (pip install \".[video]\" in gsdi's folder); wrote a .gif instead"


def has_mp4() -> bool:
    """Whether .mp4 turntables can be written (imageio-ffmpeg, the `video` extra, is installed)."""
    import importlib.util

    return importlib.util.find_spec("imageio_ffmpeg") is not None


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
