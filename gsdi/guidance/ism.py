"""ISM noise (LucidDreamer's interval score matching), a comparison row for SDI, not the product.

Deterministic DDIM inversion of the render with the unconditional prediction (CFG 0), from the
clean image in strides of `ISM_STRIDE` up to s = t - `ISM_INTERVAL`, then one more step from s to t.
The update compares the prediction at (x_t, t) with the unconditional prediction at (x_s, s) (the
last inversion step's noise), not with the noise that x_t holds; returning that as kappa puts ISM
through the same loss as SDS and SDI.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.config import GuidanceConfig
from gsdi.guidance.ddim import CLEAN, abar_at, ddim_step
from gsdi.guidance.rng import Rng
from gsdi.priors import Prior, TextCond

ISM_INTERVAL = 50  # t - s
ISM_STRIDE = 200  # stride of the inversion from the clean image to s


def ism_noise(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t, t, eps_u(x_s, s))."""
    s = max(t - ISM_INTERVAL, 0)
    timesteps = [CLEAN, *range(ISM_STRIDE, s, ISM_STRIDE), s, t]
    x, eps = x0, None
    with torch.no_grad():
        for a, b in zip(timesteps, timesteps[1:]):
            eps = prior.predict_noise(x, max(a, 0), text, 0.0)
            x = ddim_step(x, eps, abar_at(prior.alphas_cumprod, a), abar_at(prior.alphas_cumprod, b))
    return x, t, eps
