"""Score distillation, SDS and SDI behind one function (docs/method.md, steps 1-4).

The two methods share everything but how the noise kappa (and its timestep t') is produced:
`sds.sds_noise` draws it, `sdi.sdi_noise` gets it by DDIM inversion of the render. The prediction,
target and loss below are common, which is the paper's point and keeps the comparison fair. As in the
reference, SDI's sample from t' is predicted at the scheduled t (`prediction_timestep`).
`ism.ism_noise` (LucidDreamer's interval score matching) goes through the same loss, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from gsdi.config import GuidanceConfig
from gsdi.guidance.ddim import add_noise, noise_of
from gsdi.guidance.ism import ism_noise
from gsdi.guidance.schedule import run_timestep, timestep
from gsdi.rng import Rng
from gsdi.guidance.sdi import sdi_noise
from gsdi.guidance.sds import sds_noise
from gsdi.priors import Prior, TextCond

NoiseFn = Callable[[Prior, Tensor, int, TextCond, GuidanceConfig, Rng], "tuple[Tensor, int, Tensor]"]
NOISE: dict[str, NoiseFn] = {  # (prior, x0, t, text, config, rng) -> (x_t', t', kappa)
    "sds": lambda prior, x0, t, text, config, rng: sds_noise(prior, x0, t, rng),
    "sdi": sdi_noise,
    "ism": ism_noise,
}

__all__ = ["Rng", "GuidanceOutput", "guidance_loss", "timestep", "run_timestep", "kept_noise", "NOISE"]


@dataclass
class GuidanceOutput:
    loss: Tensor  # scalar, differentiable in x0
    t: int  # the scheduled timestep
    t_noisy: int  # t' of the noisy sample (t for SDS)
    t_pred: int  # the timestep the prediction is asked at and the target read at (t, or t' with "inverted")
    noise: Tensor  # [B, c, h, w] the noise x_t' holds at t_noisy (what `kept_noise` keeps)
    kappa: Tensor  # [B, c, h, w] the noise the update is measured against: x_t' = sqrt(abar) x0 + sqrt(1 - abar) kappa at t_pred
    eps: Tensor  # [B, c, h, w] the CFG prediction at (x_t', t_pred)
    target: Tensor  # [B, c, h, w] the one-step prediction the loss pulls x0 toward (detached)


def guidance_loss(
    prior: Prior,
    x0: Tensor,  # [B, c, h, w] the render in the prior's model space, with gradient
    text: TextCond,
    t: int,
    config: GuidanceConfig,
    rng: Rng,
    kappa_fn: NoiseFn | None = None,
) -> GuidanceOutput:
    """loss = 0.5 mean((x0 - target)^2) / B, target = x0 - sqrt((1 - abar)/abar) (eps_hat - kappa).

    The noise function gives the noisy sample x_t' and its t'. The prediction eps_hat is asked at
    t_pred, the scheduled t (the reference's labelling; prediction_timestep "scheduled") or t'
    ("inverted"), and kappa is the noise x_t' holds read at t_pred, so that the target is the one-step
    DDIM prediction (x_t' - sqrt(1 - abar) eps_hat) / sqrt(abar) with abar = abar[t_pred]; the
    gradient in x0 is sqrt((1 - abar)/abar) (eps_hat - kappa) / numel: the SDS update with weight
    sigma/alpha. (For SDS and ISM t' = t.) `kappa_fn` overrides the method's noise (tests pass a fixed
    kappa).
    """
    B = x0.shape[0]
    assert x0.dim() == 4 and text.cond.shape[0] == B, (x0.shape, text.cond.shape)
    if kappa_fn is None and config.method not in NOISE:
        raise ValueError(f"guidance method {config.method!r}: resolve 'auto' first (gsdi.config.resolve_auto_method)")
    noise_fn = kappa_fn or NOISE[config.method]
    x = x0.detach()
    with torch.no_grad():
        x_t, t_noisy, kappa = noise_fn(prior, x, t, text, config, rng)
        noise, t_pred = kappa, (t if config.prediction_timestep == "scheduled" else t_noisy)
        abar = prior.alphas_cumprod[t_pred]
        if t_pred != t_noisy:
            kappa = noise_of(x_t, x, abar)
        eps = prior.predict_noise(x_t, t_pred, text, config.standard_scale(config.cfg_scale))
        target = x - ((1 - abar) / abar).sqrt() * (eps - kappa)
    loss = 0.5 * torch.mean((x0 - target) ** 2) / B
    return GuidanceOutput(loss=loss, t=t, t_noisy=t_noisy, t_pred=t_pred, noise=noise, kappa=kappa, eps=eps, target=target)


def kept_noise(noise: Tensor, t_noisy: int) -> NoiseFn:
    """A noise function that keeps an earlier step's noise [B, c, h, w] at t': x_t' is rebuilt from the
    current render with it, and the prediction is asked anew (guidance.hold_steps; docs/exact-study.md)."""

    def fn(prior: Prior, x0: Tensor, t: int, text: TextCond, config: GuidanceConfig, rng: Rng):
        return add_noise(x0, noise, prior.alphas_cumprod[t_noisy]), t_noisy, noise

    return fn
