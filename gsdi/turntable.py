"""Turntables and view grids of a splat scene, on CPU (gsdi.kernels) or GPU (gsplat).

`write_turntable(params, "out.mp4")` renders N frames around the object and writes an mp4 through
imageio-ffmpeg, or a gif (imageio's pillow writer) when the name says .gif or ffmpeg is missing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from gsdi.errors import GsdiError


def render_orbit(params: dict[str, Tensor], frames: int, size: int, elevation: float = 15.0, distance: float = 2.0,
                 fov: float = 55.0, backend: str = "auto", background=(1.0, 1.0, 1.0), batch: int = 8) -> Tensor:
    """[frames, size, size, 3] renders at evenly spaced azimuths starting from the front."""
    from gsdi.cameras import orbit_cameras
    from gsdi.render import render, resolve_backend

    device = params["means"].device
    backend = resolve_backend(backend, device)
    params = {k: v.detach() for k, v in params.items()}
    azimuth = torch.arange(frames, dtype=torch.float32) * (360.0 / frames)
    out = []
    with torch.no_grad():
        for start in range(0, frames, batch):
            az = azimuth[start:start + batch]
            n = az.shape[0]
            full = lambda value: torch.full((n,), float(value))  # noqa: E731
            cams = orbit_cameras(az, full(elevation), full(distance), full(fov), size, size)
            out.append(render(params, cams, background, backend).rgb.cpu())
    return torch.cat(out)


def write_turntable(params: dict[str, Tensor], path: str | Path, frames: int = 48, size: int = 256,
                    elevation: float = 15.0, fps: int = 24, backend: str = "auto") -> Path:
    """Render a turntable and write it as .mp4 (imageio-ffmpeg) or .gif; returns the written path
    (a .gif beside the asked .mp4 when ffmpeg is not installed)."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise GsdiError(f"--turntable must end in .mp4 or .gif (got {path.name})")
    if frames < 1 or size < 16:
        raise GsdiError("--frames must be at least 1 and --size at least 16")
    images = (render_orbit(params, frames, size, elevation, backend=backend).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401

            iio.imwrite(path, images, fps=fps, codec="libx264", macro_block_size=1)
            return path
        except ImportError:
            path = path.with_suffix(".gif")
    iio.imwrite(path, images, duration=1000 / fps, loop=0)
    return path
