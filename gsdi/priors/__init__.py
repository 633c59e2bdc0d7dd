"""The one interface guidance code sees: a frozen text-conditioned epsilon-prediction diffusion model.

Two implementations: `stable_diffusion.StableDiffusionPrior` (diffusers; hub id or local folder)
and, later, the small embedded prior shipped in the package. Guidance cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class TextCond:
    """Embeddings for CFG: the (view-dependent) prompts and the negative prompt, one row per view."""

    cond: Tensor  # [B, L, D]
    uncond: Tensor  # [B, L, D]


@runtime_checkable
class Prior(Protocol):
    alphas_cumprod: Tensor  # [T] float32, on the prior's device
    steps_offset: int  # offset of the scheduler's 'leading' timestep grid (1 for SD 2.1)
    image_size: int  # side of the square RGB image `encode` takes
    device: torch.device

    def encode(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] RGB in [0, 1] (S = image_size) -> model space [B, c, h, w], differentiable."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """Model space [B, c, h, w] -> [B, 3, S, S] RGB in [0, 1]."""
        ...

    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[B, L, D] embeddings, computed once per distinct prompt and cached."""
        ...

    def predict_noise(self, x_t: Tensor, t: int, text: TextCond, scale: float) -> Tensor:
        """CFG noise eps_u + scale (eps_c - eps_u) at integer timestep t, in one batched call, no grad."""
        ...


def text_cond(prior: Prior, prompt: str, negative: str, view_words: list[str] | None, batch: int) -> TextCond:
    """Embeddings for `batch` views: '{prompt}, {word} view' when view words are given, else the prompt."""
    prompts = [f"{prompt}, {w} view" for w in view_words] if view_words is not None else [prompt] * batch
    assert len(prompts) == batch, (len(prompts), batch)
    return TextCond(cond=prior.text_embeddings(prompts), uncond=prior.text_embeddings([negative] * batch))


def load_prior(name: str, device: torch.device) -> Prior:
    """A prior by name: a diffusers Stable Diffusion hub id or a local folder in diffusers layout."""
    from gsdi.priors.stable_diffusion import StableDiffusionPrior

    return StableDiffusionPrior.load(name, device)
