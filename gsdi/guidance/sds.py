"""SDS noise: kappa ~ N(0, I) and x_t = sqrt(abar[t]) x0 + sqrt(1 - abar[t]) kappa."""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.guidance.ddim import add_noise
from gsdi.priors import Prior
from gsdi.rng import Rng


def sds_noise(prior: Prior, x0: Tensor, t: int, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t, t, kappa) with kappa a fresh standard normal draw from the device stream."""
    kappa = torch.randn(x0.shape, generator=rng.device, device=x0.device, dtype=x0.dtype)
    return add_noise(x0, kappa, prior.alphas_cumprod[t]), t, kappa
