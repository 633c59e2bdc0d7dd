"""Signed distance functions of the world's primitives, batched in torch.

Each primitive is one row of PRIMITIVE_FIELDS floats: kind, centre (3), rotation (3x3, local ->
world, row-major), size (4, meaning per kind below), colour (3, RGB in [0, 1]). Sizes, in the
primitive's local frame (-Y up, as the world):
- sphere: radius
- ellipsoid: radii x, y, z
- box: half extents x, y, z
- cylinder: radius, half height (axis Y)
- cone: radius at the top (-Y), radius at the bottom (+Y), half height (axis Y); top radius 0 = a cone
- torus: ring radius, tube radius (ring in the XZ plane)
Ellipsoid and cone distances are bounds, not exact; the tracer steps conservatively.
"""

from __future__ import annotations

import torch
from torch import Tensor

KINDS = ("sphere", "ellipsoid", "box", "cylinder", "cone", "torus")
KIND_ID = {name: i for i, name in enumerate(KINDS)}
PRIMITIVE_FIELDS = 20  # kind, centre 3, rotation 9, size 4, colour 3


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


def scene_distance(points: Tensor, primitives: Tensor) -> tuple[Tensor, Tensor]:
    """Union of primitives: distance [R] and colour [R, 3] of the nearest primitive.

    points [R, 3] world positions, primitives [R, P, PRIMITIVE_FIELDS] (each ray's own object;
    padding rows have kind -1 and never win).
    """
    R, P, F = primitives.shape
    assert points.shape == (R, 3) and F == PRIMITIVE_FIELDS, (points.shape, primitives.shape)
    kind = primitives[..., 0].long()
    centre, rot = primitives[..., 1:4], primitives[..., 4:13].reshape(R, P, 3, 3)
    size, colour = primitives[..., 13:17], primitives[..., 17:20]
    local = torch.einsum("rpji,rpj->rpi", rot, points[:, None, :] - centre)  # R^T (p - c)
    distance = torch.full((R, P), float("inf"), dtype=points.dtype, device=points.device)
    for k in range(len(KINDS)):
        mask = kind == k
        if mask.any():
            distance[mask] = sdf(k, local[mask], size[mask])
    best = distance.min(dim=-1)
    return best.values, colour[torch.arange(R, device=points.device), best.indices]
