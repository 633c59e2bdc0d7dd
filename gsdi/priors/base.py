"""What every prior shares: the `Prior` protocol, the embedding cache, the noise schedule and
classifier-free guidance (with Perp-Neg's perpendicular negatives). What a prompt becomes for a view
(view words, view prompts, TextCond, Perp-Neg's prompts) is gsdi/prompts.py.

The implementations (`embedded.py`, `stable_diffusion.py`) import from here; `gsdi.priors` re-exports
it and adds `load_prior`.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from gsdi.prompts import TextCond


@runtime_checkable
class Prior(Protocol):
    """What guidance, the step and the run use of a prior; tests/test_priors.py calls every member on
    each implementation (isinstance checks names only)."""

    alphas_cumprod: Tensor  # [T] float32, on the prior's device
    steps_offset: int  # offset of the scheduler's 'leading' timestep grid (1 for SD 2.1)
    image_size: int  # side of the square RGB image `encode` takes
    device: torch.device
    dtype: torch.dtype  # the UNet's weights (fp16 on CUDA for Stable Diffusion)
    unet: torch.nn.Module
    runner: Callable[[Tensor, Tensor, Tensor], Tensor]  # a graphs.UNetRunner over `unet` (eager or CUDA graphs)
    text_embeddings: Callable[[list[str]], Tensor]  # prompts -> [B, L, D], once per distinct prompt (EmbeddingCache)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, S, S] RGB in [0, 1] (S = image_size) -> model space [B, c, h, w], differentiable;
        `generator` draws a VAE's posterior sample (ignored by a deterministic encoder)."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """Model space [B, c, h, w] -> [B, 3, S, S] RGB in [0, 1]."""
        ...

    def predict_noise(self, x_t: Tensor, t: int, text: TextCond, scale: float) -> Tensor:
        """CFG noise eps_u + scale (eps_c - eps_u) at integer timestep t, in one batched call, no grad."""
        ...


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
    """alphas_cumprod [T] (float32 on device) and the 'leading' grid's steps_offset of a diffusers scheduler config.

    The linear and scaled-linear betas (every Stable Diffusion 1.x/2.x, and the embedded prior) are
    computed here as diffusers does, so that the embedded prior loads without importing diffusers;
    any other schedule is diffusers' DDIMScheduler's (tests/test_embedded.py compares the two).
    """
    c = scheduler_config
    T, kind = int(c.get("num_train_timesteps", 1000)), c.get("beta_schedule", "linear")
    if kind in ("linear", "scaled_linear") and c.get("trained_betas") is None:
        start, end = float(c.get("beta_start", 0.0001)), float(c.get("beta_end", 0.02))
        if kind == "linear":
            betas = torch.linspace(start, end, T, dtype=torch.float32)
        else:
            betas = torch.linspace(start**0.5, end**0.5, T, dtype=torch.float32) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    else:
        from diffusers import DDIMScheduler

        alphas_cumprod = DDIMScheduler.from_config(c).alphas_cumprod
    return alphas_cumprod.float().to(device), int(c.get("steps_offset", 0))


def cfg_noise(runner, x_t: Tensor, t: int, text: TextCond, scale: float, dtype: torch.dtype,
              to_eps=None) -> Tensor:
    """eps_u + scale (eps_c - eps_u) from one UNet call on the batch [uncond; cond] (2B), no grad;
    with Perp-Neg negatives (n per view) the batch is [uncond; cond; negatives] ((2 + n) B) and the
    negatives' perpendicular parts join the guidance (`combine`).

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
        out = runner(x.to(dtype), timesteps, torch.cat(rows).to(dtype)).to(x_t.dtype)  # fp16 UNets: back to the sample's
    if to_eps is not None:
        out = to_eps(out, x, t)
    eps_u, eps_c = out[:B], out[B:2 * B]
    if n == 0:
        return eps_u + scale * (eps_c - eps_u)
    eps_neg = out[2 * B:].unflatten(0, (n, B)).transpose(0, 1)  # [B, n, c, h, w]
    return combine(eps_u, eps_c, eps_neg, text.neg_weights, scale)


def perpendicular(x: Tensor, y: Tensor) -> Tensor:
    """The component of each x [B, ...] perpendicular to y [B, ...] (per batch row)."""
    dims = tuple(range(1, x.dim()))
    coeff = (x * y).sum(dims, keepdim=True) / (y * y).sum(dims, keepdim=True).clamp_min(1e-6)
    return x - coeff * y


def combine(eps_u: Tensor, eps_c: Tensor, eps_neg: Tensor, weights: Tensor, scale: float) -> Tensor:
    """eps_u + scale (e_pos + sum_i w_i perp(e_neg_i, e_pos)); eps_neg [B, n, ...], weights [B, n]."""
    B, n = weights.shape
    assert eps_neg.shape[:2] == (B, n) and eps_u.shape == eps_c.shape, (eps_neg.shape, weights.shape, eps_u.shape)
    e_pos = eps_c - eps_u
    total = e_pos
    for i in range(n):
        w = weights[:, i].view(B, *([1] * (e_pos.dim() - 1)))
        total = total + w * perpendicular(eps_neg[:, i] - eps_u, e_pos)
    return eps_u + scale * total
