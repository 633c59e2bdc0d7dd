"""Tile-based alpha compositing of projected Gaussians, in plain torch (differentiable by autograd).

The same algorithm as gsplat's CUDA rasterizer: the image is cut into 16x16 tiles, each Gaussian is
listed in every tile its (opacity-aware) bounding box touches, each tile's list is sorted front to
back, and every pixel of the tile composites the whole list with alpha = min(0.999, o exp(-sigma)),
skipping alpha < 1/255 and stopping before the transmittance would fall to 1e-4.

Instead of a per-pixel loop, tiles are processed in chunks as dense [tiles, pixels, K] tensors
(K = longest list in the chunk; tiles are grouped by list length so padding stays small), and the
transmittance is an exclusive cumulative sum of log(1 - alpha).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .projection import ALPHA_THRESHOLD


def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian-tile intersections, sorted by tile then depth (no gradient).

    Returns flat Gaussian ids [M] (c * N + n), their tile ids [M] (c * tiles + ty * tile_width + tx),
    and the number of intersections per tile [C * tile_height * tile_width].
    """
    C, N = radii.shape[:2]
    with torch.no_grad():
        m = means2d.detach() / tile_size
        r = radii.float() / tile_size
        lo_x = torch.floor(m[..., 0] - r[..., 0]).clamp(0, tile_width).long()
        hi_x = torch.ceil(m[..., 0] + r[..., 0]).clamp(0, tile_width).long()
        lo_y = torch.floor(m[..., 1] - r[..., 1]).clamp(0, tile_height).long()
        hi_y = torch.ceil(m[..., 1] + r[..., 1]).clamp(0, tile_height).long()
        visible = (radii > 0).all(dim=-1)
        nx, ny = (hi_x - lo_x) * visible, (hi_y - lo_y) * visible
        counts = (nx * ny).flatten()  # [C * N]
        flat = torch.nonzero(counts > 0).squeeze(1)
        reps = counts[flat]
        owner = torch.repeat_interleave(flat, reps)  # [M] flat Gaussian id of each intersection
        start = torch.cumsum(reps, 0) - reps
        local = torch.arange(owner.shape[0], device=owner.device) - torch.repeat_interleave(start, reps)
        nx_o = nx.flatten()[owner]
        tx = lo_x.flatten()[owner] + local % nx_o
        ty = lo_y.flatten()[owner] + local // nx_o
        n_tiles = tile_width * tile_height
        tile_ids = (owner // N) * n_tiles + ty * tile_width + tx
        order = torch.argsort(depths.detach().flatten()[owner], stable=True)
        order = order[torch.argsort(tile_ids[order], stable=True)]
        tile_counts = torch.bincount(tile_ids, minlength=C * n_tiles)
    return owner[order], tile_ids[order], tile_counts


def _composite(
    features: Tensor,  # [P, 6] tile-local pixel features (u^2, uv, v^2, u, v, 1)
    origin: Tensor,  # [T, 2] pixel coordinates of each tile's corner
    means2d: Tensor,  # [T, K, 2]
    conics: Tensor,  # [T, K, 3]
    opacities: Tensor,  # [T, K]
    colors: Tensor,  # [T, K, D]
) -> tuple[Tensor, Tensor]:
    # sigma - log(opacity) is a quadratic form in tile-local pixel coordinates (u, v), so the whole
    # [T, P, K] block of exponents is one batched matrix product instead of a dozen elementwise passes.
    mu = means2d - origin[:, None, :]  # tile-local means, small numbers: no cancellation trouble
    a, b, c = conics.unbind(-1)
    mx, my = mu.unbind(-1)
    coeffs = torch.stack([
        0.5 * a, b, 0.5 * c,
        -(a * mx + b * my), -(b * mx + c * my),
        0.5 * a * mx * mx + b * mx * my + 0.5 * c * my * my - torch.log(opacities),
    ], dim=-1)  # [T, K, 6]
    exponent = torch.matmul(features, coeffs.transpose(1, 2))  # [T, P, K]
    # Clamping the exponent changes nothing kept (exp(-20) < 1/255) and keeps exp() off denormals.
    alpha = torch.clamp_max(torch.exp(-exponent.clamp_max(20.0)), 0.999)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
    log_t = torch.log1p(-alpha)
    log_t_incl = torch.cumsum(log_t, dim=-1)
    # A pixel stops before the Gaussian that would bring its transmittance to <= 1e-4.
    keep = log_t_incl > math.log(1e-4)
    log_t_excl = (log_t_incl - log_t).clamp_min(-20.0)  # only dropped entries go below log(1e-4)
    weights = torch.where(keep, alpha * torch.exp(log_t_excl), torch.zeros_like(alpha))  # [T, P, K]
    return weights @ colors, weights.sum(dim=-1)  # [T, P, D], [T, P]


def rasterize_to_pixels(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,  # [C, D]
    chunk_elements: int = 1 << 20,
    checkpoint_above: int = 1 << 26,
) -> tuple[Tensor, Tensor, dict]:
    """Composite to images: colors [C,H,W,D] and alphas [C,H,W,1], plus intersection info.

    `chunk_elements` bounds the size of one [tiles, pixels, K] block. When a gradient is needed and
    all blocks together exceed `checkpoint_above` elements, blocks are recomputed in the backward pass
    instead of kept (about 1.5x the time, memory of a few blocks whatever the scene size).
    """
    C, N, D = colors.shape
    assert means2d.shape == (C, N, 2) and conics.shape == (C, N, 3), (means2d.shape, conics.shape)
    assert opacities.shape == (C, N) and radii.shape == (C, N, 2) and depths.shape == (C, N)
    device, dtype = means2d.device, means2d.dtype
    tile_w, tile_h = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    n_tiles, P = tile_w * tile_h, tile_size * tile_size
    gauss_ids, tile_ids, tile_counts = isect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h)

    # Pixels of every tile and where they land in the flat [C*H*W] output (-1: off the image).
    py, px = torch.meshgrid(torch.arange(tile_size, device=device), torch.arange(tile_size, device=device), indexing="ij")
    u, v = px.flatten().to(dtype) + 0.5, py.flatten().to(dtype) + 0.5  # pixel centres, tile-local
    features = torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)  # [P, 6]
    tile_all = torch.arange(C * n_tiles, device=device)
    t_local = tile_all % n_tiles
    gx = (t_local % tile_w)[:, None] * tile_size + px.flatten()[None]  # [CT, P]
    gy = (t_local // tile_w)[:, None] * tile_size + py.flatten()[None]
    pix_index = torch.where(
        (gx < width) & (gy < height), (tile_all // n_tiles)[:, None] * height * width + gy * width + gx, -1
    )

    # Flat per-(camera, Gaussian) attributes with one padding row at the end: a Gaussian far off
    # the image (alpha exactly 0, every gradient finite).
    def flat(x: Tensor, pad: list[float]) -> Tensor:
        x = x.reshape(C * N, -1)
        return torch.cat([x, torch.tensor([pad], dtype=x.dtype, device=x.device)])

    f_means, f_conics = flat(means2d, [-1e4, -1e4]), flat(conics, [1.0, 0.0, 1.0])
    f_colors, f_opac = flat(colors, [0.0] * D), flat(opacities, [1.0])[:, 0]
    pad_id = C * N

    # Tiles with work, longest lists first, cut into chunks of bounded size.
    starts = torch.cumsum(tile_counts, 0) - tile_counts
    busy = torch.nonzero(tile_counts > 0).squeeze(1)
    busy = busy[torch.argsort(tile_counts[busy], descending=True)]
    counts_host = tile_counts[busy].tolist()
    chunks = []  # (first, last, K) over `busy`
    i = 0
    while i < len(counts_host):
        n_chunk = max(1, chunk_elements // (P * counts_host[i]))
        chunks.append((i, min(i + n_chunk, len(counts_host)), counts_host[i]))
        i += n_chunk
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (means2d, conics, colors, opacities))
    checkpointing = needs_grad and sum(P * K * (last - first) for first, last, K in chunks) > checkpoint_above
    out_idx, out_rgb, out_alpha = [], [], []
    for first, last, K in chunks:
        tiles = busy[first:last]
        k_range = torch.arange(K, device=device)
        slot = starts[tiles][:, None] + k_range[None]  # [T, K]
        ids = torch.where(k_range[None] < tile_counts[tiles][:, None], gauss_ids[slot.clamp_max(len(gauss_ids) - 1)], pad_id)
        origin = torch.stack([gx[tiles, 0], gy[tiles, 0]], dim=-1).to(dtype)  # [T, 2]
        args = (features, origin, f_means[ids], f_conics[ids], f_opac[ids], f_colors[ids])
        rgb, alpha = checkpoint(_composite, *args, use_reentrant=False) if checkpointing else _composite(*args)
        index = pix_index[tiles]
        on_image = index >= 0
        out_idx.append(index[on_image])
        out_rgb.append(rgb[on_image])
        out_alpha.append(alpha[on_image])

    total = C * height * width
    render_colors = torch.zeros(total, D, device=device, dtype=dtype)
    render_alphas = torch.zeros(total, device=device, dtype=dtype)
    if out_idx:
        index = torch.cat(out_idx)
        render_colors = render_colors.index_copy(0, index, torch.cat(out_rgb))
        render_alphas = render_alphas.index_copy(0, index, torch.cat(out_alpha))
    render_colors = render_colors.reshape(C, height, width, D)
    render_alphas = render_alphas.reshape(C, height, width, 1)
    if backgrounds is not None:
        assert backgrounds.shape == (C, D), backgrounds.shape
        render_colors = render_colors + backgrounds[:, None, None, :] * (1.0 - render_alphas)
    info = {
        "tile_width": tile_w,
        "tile_height": tile_h,
        "tile_size": tile_size,
        "flatten_ids": gauss_ids,
        "isect_tile_ids": tile_ids,
        "n_isects": int(gauss_ids.shape[0]),
    }
    return render_colors, render_alphas, info
