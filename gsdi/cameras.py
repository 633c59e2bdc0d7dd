"""Orbit cameras around the origin, in gsplat's conventions.

World axes (the same in exported .ply files): **-Y is up**, +X and +Z span the ground, and the
object's **front faces +Z**. This is the y-down convention of COLMAP/INRIA 3DGS scenes, which splat
viewers (SuperSplat, antimatter15's viewer, gsplat's viewer) undo on load, so exports open upright.

An orbit camera is given by azimuth (degrees; 0 looks at the front from +Z, +90 from +X), elevation
(degrees; positive is above the object, looking down), distance to the origin and vertical field of
view. Cameras are OpenCV style: x right, y down, z forward; `viewmats` map world to camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import gsdi.config as config
from gsdi.prompts import FRONT_AZIMUTH, view_word

FRONT_VIEWS = (-FRONT_AZIMUTH, FRONT_AZIMUTH)  # sample_orbits' azimuth range for the views view_word calls "front"

WORLD_UP = (0.0, -1.0, 0.0)


@dataclass
class Cameras:
    """C cameras: world-to-camera `viewmats` [C,4,4], intrinsics `Ks` [C,3,3], and their orbit."""

    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int
    azimuth: Tensor  # [C] degrees in [-180, 180)
    elevation: Tensor  # [C] degrees
    distance: Tensor  # [C]
    fov: Tensor  # [C] vertical, degrees

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def view_words(self) -> list[str]:
        return [view_word(float(a), float(e)) for a, e in zip(self.azimuth, self.elevation)]

    def take(self, index: Tensor) -> "Cameras":
        """The cameras at `index` (a [K] long tensor or a slice), in that order."""
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height, self.azimuth[index],
                       self.elevation[index], self.distance[index], self.fov[index])


def orbit_cameras(
    azimuth: Tensor,  # [C] degrees
    elevation: Tensor,  # [C] degrees
    distance: Tensor,  # [C]
    fov: Tensor,  # [C] vertical, degrees
    width: int,
    height: int,
) -> Cameras:
    """Cameras on orbits around the origin, looking at it, with square pixels and a centred principal point."""
    C = azimuth.shape[0]
    assert elevation.shape == distance.shape == fov.shape == (C,), (elevation.shape, distance.shape, fov.shape)
    azimuth = azimuth.double()
    az, el = torch.deg2rad(azimuth), torch.deg2rad(elevation.double())
    distance = distance.double()
    # Position: front (+Z) at azimuth 0, +X at azimuth 90, above the object (-Y) for elevation > 0.
    position = torch.stack(
        [torch.cos(el) * torch.sin(az), -torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1
    ) * distance[:, None]  # [C, 3]
    forward = -position / position.norm(dim=-1, keepdim=True)  # camera +z
    down = -torch.tensor(WORLD_UP, dtype=torch.float64).expand(C, 3)
    y_axis = down - (down * forward).sum(-1, keepdim=True) * forward  # image down
    y_axis = y_axis / y_axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x_axis = torch.linalg.cross(y_axis, forward)  # image right (x = y cross z)
    R = torch.stack([x_axis, y_axis, forward], dim=1)  # [C, 3, 3], rows are camera axes in world
    viewmats = torch.eye(4, dtype=torch.float64).repeat(C, 1, 1)
    viewmats[:, :3, :3] = R
    viewmats[:, :3, 3] = -(R @ position[:, :, None])[:, :, 0]

    focal = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fov.double()))  # [C]
    Ks = torch.zeros(C, 3, 3, dtype=torch.float64)
    Ks[:, 0, 0] = focal
    Ks[:, 1, 1] = focal
    Ks[:, 0, 2] = 0.5 * width
    Ks[:, 1, 2] = 0.5 * height
    Ks[:, 2, 2] = 1.0
    wrapped = (azimuth + 180.0) % 360.0 - 180.0
    return Cameras(viewmats.float(), Ks.float(), width, height, wrapped.float(), elevation.float(), distance.float(), fov.float())


def sample_orbits(
    n: int,
    width: int,
    height: int,
    generator: torch.Generator,
    radius_range: tuple[float, float] | None = None,
    fov_range: tuple[float, float] | None = None,
    elevation_range: tuple[float, float] | None = None,
    azimuth_range: tuple[float, float] = (-180.0, 180.0),
) -> Cameras:
    """n random training cameras: uniform distance, fov, elevation and azimuth (all around unless
    `azimuth_range` is given: FRONT_VIEWS for what a "front view" prompt means); a range not given is
    the training orbits' (gsdi.config.ORBIT_*, read at the call)."""
    radius_range = radius_range or config.ORBIT_RADIUS
    fov_range = fov_range or config.ORBIT_FOV
    elevation_range = elevation_range or config.ORBIT_ELEVATION

    def uniform(lo_hi: tuple[float, float]) -> Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    return orbit_cameras(
        uniform(azimuth_range), uniform(elevation_range), uniform(radius_range), uniform(fov_range), width, height
    )


def eval_orbits(
    n: int, width: int, height: int, distance: float = 2.0, fov: float = 70.0, elevation: float = 15.0
) -> Cameras:
    """n fixed cameras at evenly spaced azimuths starting from the front, all at one elevation: the ring
    of previews, turntables and the views meshes are fused from (the world's held-out views, at two
    elevations, are gsdi.eval.evaluate.eval_cameras)."""
    azimuth = torch.arange(n, dtype=torch.float32) * (360.0 / n)
    full = lambda value: torch.full((n,), float(value))  # noqa: E731
    return orbit_cameras(azimuth, full(elevation), full(distance), full(fov), width, height)


def camera_positions(viewmats: Tensor) -> Tensor:
    """World positions [C, 3] of cameras given world-to-camera matrices [C, 4, 4]."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(R.transpose(1, 2) @ t[:, :, None])[:, :, 0]
