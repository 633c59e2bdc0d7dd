"""Image degradations the quality yardstick must see: blur, noise, speckle and haze.

All take and return images [B, 3, H, W] in [0, 1]. They are what the critic (gsdi/eval/critic.py)
learns to grade and what the yardstick's validation (examples/validate_yardstick.py) applies to
held-out world renders; a removed part is a change of the object, not of the image
(gsdi.world.objects.without_part).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("blur", "noise", "speckle", "haze")


def _check(images: Tensor) -> int:
    assert images.dim() == 4 and images.shape[1] == 3, f"images must be [B, 3, H, W], got {tuple(images.shape)}"
    return images.shape[0]


def _per_image(value: float | Tensor, B: int, images: Tensor) -> Tensor:
    v = torch.as_tensor(value, dtype=images.dtype, device=images.device).reshape(-1)
    assert v.numel() in (1, B), f"one strength or one per image ({B}), got {v.numel()}"
    return v.expand(B)


def blur(images: Tensor, sigma: float | Tensor) -> Tensor:
    """Gaussian blur of `sigma` pixels (one value, or one per image [B]); sigma 0 leaves an image as it is."""
    B = _check(images)
    sigma = _per_image(sigma, B, images)
    radius = max(1, int(torch.ceil(3 * sigma.max()).item()))
    r = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # [B, 2 radius + 1]; sigma ~0 is a delta
    k = kernel.repeat_interleave(3, 0)
    x = images.reshape(1, B * 3, *images.shape[2:])
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=B * 3)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=B * 3)
    return x.reshape_as(images)


def noise(images: Tensor, std: float | Tensor, generator: torch.Generator) -> Tensor:
    """Additive Gaussian noise of `std` (in [0, 1] units) per pixel and channel, clipped to [0, 1]."""
    B = _check(images)
    std = _per_image(std, B, images)[:, None, None, None]
    z = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + std * z).clamp(0, 1)


def speckle(images: Tensor, fraction: float | Tensor, generator: torch.Generator) -> Tensor:
    """Random opaque dots: each pixel becomes a random colour with probability `fraction`."""
    B, _, H, W = images.shape
    _check(images)
    fraction = _per_image(fraction, B, images)[:, None, None, None]
    hit = torch.rand((B, 1, H, W), generator=generator).to(images.device) < fraction
    colour = torch.rand((B, 3, H, W), generator=generator).to(images.device, images.dtype)
    return torch.where(hit, colour, images)


def haze(images: Tensor, amount: float | Tensor) -> Tensor:
    """Blend towards white (the background) by `amount` in [0, 1]."""
    B = _check(images)
    amount = _per_image(amount, B, images)[:, None, None, None]
    return torch.lerp(images, torch.ones_like(images), amount)


def apply(kind: str, images: Tensor, strength: float | Tensor, generator: torch.Generator) -> Tensor:
    """One of KINDS at `strength` (sigma px, noise std, dot fraction, haze amount)."""
    if kind == "blur":
        return blur(images, strength)
    if kind == "noise":
        return noise(images, strength, generator)
    if kind == "speckle":
        return speckle(images, strength, generator)
    if kind == "haze":
        return haze(images, strength)
    raise ValueError(f"unknown degradation {kind!r}; one of {', '.join(KINDS)}")
