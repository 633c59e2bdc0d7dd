"""Ray-traced renders of world objects with exactly gsdi's cameras and background.

Sphere tracing of the primitives' signed distances, batched over objects and pixels (CPU or GPU),
shaded with one light fixed in world space: colour * (ambient + diffuse * max(0, n.l)). A world
render and a splat render of the same view are comparable pixel for pixel (same intrinsics, pixel
centres at +0.5, same background).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.cameras import Cameras, camera_positions, sample_orbits
from gsdi.prompts import VIEW_WORDS
from gsdi.world.shapes import PRIMITIVE_FIELDS, scene_distance, surface_colour

LIGHT = (0.4, -0.8, 0.6)  # towards the light: above (-Y), front (+Z), right (+X)
AMBIENT = 0.35
BOUND = 0.95  # every object lies inside this sphere around the origin
# Rays traced at once by render_objects, by device. Each ray carries its object's primitives, so a
# call's memory grows with its rays; each call also runs the tracing loop's ~100 small steps, which
# on a GPU cost launches, not arithmetic. render_pool(768, size 128, half patterned) on one H200,
# side by side in one process (object building included): 2^19 rays a call 7.6 s (1.8 GB peak),
# 2^20 5.0 s (3.3 GB), 2^21 3.0 s (6.4 GB), 2^22 2.2 s (12.6 GB), 2^23 1.9 s (24.6 GB), one call
# 1.6 s (37 GB); `examples/bench_world.py --max-rays` repeats it. On 2 CPU cores the split costs
# little either way (64 views at 128 px: 15.9 s split against 17.7 s whole on one day, 17.6 against
# 16.7 on another), so the CPU keeps 2^19 for its memory.
MAX_RAYS = {"cpu": 1 << 19, "cuda": 1 << 22}


def pad_objects(objects: list[Tensor]) -> Tensor:
    """Stack objects of different primitive counts into [B, P, PRIMITIVE_FIELDS] (padding rows have kind -1)."""
    P = max(o.shape[0] for o in objects)
    out = torch.zeros(len(objects), P, PRIMITIVE_FIELDS)
    out[..., 0] = -1
    for i, o in enumerate(objects):
        out[i, : o.shape[0]] = o
    return out


@torch.no_grad()
def render_objects(
    primitives: Tensor,  # [C, P, PRIMITIVE_FIELDS]: object c is seen by camera c
    cameras: Cameras,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    steps: int = 96,
) -> tuple[Tensor, Tensor]:
    """RGB [C, H, W, 3] in [0, 1] over the background, and coverage alpha [C, H, W, 1] (0 or 1).
    Traced MAX_RAYS[device] rays at a time (whole cameras): each ray carries its object's primitives, so
    memory grows with the rays of one call (a 1024-view batch at 128 px once asked for 10 GB)."""
    C, H, W = len(cameras), cameras.height, cameras.width
    assert primitives.shape[0] == C and primitives.shape[2] == PRIMITIVE_FIELDS, primitives.shape
    per_call = max(1, MAX_RAYS.get(primitives.device.type, MAX_RAYS["cpu"]) // (H * W))
    parts = [_trace(primitives[i:i + per_call], cameras.take(slice(i, i + per_call)), background, steps)
             for i in range(0, C, per_call)]
    return torch.cat([rgb for rgb, _ in parts]), torch.cat([alpha for _, alpha in parts])


def _trace(primitives: Tensor, cameras: Cameras, background: tuple[float, float, float], steps: int) -> tuple[Tensor, Tensor]:
    """render_objects for one call's cameras."""
    C, H, W = len(cameras), cameras.height, cameras.width
    device = primitives.device
    viewmats, Ks = cameras.viewmats.to(device), cameras.Ks.to(device)
    ys, xs = torch.meshgrid(torch.arange(H, device=device) + 0.5, torch.arange(W, device=device) + 0.5, indexing="ij")
    d_cam = torch.stack([(xs[None] - Ks[:, 0, 2, None, None]) / Ks[:, 0, 0, None, None],
                         (ys[None] - Ks[:, 1, 2, None, None]) / Ks[:, 1, 1, None, None],
                         torch.ones(C, H, W, device=device)], dim=-1)  # [C, H, W, 3]
    dirs = torch.einsum("cji,chwj->chwi", viewmats[:, :3, :3], d_cam).reshape(-1, 3)  # R^T d
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = camera_positions(viewmats)[:, None, :].expand(C, H * W, 3).reshape(-1, 3)
    prims = primitives[:, None].expand(C, H * W, *primitives.shape[1:]).reshape(C * H * W, *primitives.shape[1:])

    # Start where the ray enters the bounding sphere; rays that miss it see the background.
    b = (origins * dirs).sum(-1)
    disc = b * b - (origins * origins).sum(-1) + BOUND * BOUND
    enters = disc > 0
    t = (-b - disc.clamp_min(0).sqrt()).clamp_min(0)
    t_far = -b + disc.clamp_min(0).sqrt()
    hit = torch.zeros_like(enters)
    active = enters.clone()
    for _ in range(steps):
        if not active.any():
            break
        idx = torch.nonzero(active).squeeze(1)
        dist, _ = scene_distance(origins[idx] + t[idx, None] * dirs[idx], prims[idx])
        now_hit = dist < 1e-3
        t[idx] = t[idx] + torch.where(now_hit, torch.zeros_like(dist), 0.8 * dist)
        hit[idx] = now_hit
        active[idx] = ~now_hit & (t[idx] < t_far[idx])

    colour = torch.tensor(background, dtype=torch.float32, device=device).expand(C * H * W, 3).clone()
    idx = torch.nonzero(hit).squeeze(1)
    if idx.numel():
        points = origins[idx] + t[idx, None] * dirs[idx]
        albedo = surface_colour(points, prims[idx], scene_distance(points, prims[idx])[1])
        normal = torch.zeros_like(points)
        eps = 1e-3
        for k in ((1, -1, -1), (-1, -1, 1), (-1, 1, -1), (1, 1, 1)):  # tetrahedron gradient
            kv = torch.tensor(k, dtype=points.dtype, device=device)
            normal = normal + kv * scene_distance(points + eps * kv, prims[idx])[0][:, None]
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        light = torch.tensor(LIGHT, dtype=points.dtype, device=device)
        light = light / light.norm()
        shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0)
        colour[idx] = (albedo * shade[:, None]).clamp(0, 1)
    return colour.reshape(C, H, W, 3), hit.to(torch.float32).reshape(C, H, W, 1)


def render_pool(n: int, seed: int, size: int, device: str, batch: int = 1024, patterned: float = 0.0,
                supersample: int = 1) -> dict[str, torch.Tensor]:
    """n labelled renders of random objects from random training orbits: images uint8 [n, 3, size, size],
    and indices [n] into CATEGORIES, PALETTE and VIEW_WORDS (category, colour, view); with
    `patterned` > 0 that fraction of the objects carries a random pattern, labelled by pattern
    (0 plain, else 1 + its index in PATTERNS) and pattern_colour (an index into PALETTE, -1 when
    plain). `supersample` s renders s*size pixels a side and averages s x s blocks (anti-aliased
    edges and patterns). With patterned 0 the pool is the one earlier versions drew."""
    import torch.nn.functional as F

    from gsdi.world.objects import CATEGORIES, PALETTE, sample_object
    from gsdi.world.shapes import PATTERNS

    CATS, COLOURS = list(CATEGORIES), list(PALETTE)
    g = torch.Generator().manual_seed(seed)
    images, cats, cols, views, pats, pat_cols = [], [], [], [], [], []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        cat = torch.randint(len(CATS), (m,), generator=g)
        pattern, pattern_colour = torch.zeros(m, dtype=torch.long), torch.full((m,), -1)
        if patterned > 0:
            pattern = torch.where(torch.rand(m, generator=g) < patterned, torch.randint(len(PATTERNS), (m,), generator=g) + 1, 0)
            pattern_colour = torch.where(pattern > 0, torch.randint(len(COLOURS), (m,), generator=g), -1)
        objects, colour_ids = [], []
        for i in range(m):
            kind, second = (PATTERNS[int(pattern[i]) - 1], COLOURS[int(pattern_colour[i])]) if pattern[i] else (None, None)
            prims, colour = sample_object(CATS[int(cat[i])], None, seed * 10_000_000 + start + i, kind, second)
            objects.append(prims)
            colour_ids.append(COLOURS.index(colour))
        cams = sample_orbits(m, size * supersample, size * supersample, g)
        rgb, _ = render_objects(pad_objects(objects).to(device), cams)
        rgb = F.avg_pool2d(rgb.permute(0, 3, 1, 2), supersample) if supersample > 1 else rgb.permute(0, 3, 1, 2)
        images.append((rgb * 255).round().to(torch.uint8))
        cats.append(cat)
        cols.append(torch.tensor(colour_ids))
        views.append(torch.tensor([VIEW_WORDS.index(w) for w in cams.view_words()]))
        pats.append(pattern)
        pat_cols.append(pattern_colour)
    return {"images": torch.cat(images), "category": torch.cat(cats).to(device),
            "colour": torch.cat(cols).to(device), "view": torch.cat(views).to(device),
            "pattern": torch.cat(pats).to(device), "pattern_colour": torch.cat(pat_cols).to(device)}
