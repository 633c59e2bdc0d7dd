"""SDI noise: kappa from DDIM inversion of the current render x0 up to t' (docs/method.md, step 2).

The inversion runs over the prior's 'leading' grid of K points below t, from a start point, to the
end point t' = min(t + delta, T - 1) with delta ~ U{0 .. T//K - 1}; each step uses CFG with the
inversion scale and eta-scaled noise. The paper starts from the clean render (a virtual timestep
with abar = 1). With `inversion_start` the render is first noised with fresh noise to t0 and
inverted from there: an off-manifold render (a first blob of Gaussians) makes the model's noise
prediction at t ~ 0 explode, and a little real noise keeps the inversion on the model's manifold of
noisy images (docs/research-log.md).
Cost: one CFG-batched UNet call per grid point in [t0, t), plus one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.config import GuidanceConfig
from gsdi.rng import Rng
from gsdi.guidance.ddim import CLEAN, ddim_invert, inversion_grid, noise_of
from gsdi.guidance.sds import sds_noise
from gsdi.priors import Prior, TextCond


def inversion_start(config: GuidanceConfig) -> int:
    """t0 of the inversion: CLEAN (the paper's start, inversion_start 0) or inversion_start."""
    return config.inversion_start if config.inversion_start > 0 else CLEAN


def sdi_noise(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t', t', kappa) where x_t' is where DDIM inversion of x0 lands at t'."""
    T = prior.alphas_cumprod.shape[0]
    K = config.inversion_steps
    delta = int(torch.randint(0, max(T // K, 1), (1,), generator=rng.host))
    t_noisy = min(t + delta, T - 1)  # t'
    t0 = inversion_start(config)
    if t0 >= t_noisy:  # nothing to invert: fresh noise, as SDS
        return sds_noise(prior, x0, t_noisy, rng)
    start = x0 if t0 == CLEAN else sds_noise(prior, x0, t0, rng)[0]  # the render noised to t0
    timesteps = [t0, *(g for g in inversion_grid(t, T, K, prior.steps_offset) if g > t0), t_noisy]

    def eps_fn(x: Tensor, s: int) -> Tensor:
        return prior.predict_noise(x, s, text, config.inversion_cfg_scale)

    with torch.no_grad():
        x_t = ddim_invert(eps_fn, start, prior.alphas_cumprod, timesteps, config.inversion_eta, rng.device)
    return x_t, t_noisy, noise_of(x_t, x0, prior.alphas_cumprod[t_noisy])
