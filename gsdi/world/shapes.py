"""Signed distance functions of the world's primitives, batched in torch.

Each primitive is one row of PRIMITIVE_FIELDS floats: kind, centre (3), rotation (3x3, local ->
world, row-major), size (4, meaning per kind below), colour (3, RGB in [0, 1]), then its surface
pattern (PATTERN_FIELDS, below; kind 0 = plain). Sizes, in the
primitive's local frame (-Y up, as the world):
- sphere: radius
- ellipsoid: radii x, y, z
- box: half extents x, y, z
- cylinder: radius, half height (axis Y)
- cone: radius at the top (-Y), radius at the bottom (+Y), half height (axis Y); top radius 0 = a cone
- torus: ring radius, tube radius (ring in the XZ plane)
Ellipsoid and cone distances are bounds, not exact; the tracer steps conservatively.

A pattern is defined in world space, on the object rather than the image, so every view of it
agrees: the point p is taken to pattern coordinates q = R(yaw, tilt) p / period + phase, and the
pattern colour replaces the primitive's colour where
- stripes: frac(q_y) < STRIPE_WIDTH (slabs across the frame's y axis: horizontal stripes at tilt 0);
- dots: q lies within DOT_RADIUS of a point of the integer lattice (balls cut by the surface);
- checks: floor(2 q_x) + floor(2 q_y) + floor(2 q_z) is odd and q lies in the middle CHECK_FILL of that
  cell along each axis (a 3D checkerboard of cells half a period wide, each coloured cell shrunk so
  that a gap of the object's colour rings it).
Every pattern covers less than half the surface (stripes 1/3, checks about 0.26-0.32, dots about
0.14), so the object's own colour is the one that shows most: "a blue car with yellow stripes" and
"a yellow car with blue stripes" are different objects.
Pattern fields: kind (0 plain, then PATTERNS in order), colour (3), period, yaw and tilt (degrees),
phase (3, in periods).
"""

from __future__ import annotations

import torch
from torch import Tensor

KINDS = ("sphere", "ellipsoid", "box", "cylinder", "cone", "torus")
KIND_ID = {name: i for i, name in enumerate(KINDS)}
PATTERNS = ("stripes", "dots", "checks")
PATTERN_FIELDS = 10  # kind, colour 3, period, yaw, tilt, phase 3
PRIMITIVE_FIELDS = 20 + PATTERN_FIELDS  # kind, centre 3, rotation 9, size 4, colour 3, pattern 10
DOT_RADIUS = 0.32  # in periods
STRIPE_WIDTH = 1 / 3  # in periods
CHECK_FILL = 0.8  # of a cell's width


def _length2(x: Tensor, y: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y)


def sdf(kind: int, p: Tensor, size: Tensor) -> Tensor:
    """Distance from local points p [..., 3] to a primitive of `kind` with sizes [..., 4] -> [...]."""
    x, y, z = p.unbind(-1)
    s = size.unbind(-1)
    if kind == KIND_ID["sphere"]:
        return p.norm(dim=-1) - s[0]
    if kind == KIND_ID["ellipsoid"]:
        r = size[..., :3].clamp_min(1e-6)
        k0 = (p / r).norm(dim=-1)
        k1 = (p / (r * r)).norm(dim=-1).clamp_min(1e-9)
        return k0 * (k0 - 1.0) / k1
    if kind == KIND_ID["box"]:
        q = p.abs() - size[..., :3]
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)
    if kind == KIND_ID["cylinder"]:
        dx, dy = _length2(x, z) - s[0], y.abs() - s[1]
        return torch.minimum(torch.maximum(dx, dy), torch.zeros_like(dx)) + _length2(dx.clamp_min(0), dy.clamp_min(0))
    if kind == KIND_ID["cone"]:
        # Inigo Quilez's capped cone: radius r1 at y = -h (top), r2 at y = +h (bottom).
        r1, r2, h = s[0], s[1], s[2].clamp_min(1e-6)
        qx, qy = _length2(x, z), y
        ca_x = qx - torch.minimum(qx, torch.where(qy < 0, r1, r2))
        ca_y = qy.abs() - h
        k2x, k2y = r2 - r1, 2 * h
        t = (((r2 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0, 1)
        cb_x, cb_y = qx - r2 + k2x * t, qy - h + k2y * t
        sign = torch.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0)
        return sign * torch.sqrt(torch.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))
    if kind == KIND_ID["torus"]:
        return _length2(_length2(x, z) - s[0], y) - s[1]
    raise ValueError(f"unknown primitive kind {kind}")


def pattern_mask(points: Tensor, pattern: Tensor) -> Tensor:
    """Whether each point shows its pattern's colour: points [R, 3], pattern fields [R, PATTERN_FIELDS] -> bool [R]."""
    R = points.shape[0]
    assert points.shape == (R, 3) and pattern.shape == (R, PATTERN_FIELDS), (points.shape, pattern.shape)
    kind, period = pattern[:, 0].round().long(), pattern[:, 4].clamp_min(1e-6)
    yaw, tilt = torch.deg2rad(pattern[:, 5]), torch.deg2rad(pattern[:, 6])
    cy, sy, ct, st = yaw.cos(), yaw.sin(), tilt.cos(), tilt.sin()
    x, y, z = points.unbind(-1)
    x, z = cy * x - sy * z, sy * x + cy * z  # yaw about the up axis
    y, z = ct * y - st * z, st * y + ct * z  # then tilt about x
    q = torch.stack([x, y, z], -1) / period[:, None] + pattern[:, 7:10]
    stripes = q[:, 1] - q[:, 1].floor() < STRIPE_WIDTH
    dots = (q - q.round()).norm(dim=-1) < DOT_RADIUS
    cell = 2 * q
    inside = ((cell - cell.floor() - 0.5).abs() < CHECK_FILL / 2).all(-1)
    checks = (cell.floor().sum(-1).remainder(2) == 1) & inside
    return ((kind == 1) & stripes) | ((kind == 2) & dots) | ((kind == 3) & checks)


def scene_distance(points: Tensor, primitives: Tensor) -> tuple[Tensor, Tensor]:
    """Union of primitives: distance [R] to, and index [R] of, the nearest primitive.

    points [R, 3] world positions, primitives [R, P, PRIMITIVE_FIELDS] (each ray's own object;
    padding rows have kind -1 and never win).
    """
    R, P, F = primitives.shape
    assert points.shape == (R, 3) and F == PRIMITIVE_FIELDS, (points.shape, primitives.shape)
    kind = primitives[..., 0].long()
    centre, rot = primitives[..., 1:4], primitives[..., 4:13].reshape(R, P, 3, 3)
    size = primitives[..., 13:17]
    local = torch.einsum("rpji,rpj->rpi", rot, points[:, None, :] - centre)  # R^T (p - c)
    distance = torch.full((R, P), float("inf"), dtype=points.dtype, device=points.device)
    for k in range(len(KINDS)):
        mask = kind == k
        if mask.any():
            distance[mask] = sdf(k, local[mask], size[mask])
    best = distance.min(dim=-1)
    return best.values, best.indices


def surface_colour(points: Tensor, primitives: Tensor, nearest: Tensor) -> Tensor:
    """Colour [R, 3] at surface points [R, 3] of primitive `nearest` [R] of each row's primitives
    [R, P, PRIMITIVE_FIELDS]: its pattern's colour where the pattern shows, else its own."""
    rows = primitives[torch.arange(points.shape[0], device=points.device), nearest]  # [R, PRIMITIVE_FIELDS]
    shows = pattern_mask(points, rows[:, 20:])
    return torch.where(shows[:, None], rows[:, 21:24], rows[:, 17:20])
