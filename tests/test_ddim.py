"""Closed-form DDIM, checked on priors where DDIM is exact."""

from __future__ import annotations

import torch

from gsdi.guidance.ddim import (CLEAN, add_noise, ddim_invert, ddim_sample, ddim_step, inversion_grid,
                                inversion_sigma, noise_of, predict_x0)
from gsdi.guidance.schedule import t_annealed, t_uniform


def test_sampling_grid_is_the_leading_grid_reversed_down_to_the_clean_image():
    from gsdi.guidance.ddim import sampling_grid

    assert sampling_grid(1000, 4, 1) == [751, 501, 251, 1, CLEAN]


def test_inversion_grid_is_leading_with_offset():
    assert inversion_grid(1000, 1000, 10, 1) == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    assert inversion_grid(250, 1000, 10, 1) == [1, 101, 201]
    assert inversion_grid(1, 1000, 10, 1) == []
    assert inversion_grid(500, 1000, 4, 0) == [0, 250]


def test_noise_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, kappa = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    abar = torch.tensor(0.3, dtype=torch.float64)
    x_t = add_noise(x0, kappa, abar)
    assert torch.allclose(noise_of(x_t, x0, abar), kappa)
    assert torch.allclose(predict_x0(x_t, kappa, abar), x0)


def test_inversion_then_sampling_returns_the_start_point(gaussian_prior):
    """Single-point data: eps is constant along DDIM paths, so the round trip is exact (eta 0)."""
    abar = gaussian_prior.alphas_cumprod
    eps_fn = lambda x, t: gaussian_prior.eps(x, t, gaussian_prior.mu_cond)  # noqa: E731
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = [*inversion_grid(700, 1000, 10, 1), 745]
    x_t = ddim_invert(eps_fn, x, abar, grid)
    back = ddim_sample(eps_fn, x_t, abar, grid[::-1])
    assert torch.allclose(back, x, atol=1e-9)
    assert not torch.allclose(x_t, x, atol=1e-2)


def test_inversion_from_the_clean_image_round_trips_on_a_fine_grid():
    """Gaussian data (s = 0.5): DDIM is the discretised probability-flow ODE; with a fine grid the
    clean-start inversion followed by sampling returns x0, and the error shrinks with the step size."""
    from tests.conftest import GaussianPrior

    g = torch.Generator().manual_seed(2)
    prior = GaussianPrior(torch.randn(1, 3, 8, 8, generator=g), torch.zeros(1, 3, 8, 8), s=0.5)
    eps_fn = lambda x, t: prior.eps(x, t, prior.mu_cond)  # noqa: E731
    x0 = prior.mu_cond + 0.5 * torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    errors = []
    for K in (10, 100, 1000):
        grid = [CLEAN, *inversion_grid(800, 1000, K, 0), 800]
        back = ddim_sample(eps_fn, ddim_invert(eps_fn, x0, prior.alphas_cumprod, grid), prior.alphas_cumprod, grid[::-1])
        errors.append((back - x0).abs().max().item())
    # First order: ten times the steps, about a tenth of the error.
    assert errors[2] < 0.2 * errors[1] < 0.04 * errors[0] and errors[2] < 0.02, errors


def test_stochastic_inversion_adds_sigma_scaled_noise():
    abar_a, abar_b = torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    x, eps, z = (torch.full((1, 1, 2, 2), v, dtype=torch.float64) for v in (0.3, -0.2, 1.0))
    det = ddim_step(x, eps, abar_a, abar_b)
    sto = ddim_step(x, eps, abar_a, abar_b, eta=0.3, noise=z)
    sigma = ((1 - 0.9) / (1 - 0.5) * (1 - 0.5 / 0.9)) ** 0.5
    assert torch.allclose(sto - det, torch.full_like(x, 0.3 * sigma))
    assert torch.allclose(inversion_sigma(abar_a, abar_b), torch.tensor(sigma, dtype=torch.float64))
    assert inversion_sigma(torch.tensor(1.0), torch.tensor(0.5)) == 0  # from the clean start


def test_t_schedules():
    assert [t_annealed(i, 100, 1000, 0.25, 0.98) for i in (0, 50, 100)] == [980, 615, 250]
    g = torch.Generator().manual_seed(0)
    ts = [t_uniform(1000, 0.25, 0.98, g) for _ in range(500)]
    assert min(ts) >= 250 and max(ts) <= 980 and len(set(ts)) > 200

def test_the_noise_comes_back_from_a_round_trip_only_when_the_data_have_thickness():
    """Why the embedded prior is trained with grain: noise -> DDIM-50 sample -> DDIM-50 inversion gives
    back the starting noise for data of std 0.1 around a point, but not for the point itself, whose
    DDIM map sends every noise to the same image (the round trip then returns that image's noise)."""
    from gsdi.guidance.ddim import sampling_grid
    from tests.conftest import GaussianPrior

    g = torch.Generator().manual_seed(3)
    mu = torch.randn(1, 3, 8, 8, generator=g)
    z = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    cosine = {}
    for s in (0.0, 0.1):
        prior = GaussianPrior(mu, mu, s=s)
        eps_fn = lambda x, t: prior.eps(x, t, prior.mu_cond)  # noqa: E731
        grid = sampling_grid(1000, 50, prior.steps_offset)
        back = ddim_invert(eps_fn, ddim_sample(eps_fn, z, prior.alphas_cumprod, grid), prior.alphas_cumprod, grid[::-1])
        cosine[s] = float(torch.nn.functional.cosine_similarity(back.flatten(1), z.flatten(1)).mean())
    assert abs(cosine[0.0]) < 0.2 and cosine[0.1] > 0.95, cosine
