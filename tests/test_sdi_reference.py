"""The stable-diffusion recipe's SDI update equals the reference implementation's.

The reference is the SDI authors' guidance as merged into threestudio (`stable-diffusion-sdi-guidance`);
`reference_sdi_target` below writes its algorithm out step by step over diffusers' own
DDIMInverseScheduler and DDIMScheduler: the inversion grid with its start one stride before the grid
(asked at that negative timestep, abar = the inverse scheduler's initial_alpha_cumprod), the stochastic
inversion step with DDIMScheduler's variance, the end point t + delta, the prediction at the scheduled
t (not t + delta), the target from DDIMScheduler.step, and its CFG: eps_c + s (eps_c - eps_u) without
Perp-Neg, the standard form with it. A tiny random-weight Stable Diffusion model on the CPU, in float64:
in float32 the reference written two equivalent ways (its CFG form or the standard form with s + 1)
already differs by 2e-5 in the inverted sample, since the random UNet at CFG -6.5 amplifies rounding
over the inversion's steps; in float64 gsdi's update equals the reference's to 1e-9.
With Perp-Neg the reference stacks each view's negatives view by view but repeats the latents batch by
batch, so for more than one view a negative prompt meets another view's latent; its 3D configuration
runs one view a step (batch_size 1), where the two agree, and that is what is compared. gsdi pairs
every negative with its own view's latent.
"""


from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gsdi.config import make_config
from gsdi.guidance import Rng, guidance_loss
from gsdi.priors import load_prior, text_cond
from gsdi.prompts import perp_neg_text

SEED = 6  # its delta (the first draw of gsdi's host stream) is not 0, so t' != t


def perpendicular_component(x, y):
    """threestudio.utils.ops.perpendicular_component, as written there."""
    eps = torch.ones_like(x[:, 0, 0, 0]) * 1e-6
    return x - ((x * y).sum(dim=[1, 2, 3]) / torch.maximum((y * y).sum(dim=[1, 2, 3]), eps)).view(-1, 1, 1, 1) * y


def reference_predict_noise(unet, x, t, text, scale, perp_neg):
    """The reference's predict_noise: [cond; uncond; negatives view-major] in one call."""
    B = x.shape[0]
    if perp_neg:
        n = text.negatives.shape[1]
        embeddings = torch.cat([text.cond, text.uncond, text.negatives.flatten(0, 1)])
        out = unet(torch.cat([x] * (2 + n)), torch.cat([t] * (2 + n)), encoder_hidden_states=embeddings).sample
        eps_text, eps_uncond, eps_neg = out[:B], out[B:2 * B], out[2 * B:]
        e_pos = eps_text - eps_uncond
        accum = 0
        for i in range(n):
            e_i_neg = eps_neg[i::n] - eps_uncond
            accum += text.neg_weights[:, i].view(-1, 1, 1, 1) * perpendicular_component(e_i_neg, e_pos)
        return eps_uncond + scale * (e_pos + accum)
    out = unet(torch.cat([x] * 2), torch.cat([t] * 2), encoder_hidden_states=torch.cat([text.cond, text.uncond])).sample
    eps_text, eps_uncond = out.chunk(2)
    return eps_text + scale * (eps_text - eps_uncond)


def reference_sdi_target(folder, unet, latents, t, text, perp_neg, delta, noise_generator,
                         scale=7.5, inversion_scale=-7.5, K=10, eta=0.3):
    """The reference's compute_grad_sdi target for latents [B, 4, h, w] at scheduled step t."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    scheduler.set_timesteps(50)
    inverse = DDIMInverseScheduler.from_pretrained(folder, subfolder="scheduler")
    inverse.set_timesteps(K)
    for s in (scheduler, inverse):  # float64 as the model (see the module's docstring)
        s.alphas_cumprod = s.alphas_cumprod.double()
    scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    inverse.initial_alpha_cumprod = inverse.initial_alpha_cumprod.double()
    B, T = latents.shape[0], inverse.config.num_train_timesteps
    # get_inversion_timesteps ('leading' spacing)
    step_ratio = T // K
    grid = torch.arange(K) * step_ratio + inverse.config.steps_offset
    grid = grid[grid < t]
    timesteps = [int(grid[0]) - step_ratio, *grid.tolist(), min(t + delta, T - 1)]
    # invert_noise with ddim_inversion_step
    x = latents.clone()
    for a, b in zip(timesteps[:-1], timesteps[1:]):
        eps = reference_predict_noise(unet, x, torch.full((B,), a), text, inversion_scale, perp_neg)
        abar_a = inverse.alphas_cumprod[a] if a >= 0 else inverse.initial_alpha_cumprod
        abar_b = inverse.alphas_cumprod[b]
        x0_pred = (x - (1 - abar_a) ** 0.5 * eps) / abar_a ** 0.5
        x = abar_b ** 0.5 * x0_pred + (1 - abar_b) ** 0.5 * eps
        variance = scheduler._get_variance(b, a) ** 0.5
        x = x + eta * torch.randn(x.shape, generator=noise_generator, dtype=x.dtype) * variance
    # the prediction at the scheduled t, and the target from DDIMScheduler.step
    eps = reference_predict_noise(unet, x, torch.full((B,), t), text, scale, perp_neg)
    return scheduler.step(eps, t, x).pred_original_sample, timesteps


@pytest.mark.parametrize("perp_neg, views", [(False, 2), (True, 1)])
def test_the_stable_diffusion_recipes_sdi_update_is_the_references(tiny_sd, perp_neg, views):
    prior = load_prior(str(tiny_sd), torch.device("cpu"))
    prior.unet.double()
    prior.dtype, prior.alphas_cumprod = torch.float64, prior.alphas_cumprod.double()
    config = make_config("a red castle", prior=str(tiny_sd), **{"guidance.perp_neg": perp_neg}).guidance
    assert config.method == "sdi" and config.perp_neg == perp_neg  # the recipe, with Perp-Neg on or off
    size = prior.image_size // 8
    latents = torch.randn(views, 4, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    azimuths, elevations = torch.tensor([20.0, 150.0])[:views], torch.tensor([10.0, 30.0])[:views]
    if perp_neg:
        text = perp_neg_text(prior, "a red castle", "", azimuths, elevations)
    else:
        text = text_cond(prior, "a red castle", "", ["front", "back"][:views], views)
    text = replace(text, **{k: v.double() for k, v in vars(text).items() if v is not None})
    T, K = 1000, config.inversion_steps
    delta = int(torch.randint(0, T // K, (1,), generator=Rng.seeded(SEED).host))
    assert delta > 0
    for t in (300, 712):
        x = latents.clone().requires_grad_()
        out = guidance_loss(prior, x, text, t, config, Rng.seeded(SEED))
        out.loss.backward()
        expected, timesteps = reference_sdi_target(tiny_sd, prior.unet, latents, t, text, perp_neg, delta,
                                                   Rng.seeded(SEED).device)
        assert timesteps[0] == -99 and timesteps[-1] == t + delta == out.t_noisy and out.t_pred == t
        reference_latents = latents.clone().requires_grad_()
        (0.5 * torch.nn.functional.mse_loss(reference_latents, expected, reduction="mean") / views).backward()
        assert (out.target - expected).abs().max() <= 1e-9, (out.target - expected).abs().max()
        assert (x.grad - reference_latents.grad).abs().max() <= 1e-9
        assert (expected - latents).abs().max() > 1e-2  # an update that moves the latents
