"""Refinement targets: the prior's own few-step DDIM sample from a render noised to t (SDEdit).

After score distillation, `Generation` fits the scene to a buffer of such targets, one view's target
made anew every few steps from the current scene with t falling (config.RefineConfig): an iterative
dataset update, as DreamGaussian's second stage and Instruct-NeRF2NeRF run one. Score distillation
moves the scene by one-step predictions averaged over many draws of the noise; a target here is one
whole DDIM trajectory, with its detail (a pattern's stripes). Off by default: on the latent world
prior it drew a car's stripes as bands but left streaks the yardstick rates further from the world
(research log, 2026-12-05 (last)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gsdi.cameras import Cameras, orbit_cameras, sample_orbits
from gsdi.config import CameraConfig, GenerateConfig, RefineConfig
from gsdi.guidance.ddim import CLEAN, add_noise, ddim_sample
from gsdi.priors import Prior, TextCond
from gsdi.render import to_prior_input


def refine_t(k: int, config: RefineConfig) -> int:
    """The noise level of a target made at refinement step k (0 <= k <= config.steps): t_start at 0,
    falling linearly to t_end at the last step."""
    assert 0 <= k <= config.steps, (k, config.steps)
    return round(config.t_start + (config.t_end - config.t_start) * k / max(1, config.steps))


def sdedit_targets(
    prior: Prior,
    x0: Tensor,  # [B, c, h, w] renders in the prior's model space (prior.encode)
    text: TextCond,
    t: int,
    ddim_steps: int,
    scale: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """[B, c, h, w] the prior's DDIM sample (CFG `scale`, standard form) from x0 noised to t with fresh
    noise, in `ddim_steps` evenly spaced steps down to the clean image; decode it to see it."""
    assert x0.dim() == 4 and text.cond.shape[0] == x0.shape[0], (x0.shape, text.cond.shape)
    abar = prior.alphas_cumprod
    assert 0 <= t < abar.shape[0], f"no timestep {t}"
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    stride = max(1, t // ddim_steps)
    grid = list(range(t, 0, -stride))[:ddim_steps] + [CLEAN]
    with torch.no_grad():
        return ddim_sample(lambda x, s: prior.predict_noise(x, s, text, scale), add_noise(x0, noise, abar[t]), abar, grid)


@dataclass
class Buffer:
    """The refinement's views and their current targets."""

    orbit: tuple[Tensor, Tensor, Tensor, Tensor]  # azimuth, elevation, distance, fov: [N] each
    targets: Tensor  # [N, 3, S, S] in [0, 1]; S: the prior's image size

    def cameras(self, size: int, index: Tensor | None = None) -> Cameras:
        cameras = orbit_cameras(*self.orbit, size, size)
        return cameras if index is None else cameras.take(index)

    def tensors(self) -> dict[str, Tensor]:
        """What a checkpoint keeps (`from_tensors` reads it back)."""
        return {**{f"refine.orbit{i}": v for i, v in enumerate(self.orbit)}, "refine.targets": self.targets}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], device: torch.device) -> "Buffer | None":
        if "refine.targets" not in tensors:
            return None
        return cls(tuple(tensors[f"refine.orbit{i}"] for i in range(4)), tensors["refine.targets"].to(device))


def draw_orbit(camera: CameraConfig, views: int, size: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    """(azimuth, elevation, distance, fov) [views] each: azimuths evenly spaced from a random start, the
    rest drawn as the training views are."""
    drawn = sample_orbits(views, size, size, generator, camera.radius_range, camera.fov_range, camera.elevation_range)
    start = 360.0 * torch.rand(1, generator=generator)
    return (start + torch.arange(views) * 360.0 / views) % 360.0, drawn.elevation, drawn.distance, drawn.fov


def make_targets(prior: Prior, params, cameras: Cameras, config: GenerateConfig, t: int, backend: str,
                 generator: torch.Generator | None = None) -> Tensor:
    """[C, 3, S, S] targets for `cameras` from the scene `params` (S: the prior's image size): each view
    rendered, encoded, noised to t and sampled back by `sdedit_targets` with the run's prompt (its view
    words) and CFG scale, then decoded."""
    from gsdi.prompts import text_cond
    from gsdi.render import render

    gcfg = config.guidance
    words = cameras.view_words() if config.camera.view_dependent_prompt else None
    text = text_cond(prior, config.prompt, config.negative_prompt, words, len(cameras))
    with torch.no_grad():
        rendered = render(params, cameras, config.render.background, backend)
        x0 = prior.encode(to_prior_input(rendered.rgb, prior.image_size), generator=generator)
        latents = sdedit_targets(prior, x0, text, t, config.refine.ddim_steps, gcfg.standard_scale(gcfg.cfg_scale), generator)
        return prior.decode(latents).clamp(0, 1)
