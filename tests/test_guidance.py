"""SDS and SDI share one update; they differ only in the noise. Checked on a closed-form prior."""

from __future__ import annotations

import torch

from gsdi.config import GuidanceConfig
from gsdi.guidance import NOISE, Rng, guidance_loss, timestep
from gsdi.guidance.ddim import add_noise
from gsdi.guidance.sdi import sdi_noise
from gsdi.guidance.sds import sds_noise
from gsdi.priors import TextCond

TEXT = TextCond(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))


def x0_like(prior, seed=5):
    return prior.mu_cond + 0.3 * torch.randn(prior.mu_cond.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


PAPER = dict(inversion_start=0, inversion_cfg_scale=-7.5, inversion_steps=10)  # the paper's clean start (eta 0 below)


def test_sdi_noise_is_deterministic_with_eta0_and_not_random(gaussian_prior):
    config = GuidanceConfig(inversion_eta=0.0, **PAPER)
    x0 = x0_like(gaussian_prior)
    a = sdi_noise(gaussian_prior, x0, 600, TEXT, config, Rng.seeded(1))
    b = sdi_noise(gaussian_prior, x0, 600, TEXT, config, Rng.seeded(1))
    assert a[1] == b[1] and torch.equal(a[2], b[2])
    assert 600 <= a[1] < 700
    # Another seed moves only t' (delta); with the same t' the noise is identical.
    kappa_random = sds_noise(gaussian_prior, x0, 600, Rng.seeded(1))[2]
    assert (a[2] - kappa_random).abs().mean() > 0.1
    # Inversion cost: one UNet call per grid point below t, plus one (the reference's start).
    gaussian_prior.calls = 0
    sdi_noise(gaussian_prior, x0, 600, TEXT, config, Rng.seeded(2))
    assert gaussian_prior.calls == len([-99, 1, 101, 201, 301, 401, 501])  # the start before the grid, the grid below t


def test_with_kappa_given_sds_and_sdi_make_the_same_update(gaussian_prior):
    x0 = x0_like(gaussian_prior)
    kappa = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    fixed = lambda prior, x, t, text, config, rng: (add_noise(x, kappa, prior.alphas_cumprod[t]), t, kappa)  # noqa: E731
    grads = []
    for method in ("sds", "sdi"):
        x = x0.clone().requires_grad_()
        out = guidance_loss(gaussian_prior, x, TEXT, 500, GuidanceConfig(method=method), Rng.seeded(0), kappa_fn=fixed)
        out.loss.backward()
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])
    # And the update is the weighted SDS direction sqrt((1-abar)/abar) (eps_hat - kappa).
    abar = gaussian_prior.alphas_cumprod[500]
    eps = out.eps
    expected = (abar.sqrt().reciprocal() * (1 - abar).sqrt() * (eps - kappa)) / x0.numel()
    assert torch.allclose(grads[0], expected, rtol=1e-9, atol=1e-12)


def test_sdi_noise_is_closer_to_a_stationary_point_than_random(gaussian_prior):
    """|kappa - eps(sqrt(abar) x0 + sqrt(1-abar) kappa)| is smaller for the inverted noise than for random.

    (Not zero even for exact inversion: eps is a posterior mean, not the ODE's inverse. On this
    Gaussian prior SDI's residual is about 0.55-0.65 of the random one for K = 10.)"""
    from tests.conftest import GaussianPrior

    prior = GaussianPrior(gaussian_prior.mu_cond, gaussian_prior.mu_uncond, s=0.5)
    config = GuidanceConfig(inversion_eta=0.0, inversion_cfg_scale=1.0, inversion_start=0, inversion_steps=10)  # the conditional model
    x0 = prior.mu_cond + 0.5 * torch.randn(x0_like(prior).shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for t in (300, 600, 900):
        residual = {}
        for name, fn in (("sdi", sdi_noise), ("sds", NOISE["sds"])):
            x_t, t_noisy, kappa = fn(prior, x0, t, TEXT, config, Rng.seeded(t))
            residual[name] = (kappa - prior.eps(x_t, t_noisy, prior.mu_cond)).norm()
        assert residual["sdi"] < 0.75 * residual["sds"], (t, residual)


def test_timestep_schedules_follow_the_method():
    rng = Rng.seeded(0)
    assert timestep(0, 100, GuidanceConfig(method="sdi"), 1000, rng) == 980
    assert timestep(100, 100, GuidanceConfig(method="sdi"), 1000, rng) == 250
    ts = {timestep(0, 100, GuidanceConfig(method="sds"), 1000, rng) for _ in range(20)}
    assert len(ts) > 10  # random for SDS ...
    assert timestep(0, 100, GuidanceConfig(method="sds", t_schedule="anneal"), 1000, rng) == 980  # ... or annealed


def test_distilling_one_image_moves_it_to_the_prior_mode(gaussian_prior):
    """The 2D sanity check: optimising an image directly with either method pulls it to the data point."""
    for method in ("sds", "sdi"):
        config = GuidanceConfig(method=method, cfg_scale=1.0, inversion_cfg_scale=1.0)
        x = torch.zeros_like(gaussian_prior.mu_cond, requires_grad=True)
        optimizer = torch.optim.Adam([x], lr=0.05)
        rng = Rng.seeded(0)
        start = (x - gaussian_prior.mu_cond).norm().item()
        for step in range(150):
            out = guidance_loss(gaussian_prior, x, TEXT, timestep(step, 150, config, 1000, rng), config, rng)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        assert (x - gaussian_prior.mu_cond).norm().item() < 0.05 * start, method


def test_noised_start_inverts_from_t0_and_falls_back_to_fresh_noise_below_it(gaussian_prior):
    config = GuidanceConfig(inversion_eta=0.0, inversion_start=300, inversion_steps=10)
    x0 = x0_like(gaussian_prior)
    gaussian_prior.calls = 0
    x_t, t_noisy, kappa = sdi_noise(gaussian_prior, x0, 600, TEXT, config, Rng.seeded(2))
    assert gaussian_prior.calls == 1 + len([301, 401, 501])  # from t0, then the grid points between t0 and t
    assert torch.allclose(x_t, add_noise(x0, kappa, gaussian_prior.alphas_cumprod[t_noisy]))
    again = sdi_noise(gaussian_prior, x0, 600, TEXT, config, Rng.seeded(2))
    assert torch.equal(again[2], kappa)  # the start's fresh noise comes from the seeded stream
    # At t' <= t0 nothing is left to invert: the noise is a fresh draw (SDS), no UNet call.
    gaussian_prior.calls = 0
    _, t_low, kappa_low = sdi_noise(gaussian_prior, x0, 150, TEXT, GuidanceConfig(inversion_start=300, inversion_steps=10), Rng.seeded(3))
    assert t_low < 300 and gaussian_prior.calls == 0 and 0.8 < float(kappa_low.std()) < 1.2


def test_noised_start_keeps_the_noise_of_an_off_manifold_render_near_unit_variance():
    """Why gsdi noises the render before inverting: for an image far from the data (a first blob of
    Gaussians), the clean-start inversion reads eps at t ~ 0, where it is (distance to the data) /
    sqrt(1 - abar_0), and carries that up to t'. Data here: N(mu, 0.05^2 I); x0 = mu + 0.3."""
    from tests.conftest import GaussianPrior

    mu = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    prior = GaussianPrior(mu, mu, s=0.05)
    x0 = mu + 0.3
    rms = {}
    for name, start in (("clean", 0), ("noised", 300)):
        config = GuidanceConfig(inversion_eta=0.0, inversion_cfg_scale=1.0, inversion_start=start)
        kappas = torch.stack([sdi_noise(prior, x0, 700, TEXT, config, Rng.seeded(k))[2] for k in range(8)])
        rms[name] = float(kappas.pow(2).mean().sqrt())
    assert rms["clean"] > 3.0 and 0.7 < rms["noised"] < 1.5, rms


def test_target_is_the_one_step_prediction(gaussian_prior):
    from gsdi.guidance.ddim import predict_x0

    x0 = x0_like(gaussian_prior)
    for method in ("sds", "sdi"):
        for labelling in ("scheduled", "inverted"):
            config = GuidanceConfig(method=method, prediction_timestep=labelling)
            out = guidance_loss(gaussian_prior, x0, TEXT, 640, config, Rng.seeded(4))
            assert out.t_pred == (640 if labelling == "scheduled" else out.t_noisy)
            assert method == "sds" or out.t_noisy > 640  # this seed's delta is not 0
            x_t = add_noise(x0, out.kappa, gaussian_prior.alphas_cumprod[out.t_pred])  # kappa read at the label
            assert torch.allclose(out.target, predict_x0(x_t, out.eps, gaussian_prior.alphas_cumprod[out.t_pred]), atol=1e-9)


def test_ism_measures_against_the_unconditional_prediction_one_interval_below(gaussian_prior):
    from gsdi.guidance.ddim import CLEAN as clean, ddim_invert
    from gsdi.guidance.ism import ISM_INTERVAL, ism_noise

    x0 = x0_like(gaussian_prior)
    x_t, t_noisy, kappa = ism_noise(gaussian_prior, x0, 700, TEXT, GuidanceConfig(method="ism"), Rng.seeded(0))
    s = 700 - ISM_INTERVAL
    eps_u = lambda x, t: gaussian_prior.eps(x, t, gaussian_prior.mu_uncond)  # noqa: E731
    x_s = ddim_invert(eps_u, x0, gaussian_prior.alphas_cumprod, [clean, 200, 400, 600, s])
    assert t_noisy == 700 and torch.allclose(kappa, eps_u(x_s, s))
    assert torch.allclose(x_t, ddim_invert(eps_u, x_s, gaussian_prior.alphas_cumprod, [s, 700]))
