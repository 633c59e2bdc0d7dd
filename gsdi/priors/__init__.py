"""The one interface guidance code sees: a frozen text-conditioned epsilon-prediction diffusion model.

Two implementations: `stable_diffusion.StableDiffusionPrior` (diffusers; hub id or local folder)
and `embedded.EmbeddedPrior` (the small world model). Guidance cannot tell them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from gsdi.cameras import VIEW_WORDS


@dataclass
class TextCond:
    """Embeddings for CFG: the (view-dependent) prompts and the negative prompt, one row per view;
    with Perp-Neg (priors/perp_neg.py) also the other views' prompts and their weights."""

    cond: Tensor  # [B, L, D]
    uncond: Tensor  # [B, L, D]
    negatives: Tensor | None = None  # [B, n, L, D] Perp-Neg's negative view prompts
    neg_weights: Tensor | None = None  # [B, n] their weights (negative numbers)


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


_VIEW_PHRASE = re.compile(r"\s*,\s*(?:" + "|".join(VIEW_WORDS) + r")\s+view\s*$", re.IGNORECASE)


def without_view(prompt: str) -> str:
    """The prompt less a trailing view phrase ('a red castle, front view' -> 'a red castle')."""
    return _VIEW_PHRASE.sub("", prompt).strip()


def view_prompts(prompt: str, view_words: Sequence[str]) -> list[str]:
    """'{prompt}, {word} view' per view; a view the prompt already names is replaced per camera."""
    base = without_view(prompt)
    return [f"{base}, {w} view" for w in view_words]


def text_cond(prior: Prior, prompt: str, negative: str, view_words: list[str] | None, batch: int) -> TextCond:
    """Embeddings for `batch` views: view_prompts(prompt, view_words) when view words are given, else the prompt.
    (With Perp-Neg the loop calls perp_neg.perp_neg_text instead.)"""
    prompts = view_prompts(prompt, view_words) if view_words is not None else [prompt] * batch
    assert len(prompts) == batch, (len(prompts), batch)
    return TextCond(cond=prior.text_embeddings(prompts), uncond=prior.text_embeddings([negative] * batch))


class EmbeddingCache:
    """Text embeddings computed once per distinct prompt; `encode(prompts)` gives [n, L, D] for new ones."""

    def __init__(self, encode):
        self.encode, self.table = encode, {}

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> Tensor:
        missing = sorted({p for p in prompts if p not in self.table})
        if missing:
            self.table.update(zip(missing, self.encode(missing)))
        return torch.stack([self.table[p] for p in prompts])


def noise_schedule(scheduler_config: dict, device: torch.device) -> tuple[Tensor, int]:
    """alphas_cumprod [T] (float32 on device) and the 'leading' grid's steps_offset of a diffusers scheduler config."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    return scheduler.alphas_cumprod.float().to(device), int(scheduler.config.get("steps_offset", 0))


def cfg_noise(runner, x_t: Tensor, t: int, text: TextCond, scale: float, dtype: torch.dtype,
              to_eps=None) -> Tensor:
    """eps_u + scale (eps_c - eps_u) from one UNet call on the batch [uncond; cond] (2B), no grad;
    with Perp-Neg negatives (n per view) the batch is [uncond; cond; negatives] ((2 + n) B) and the
    negatives' perpendicular parts join the guidance (perp_neg.combine).

    `runner` is a graphs.UNetRunner (eager or CUDA-graphed); `to_eps(out, x, t)` converts another
    parametrisation (v-prediction) to epsilon.
    """
    B = x_t.shape[0]
    assert text.cond.shape[0] == B and text.uncond.shape[0] == B, (x_t.shape, text.cond.shape)
    rows = [text.uncond, text.cond]
    n = 0
    if text.negatives is not None:
        n = text.negatives.shape[1]
        assert text.negatives.shape[0] == B and text.neg_weights.shape == (B, n), (text.negatives.shape, text.neg_weights.shape)
        rows.append(text.negatives.transpose(0, 1).flatten(0, 1))  # negative-major: [n B, L, D]
    x = x_t.repeat(2 + n, *([1] * (x_t.dim() - 1)))
    timesteps = torch.full((x.shape[0],), t, device=x_t.device, dtype=torch.long)
    with torch.no_grad():
        out = runner(x.to(dtype), timesteps, torch.cat(rows).to(dtype)).float()
    if to_eps is not None:
        out = to_eps(out, x, t)
    eps_u, eps_c = out[:B], out[B:2 * B]
    if n == 0:
        return eps_u + scale * (eps_c - eps_u)
    from gsdi.priors.perp_neg import combine

    eps_neg = out[2 * B:].unflatten(0, (n, B)).transpose(0, 1)  # [B, n, c, h, w]
    return combine(eps_u, eps_c, eps_neg, text.neg_weights, scale)


def load_prior(name: str, device: torch.device, cuda_graphs: bool = False) -> Prior:
    """A prior by name: 'embedded' (or a folder holding one), or a Stable Diffusion hub id or folder.

    With `cuda_graphs` (and a CUDA device) its no-grad UNet calls replay captured CUDA graphs.
    """
    from pathlib import Path

    from gsdi.priors.embedded import CONFIG_FILE, PACKAGED, EmbeddedPrior
    from gsdi.priors.graphs import UNetRunner

    if name == "embedded":
        prior = EmbeddedPrior.load(PACKAGED, device)
    elif (Path(name).expanduser() / CONFIG_FILE).is_file():
        prior = EmbeddedPrior.load(Path(name).expanduser(), device)
    else:
        from gsdi.priors.stable_diffusion import StableDiffusionPrior

        prior = StableDiffusionPrior.load(name, device)
    prior.runner = UNetRunner(prior.unet, graphs=cuda_graphs)
    return prior
