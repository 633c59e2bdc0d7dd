"""Closed-form DDIM: stateless functions over a prior's `alphas_cumprod` (abar).

Timesteps are integers in [0, T). `CLEAN` (-1) stands for the virtual clean image with abar = 1 where
sampling ends (and ISM's inversion begins; the model is asked at timestep 0 there). SDI's inversion
from the clean render begins as its reference does (diffusers' DDIMInverseScheduler with
set_alpha_to_one=False, as Stable Diffusion's scheduler configs set): one grid stride before the
grid, a negative timestep that the model is asked at as it is, with abar = alphas_cumprod[0]
(`ddim_invert`'s `start_abar`). `eps_fn(x, t)` is any noise predictor taking a batch [B, ...] and an
integer timestep.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

CLEAN = -1  # virtual timestep of the clean image: abar = 1

EpsFn = Callable[[Tensor, int], Tensor]


def abar_at(alphas_cumprod: Tensor, t: int) -> Tensor:
    """abar[t] as a 0-d float64-safe tensor; 1 for the virtual clean image."""
    assert t == CLEAN or 0 <= t < alphas_cumprod.shape[0], f"no abar for timestep {t}"
    if t == CLEAN:
        return torch.ones((), dtype=alphas_cumprod.dtype, device=alphas_cumprod.device)
    return alphas_cumprod[t]


def add_noise(x0: Tensor, noise: Tensor, abar: Tensor) -> Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) noise."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def predict_x0(x_t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """The clean image DDIM predicts from x_t and its noise: (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def noise_of(x_t: Tensor, x0: Tensor, abar: Tensor) -> Tensor:
    """The noise kappa with x_t = sqrt(abar) x0 + sqrt(1 - abar) kappa."""
    return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def inversion_sigma(abar_a: Tensor, abar_b: Tensor) -> Tensor:
    """sigma(a, b) of a stochastic inversion step from a to a noisier b (docs/method.md)."""
    return ((1 - abar_a) / (1 - abar_b) * (1 - abar_b / abar_a)).clamp_min(0).sqrt()


def ddim_step(
    x_a: Tensor, eps: Tensor, abar_a: Tensor, abar_b: Tensor, eta: float = 0.0, noise: Tensor | None = None
) -> Tensor:
    """One DDIM step from timestep a to b (either direction) with the noise `eps` predicted at a.

    With eta > 0 (inversion), adds eta * sigma(a, b) * noise.
    """
    x_b = add_noise(predict_x0(x_a, eps, abar_a), eps, abar_b)
    if eta > 0:
        assert noise is not None and noise.shape == x_a.shape, "a stochastic step needs noise shaped like x"
        x_b = x_b + eta * inversion_sigma(abar_a, abar_b) * noise
    return x_b


def inversion_grid(t: int, num_train_timesteps: int, num_steps: int, steps_offset: int = 0) -> list[int]:
    """The 'leading' grid j * (T // K) + steps_offset, j < K, keeping the points below t."""
    stride = num_train_timesteps // num_steps
    return [g for g in (j * stride + steps_offset for j in range(num_steps)) if g < t]


def sampling_grid(num_train_timesteps: int, num_steps: int, steps_offset: int = 0) -> list[int]:
    """Timesteps of plain DDIM sampling with `num_steps` steps: the 'leading' grid, decreasing, then CLEAN."""
    return [*inversion_grid(num_train_timesteps, num_train_timesteps, num_steps, steps_offset)][::-1] + [CLEAN]


def ddim_invert(
    eps_fn: EpsFn,
    x: Tensor,
    alphas_cumprod: Tensor,
    timesteps: Sequence[int],
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    start_abar: Tensor | None = None,
) -> Tensor:
    """Carry x from timesteps[0] up through increasing timesteps; returns x at the last.

    timesteps[0] may be CLEAN (abar 1, the model asked at 0) or, with `start_abar`, any timestep
    before the schedule (SDI's reference start: the model is asked at it as it is, abar = start_abar).
    """
    assert all(a < b for a, b in zip(timesteps, timesteps[1:])), f"timesteps must increase: {timesteps}"
    for i, (a, b) in enumerate(zip(timesteps, timesteps[1:])):
        abar_a = start_abar if i == 0 and start_abar is not None else abar_at(alphas_cumprod, a)
        eps = eps_fn(x, 0 if a == CLEAN else a)
        noise = None
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = ddim_step(x, eps, abar_a, abar_at(alphas_cumprod, b), eta, noise)
    return x


def ddim_sample(eps_fn: EpsFn, x: Tensor, alphas_cumprod: Tensor, timesteps: Sequence[int]) -> Tensor:
    """Deterministic DDIM sampling from timesteps[0] down through decreasing timesteps (CLEAN allowed last)."""
    assert all(a > b for a, b in zip(timesteps, timesteps[1:])), f"timesteps must decrease: {timesteps}"
    for a, b in zip(timesteps, timesteps[1:]):
        x = ddim_step(x, eps_fn(x, a), abar_at(alphas_cumprod, a), abar_at(alphas_cumprod, b))
    return x


def sample_prior(prior, text, noise: Tensor, steps: int = 50, scale: float = 7.5,
                 stop_ratio: float | None = None) -> Tensor:
    """DDIM samples in the prior's model space from `noise` [B, ...]: `steps` steps of the 'leading'
    grid with CFG `scale` on `text` (a priors.TextCond of B rows). With `stop_ratio`, the prior's x0
    prediction at the last grid step whose noise-to-signal ratio sqrt((1 - abar) / abar) is at least
    that (sampling jumps from there to the clean image) instead of sampling down to t ~ 0."""
    abar = prior.alphas_cumprod
    grid = sampling_grid(abar.shape[0], steps, prior.steps_offset)
    if stop_ratio is not None:
        grid = [t for t in grid if t == CLEAN or float(((1 - abar[t]) / abar[t]).sqrt()) >= stop_ratio]
    return ddim_sample(lambda x, t: prior.predict_noise(x, t, text, scale), noise, abar, grid)
