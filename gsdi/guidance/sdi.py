"""SDI noise: kappa from DDIM inversion of the current render x0 up to t' (docs/method.md, step 2).

The inversion runs over the prior's 'leading' grid of K points below t to the end point
t' = min(t + delta, T - 1), delta ~ U{0 .. T//K - 1}; each step uses CFG with the inversion scale and
eta-scaled noise. From the clean render (`inversion_start` 0, the paper's) it begins as the reference
code does: one grid stride before the grid (timestep g_0 - T//K, -99 for Stable Diffusion, which the
model is asked at as it is) with abar = alphas_cumprod[0]. With `inversion_start` t0 > 0 the render is
first noised with fresh noise to t0 and inverted from there: an off-manifold render makes a pixel
prior's noise prediction near t = 0 explode, and a little real noise keeps the inversion on the
model's manifold of noisy images (docs/research-log.md).
Cost: one CFG-batched UNet call per grid point in [t0, t), plus one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsdi.config import GuidanceConfig
from gsdi.rng import Rng
from gsdi.guidance.ddim import ddim_invert, inversion_grid, noise_of
from gsdi.guidance.sds import sds_noise
from gsdi.priors import Prior, TextCond


def sdi_noise(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng) -> tuple[Tensor, int, Tensor]:
    """Returns (x_t', t', kappa) where x_t' is where DDIM inversion of x0 lands at t' and
    x_t' = sqrt(abar[t']) x0 + sqrt(1 - abar[t']) kappa."""
    abar = prior.alphas_cumprod
    T, K = abar.shape[0], config.inversion_steps
    delta = int(torch.randint(0, max(T // K, 1), (1,), generator=rng.host))
    t_noisy = min(t + delta, T - 1)  # t'
    grid = inversion_grid(t, T, K, prior.steps_offset)
    t0 = config.inversion_start
    if t0 > 0 and t0 >= t_noisy:  # nothing to invert: fresh noise, as SDS
        return sds_noise(prior, x0, t_noisy, rng)
    if t0 > 0:  # the render noised to t0 with fresh noise
        start, timesteps, start_abar = sds_noise(prior, x0, t0, rng)[0], [t0, *(g for g in grid if g > t0), t_noisy], None
    else:  # the reference's clean start, one stride before the grid
        first = (grid[0] if grid else prior.steps_offset) - T // K
        start, timesteps, start_abar = x0, [first, *grid, t_noisy], abar[0]
    scale = config.standard_scale(config.inversion_cfg_scale)

    def eps_fn(x: Tensor, s: int) -> Tensor:
        return prior.predict_noise(x, s, text, scale)

    with torch.no_grad():
        x_t = ddim_invert(eps_fn, start, abar, timesteps, config.inversion_eta, rng.device, start_abar)
    return x_t, t_noisy, noise_of(x_t, x0, abar[t_noisy])
