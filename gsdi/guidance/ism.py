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
from gsdi.guidance.ddim import CLEAN, abar_at, ddim_invert, ddim_step
from gsdi.rng import Rng
from gsdi.priors import Prior, TextCond

ISM_INTERVAL = 50  # t - s
ISM_STRIDE = 200  # stride of the inversion from the clean image to s


def ism_noise(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t, t, eps_u(x_s, s))."""
    s = max(t - ISM_INTERVAL, 0)
    abar = prior.alphas_cumprod

    def eps_u(x: Tensor, a: int) -> Tensor:
        return prior.predict_noise(x, a, text, 0.0)

    with torch.no_grad():
        x_s = ddim_invert(eps_u, x0, abar, [CLEAN, *range(ISM_STRIDE, s, ISM_STRIDE), s])
        eps = eps_u(x_s, s)
        return ddim_step(x_s, eps, abar_at(abar, s), abar_at(abar, t)), t, eps
