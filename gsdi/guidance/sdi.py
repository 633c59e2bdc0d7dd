"""SDI noise: kappa from DDIM inversion of the current render x0 up to t' (shared/method.md, step 2).

The inversion runs over the prior's 'leading' grid of K points below t, from a virtual clean start
(abar = 1), to the end point t' = min(t + delta, T - 1) with delta ~ U{0 .. T//K - 1}; each step uses
CFG with the inversion scale (default -7.5, leaning away from the prompt) and eta-scaled noise.
Cost: one CFG-batched UNet call per grid point below t, plus one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.config import GuidanceConfig
from gsdi.guidance.rng import Rng
from gsdi.guidance.ddim import CLEAN, ddim_invert, inversion_grid, noise_of
from gsdi.priors import Prior, TextCond


def sdi_noise(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t', t', kappa) where x_t' is where DDIM inversion of x0 lands at t'."""
    T = prior.alphas_cumprod.shape[0]
    K = config.inversion_steps
    delta = int(torch.randint(0, max(T // K, 1), (1,), generator=rng.host))
    t_end = min(t + delta, T - 1)
    timesteps = [CLEAN, *inversion_grid(t, T, K, prior.steps_offset), t_end]

    def eps_fn(x: Tensor, s: int) -> Tensor:
        return prior.predict_noise(x, s, text, config.inversion_cfg_scale)

    with torch.no_grad():
        x_t = ddim_invert(eps_fn, x0, prior.alphas_cumprod, timesteps, config.inversion_eta, rng.device)
    return x_t, t_end, noise_of(x_t, x0, prior.alphas_cumprod[t_end])
