"""Priors whose noise prediction is exact: worlds of Gaussian mixtures with a closed-form eps.

A guidance rule run against one of these has no model error, so what it keeps or loses is the rule's
own doing (docs/exact-study.md). A world is a product of independent factors over orthogonal
subspaces of the image (pixel blocks, or coarse and fine parts): each factor is a mixture of
isotropic Gaussians N(mu_m, s^2 I) within its subspace. Isotropic noise keeps the factors
independent at every t, so eps is the sum of the factors' eps:

    eps_f(x, t) = sqrt(1 - a) sum_m r_m (P_f x - sqrt(a) mu_m) / (a s^2 + 1 - a),
    r_m = softmax_m(-|P_f x - sqrt(a) mu_m|^2 / (2 (a s^2 + 1 - a))),  a = abar[t].

Each factor has conditional and unconditional means (the unconditional world also holds other
prompts' modes), so CFG acts as with a real prior. `ExactPrior` implements gsdi's Prior protocol
(encode and decode are the identity), and the three worlds of the study are built by `world`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gsdi.priors.base import noise_schedule
from gsdi.prompts import TextCond

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "num_train_timesteps": 1000, "steps_offset": 1}  # Stable Diffusion's, as the embedded prior's


@dataclass
class Factor:
    """One independent part of the image: the projector onto its subspace and its modes (in pixels)."""

    project: Tensor  # [D, D] orthogonal projector (symmetric, idempotent)
    cond: Tensor  # [M, D] the prompt's modes, each inside the subspace
    uncond: Tensor  # [M', D] the unconditional world's modes (the prompt's and other prompts')


class ExactPrior:
    """A product of mixture factors over images [c, h, w] with component std `s`; eps in float64."""

    steps_offset = 1

    def __init__(self, factors: list[Factor], shape: tuple[int, int, int], s: float = 0.1):
        D = shape[0] * shape[1] * shape[2]
        assert all(f.project.shape == (D, D) and f.cond.shape[1] == D == f.uncond.shape[1] for f in factors)
        total = sum(f.project for f in factors)
        assert torch.allclose(total, torch.eye(D, dtype=total.dtype), atol=1e-9), "the factors must cover the image"
        self.factors, self.shape, self.s = factors, shape, s
        self.device = torch.device("cpu")
        self.image_size = shape[-1]
        self.alphas_cumprod = noise_schedule(SD_SCHEDULE, self.device)[0].double()
        self.calls = 0

    def encode(self, images: Tensor, generator=None) -> Tensor:
        return images

    def decode(self, latents: Tensor) -> Tensor:
        return latents

    def text_embeddings(self, prompts: list[str]) -> Tensor:
        return torch.zeros(len(prompts), 1, 1, dtype=torch.float64)

    def eps(self, x: Tensor, t: int, cond: bool = True) -> Tensor:
        """The exact eps [B, c, h, w] of the conditional (or unconditional) world at timestep t (t < 0: abar[0])."""
        a = self.alphas_cumprod[max(t, 0)]
        var = a * self.s**2 + 1 - a
        flat = x.reshape(x.shape[0], -1).double()
        out = torch.zeros_like(flat)
        for f in self.factors:
            means = a.sqrt() * (f.cond if cond else f.uncond)  # [M, D]
            px = flat @ f.project  # [B, D]
            d2 = (px[:, None, :] - means[None]).pow(2).sum(-1)  # [B, M]
            r = torch.softmax(-d2 / (2 * var), dim=1)
            out += (px - r @ means) / var
        return ((1 - a).sqrt() * out).reshape(x.shape).to(x.dtype)

    def predict_noise(self, x_t: Tensor, t: int, text: TextCond, scale: float) -> Tensor:
        self.calls += 1
        eps_u, eps_c = self.eps(x_t, t, cond=False), self.eps(x_t, t, cond=True)
        return eps_u + scale * (eps_c - eps_u)

    def sample(self, n: int, generator: torch.Generator, cond: bool = True) -> Tensor:
        """n exact draws [n, c, h, w] from the (conditional) world."""
        D = self.factors[0].project.shape[0]
        x = torch.zeros(n, D, dtype=torch.float64)
        for f in self.factors:
            means = f.cond if cond else f.uncond
            pick = torch.randint(0, means.shape[0], (n,), generator=generator)
            x += means[pick] + self.s * torch.randn(n, D, generator=generator, dtype=torch.float64) @ f.project
        return x.reshape(n, *self.shape)


def _block_projector(mask: Tensor) -> Tensor:
    """Projector onto the pixels where mask [D] is True."""
    return torch.diag(mask.double())


def _mean_projector(blocks: list[Tensor], D: int) -> Tensor:
    """Projector onto the span of the blocks' indicator vectors (each block's mean)."""
    P = torch.zeros(D, D, dtype=torch.float64)
    for mask in blocks:
        u = mask.double() / mask.sum().sqrt()
        P += torch.outer(u, u)
    return P


@dataclass
class World:
    prior: ExactPrior
    detail: list[tuple[Tensor, Tensor]]  # per detail factor: (projector [D, D], its modes' details [M, D])
    name: str


def world(kind: str, size: int = 16, contrast: float = 0.2, patch: int = 4, phases: int = 64, s: float = 0.1,
          prompts: int = 2, flat: bool = False) -> World:
    """A world of 1 x size x size images in [-1, 1] whose detail a method can keep (1) or average away (0).

    - "global": one detail for the whole image, a stripe pattern of amplitude `contrast` whose phase is
      one of `phases`, on the prompt's base image (the coarse factor: one base per prompt).
    - "local": (size / patch)^2 independent details, each patch carries +- `contrast` x a checker.
    - "two-scale": coarse modes (each patch's mean, one of 4 shapes per prompt) with the local details.
    The unconditional world holds `prompts` prompts' bases or shapes (the conditional one is prompt 0).
    `flat` bases are one grey level per prompt, so that a shifted crop of a wider image is again an
    image of the world (the study's views).
    """
    D = size * size
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    bases = 0.6 * torch.tanh(torch.randn(prompts, D, generator=g, dtype=torch.float64))  # a colour field per prompt
    if flat:
        bases = torch.linspace(0.2, -0.4, prompts, dtype=torch.float64)[:, None].expand(prompts, D).clone()
    patches = [((yy // patch == i) & (xx // patch == j)).reshape(-1) for i in range(size // patch) for j in range(size // patch)]
    checker = (((yy + xx) % 2) * 2 - 1).reshape(-1).double()
    coarse_P = _mean_projector(patches, D)
    factors, detail = [], []
    if kind == "global":
        waves = torch.stack([torch.sin(2 * torch.pi * (xx.reshape(-1).double() / 4 + k / phases)) for k in range(phases)])
        u = torch.nn.functional.normalize(torch.stack([torch.sin(2 * torch.pi * xx.reshape(-1).double() / 4),
                                                       torch.cos(2 * torch.pi * xx.reshape(-1).double() / 4)]), dim=1)
        P_wave = u.T @ u  # the stripes' 2-D subspace (sin and cos of one frequency)
        P_base = torch.eye(D, dtype=torch.float64) - P_wave
        factors.append(Factor(P_base, bases[:1] @ P_base, bases @ P_base))
        modes = contrast * waves @ P_wave
        factors.append(Factor(P_wave, modes, modes))
        detail.append((P_wave, modes))
    elif kind in ("local", "two-scale"):
        if kind == "local":
            coarse = bases @ coarse_P
            factors.append(Factor(coarse_P, coarse[:1], coarse))
        else:
            shapes = torch.stack([0.6 * torch.tanh(torch.randn(D, generator=g, dtype=torch.float64)) for _ in range(4 * prompts)])
            coarse = shapes @ coarse_P
            factors.append(Factor(coarse_P, coarse[:4], coarse))
        rest = torch.eye(D, dtype=torch.float64) - coarse_P
        for mask in patches:
            c = checker * mask.double()
            c = c - (c.sum() / mask.sum()) * mask.double()  # zero mean in the patch: inside the fine subspace
            u = c / c.norm()
            P = torch.outer(u, u)
            modes = torch.stack([contrast * c, -contrast * c])
            factors.append(Factor(P, modes, modes))
            detail.append((P, modes))
            rest = rest - P
        factors.append(Factor(rest, torch.zeros(1, D, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64)))
    else:
        raise ValueError(f"unknown world {kind!r}: global, local or two-scale")
    return World(ExactPrior(factors, (1, size, size), s=s), detail, kind)


def detail_amplitude(w: World, x: Tensor) -> Tensor:
    """[B] how much of a crisp mode each image's detail holds: per detail factor, the projection of the
    image onto its nearest mode's direction over that mode's length (1: a mode, 0: their average, the
    blur of averaging modes with random phase or sign), averaged over the factors."""
    flat = x.reshape(x.shape[0], -1).double()
    out = []
    for P, modes in w.detail:
        px = flat @ P
        proj = px @ modes.T / modes.pow(2).sum(1)  # [B, M]
        out.append(proj.max(dim=1).values)
    return torch.stack(out, 1).mean(1)
