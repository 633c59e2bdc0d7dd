"""Worlds whose score is exact (gsdi.guidance.exact): what must hold whatever the guidance method."""

from __future__ import annotations

import pytest
import torch

from gsdi.config import GuidanceConfig
from gsdi.guidance import Rng, guidance_loss
from gsdi.guidance.ddim import ddim_invert, ddim_sample, sampling_grid
from gsdi.guidance.exact import detail_amplitude, world
from gsdi.guidance.sdi import sdi_noise
from gsdi.guidance.sds import sds_noise
from gsdi.priors import TextCond

TEXT = TextCond(torch.zeros(4, 1, 1), torch.zeros(4, 1, 1))
WORLDS = ("global", "local", "two-scale")


@pytest.mark.parametrize("kind", WORLDS)
def test_the_worlds_own_samples_are_crisp_and_the_eps_is_the_score(kind):
    w = world(kind)
    g = torch.Generator().manual_seed(0)
    samples = w.prior.sample(64, g)
    assert detail_amplitude(w, samples).mean() > 0.9  # a draw is a mode (up to its thickness s)
    assert detail_amplitude(w, samples.mean(0, keepdim=True)).item() < 0.3  # their average has lost it
    # eps is -sqrt(1 - a) times the score of the noised world: check against autograd of its log density
    x = (0.8 * samples[:2] + 0.5 * torch.randn(samples[:2].shape, generator=g, dtype=torch.float64)).requires_grad_()
    t = 500
    a = w.prior.alphas_cumprod[t]
    var = a * w.prior.s**2 + 1 - a
    logp = 0
    for f in w.prior.factors:
        d2 = ((x.reshape(2, -1) @ f.project)[:, None] - a.sqrt() * f.cond[None]).pow(2).sum(-1)
        logp = logp + torch.logsumexp(-d2 / (2 * var), dim=1).sum()
    (score,) = torch.autograd.grad(logp, x)
    assert torch.allclose(w.prior.eps(x.detach(), t), -(1 - a).sqrt() * score, atol=1e-10)


@pytest.mark.parametrize("kind", WORLDS)
def test_ddim_with_the_exact_prior_lands_on_a_mode(kind):
    w = world(kind)
    z = torch.randn(4, *w.prior.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = lambda x, t: w.prior.predict_noise(x, t, TEXT, 1.0)  # noqa: E731
    x0 = ddim_sample(eps, z, w.prior.alphas_cumprod, sampling_grid(1000, 100, 1))
    assert detail_amplitude(w, x0).min() > 0.8, detail_amplitude(w, x0)


@pytest.mark.parametrize("kind", WORLDS)
def test_inversion_then_sampling_returns_the_start_as_the_grid_gets_fine(kind):
    """eta 0: DDIM's ODE is reversible, up to its discretisation (first order, largest near t = 0, where
    the thin mixture's eps turns fastest): the error falls as the grid gets finer."""
    w = world(kind)
    x0 = w.prior.sample(2, torch.Generator().manual_seed(2))
    eps = lambda x, t: w.prior.predict_noise(x, t, TEXT, 1.0)  # noqa: E731
    errors = []
    for steps in (50, 1000):
        grid = sampling_grid(1000, steps, 1)
        back = ddim_sample(eps, ddim_invert(eps, x0, w.prior.alphas_cumprod, grid[::-1]), w.prior.alphas_cumprod, grid)
        errors.append(float((back - x0).pow(2).mean().sqrt() / x0.pow(2).mean().sqrt()))
    assert errors[1] < 0.04 and errors[1] < 0.4 * errors[0], errors


@pytest.mark.parametrize("kind", WORLDS)
def test_sdis_kappa_solves_the_stationary_point_equation_better_than_random(kind):
    """|kappa - eps(sqrt(a) x0 + sqrt(1 - a) kappa, t')| for SDI's kappa (reference settings, eta 0) vs a draw,
    at a sample of the world, with CFG 7.5 in the prediction and -7.5 in the inversion."""
    w = world(kind)
    x0 = w.prior.sample(4, torch.Generator().manual_seed(3))
    config = GuidanceConfig(method="sdi", inversion_start=0, inversion_cfg_scale=-7.5, inversion_eta=0.0, inversion_steps=10)
    for t in (300, 600, 900):
        residual = {}
        for name, fn in (("sdi", lambda: sdi_noise(w.prior, x0, t, TEXT, config, Rng.seeded(t))),
                         ("sds", lambda: sds_noise(w.prior, x0, t, Rng.seeded(t)))):
            x_t, t_noisy, kappa = fn()
            residual[name] = (kappa - w.prior.predict_noise(x_t, t_noisy, TEXT, 7.5)).norm()
        assert residual["sdi"] < 0.8 * residual["sds"], (kind, t, residual)  # 0.22-0.71 of it here


def test_one_update_per_level_keeps_the_global_detail_with_either_noise():
    """The 2D notebook's regime (x <- target at each of 40 levels) on the global world: SDS and SDI both
    end on a stripe phase; the exact prior makes this a property of the rule, not of a model."""
    w = world("global")
    for method in ("sds", "sdi"):
        config = GuidanceConfig(method=method, inversion_start=0, inversion_cfg_scale=-7.5, inversion_eta=0.3,
                                inversion_steps=10, t_schedule="anneal", p_min=0.02)
        rng = Rng.seeded(0)
        z = torch.randn(4, *w.prior.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        x = (z - (1 - w.prior.alphas_cumprod[999]).sqrt() * w.prior.predict_noise(z, 999, TEXT, 7.5)) / w.prior.alphas_cumprod[999].sqrt()
        for level in range(40):
            t = int(1000 * (0.98 - (0.98 - 0.02) * level / 39))
            x = guidance_loss(w.prior, x, TEXT, t, config, rng).target
        assert detail_amplitude(w, x).min() > 0.8, (method, detail_amplitude(w, x))
