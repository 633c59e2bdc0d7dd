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
    pix: Tensor,  # [T, P, 2]
    means2d: Tensor,  # [T, K, 2]
    conics: Tensor,  # [T, K, 3]
    opacities: Tensor,  # [T, K] (0 for padding)
    colors: Tensor,  # [T, K, D]
) -> tuple[Tensor, Tensor]:
    dx = pix[:, :, None, 0] - means2d[:, None, :, 0]  # [T, P, K]
    dy = pix[:, :, None, 1] - means2d[:, None, :, 1]
    a, b, c = conics[:, None, :, 0], conics[:, None, :, 1], conics[:, None, :, 2]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp_max(opacities[:, None, :] * torch.exp(-sigma), 0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    log_t = torch.log1p(-alpha)
    log_t_incl = torch.cumsum(log_t, dim=-1)
    # A pixel stops before the Gaussian that would bring its transmittance to <= 1e-4.
    keep = (log_t_incl > torch.log(torch.tensor(1e-4, dtype=alpha.dtype))).to(alpha.dtype)
    weights = alpha * torch.exp(log_t_incl - log_t) * keep  # [T, P, K]
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
    chunk_elements: int = 1 << 22,
    checkpointing: bool | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """Composite to images: colors [C,H,W,D] and alphas [C,H,W,1], plus intersection info.

    `chunk_elements` bounds the size of one [tiles, pixels, K] block; `checkpointing` (default: when a
    gradient is needed) recomputes blocks in the backward pass instead of keeping them, so memory
    stays at a few blocks whatever the scene size.
    """
    C, N, D = colors.shape
    assert means2d.shape == (C, N, 2) and conics.shape == (C, N, 3), (means2d.shape, conics.shape)
    assert opacities.shape == (C, N) and radii.shape == (C, N, 2) and depths.shape == (C, N)
    device, dtype = means2d.device, means2d.dtype
    tile_w, tile_h = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    n_tiles, P = tile_w * tile_h, tile_size * tile_size
    gauss_ids, tile_ids, tile_counts = isect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h)

    # Pixel centres of every tile and where they land in the flat [C*H*W] output (-1: off the image).
    py, px = torch.meshgrid(torch.arange(tile_size, device=device), torch.arange(tile_size, device=device), indexing="ij")
    tile_all = torch.arange(C * n_tiles, device=device)
    t_local = tile_all % n_tiles
    gx = (t_local % tile_w)[:, None] * tile_size + px.flatten()[None]  # [CT, P]
    gy = (t_local // tile_w)[:, None] * tile_size + py.flatten()[None]
    pix_index = torch.where(
        (gx < width) & (gy < height), (tile_all // n_tiles)[:, None] * height * width + gy * width + gx, -1
    )

    # Flat per-(camera, Gaussian) attributes with one padding row (opacity 0) at the end.
    def flat(x: Tensor, pad: float = 0.0) -> Tensor:
        x = x.reshape(C * N, -1)
        return torch.cat([x, torch.full_like(x[:1], pad)])

    f_means, f_conics, f_colors = flat(means2d), flat(conics), flat(colors)
    f_opac = flat(opacities)[:, 0]
    pad_id = C * N

    # Tiles with work, longest lists first, cut into chunks of bounded size.
    starts = torch.cumsum(tile_counts, 0) - tile_counts
    busy = torch.nonzero(tile_counts > 0).squeeze(1)
    busy = busy[torch.argsort(tile_counts[busy], descending=True)]
    counts_host = tile_counts[busy].tolist()
    if checkpointing is None:
        checkpointing = torch.is_grad_enabled() and means2d.requires_grad
    out_idx, out_rgb, out_alpha = [], [], []
    i = 0
    while i < len(counts_host):
        K = counts_host[i]
        n_chunk = max(1, chunk_elements // (P * K))
        tiles = busy[i : i + n_chunk]
        i += n_chunk
        k_range = torch.arange(K, device=device)
        slot = starts[tiles][:, None] + k_range[None]  # [T, K]
        ids = torch.where(k_range[None] < tile_counts[tiles][:, None], gauss_ids[slot.clamp_max(len(gauss_ids) - 1)], pad_id)
        pix = torch.stack([gx[tiles], gy[tiles]], dim=-1).to(dtype) + 0.5  # [T, P, 2]
        args = (pix, f_means[ids], f_conics[ids], f_opac[ids], f_colors[ids])
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
