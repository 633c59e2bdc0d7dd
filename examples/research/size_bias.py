"""Where SDI's size bias comes from, on a world whose score is exact: dark discs on a white ground.

    python examples/research/size_bias.py

In 3D on the embedded prior SDI predicted at the scheduled t (the reference's labelling) shrank
objects to about half their area and predicted at the inverted t' grew them (docs/eval/
gpu_sdi_reference). This runs gsdi's own guidance_loss against an exact prior whose images are a
dark disc (radius 3, 4 or 5 px; the unconditional world adds 2 and 6) on white, 16 x 16, component
std 0.1, in the regime 3D runs are in (Adam, lr 0.01, 25 steps a level, t annealed 980 -> 250 over 40
levels, CFG 7.5, eight seeds from the x0-prediction of pure noise at t = 999, and from a pale grey
disc as a 3D run's first renders look), and prints each
method's disc area against the nearest mode's (1: the world's size) and how far the image is from
that mode (RMS). With delta = T/K the gap between the inverted t' and the scheduled t; K = 1000
makes it 1 step, so labelling cannot matter.
"""

from __future__ import annotations

import argparse
import json

import torch

from gsdi.config import GuidanceConfig
from gsdi.guidance import Rng, guidance_loss
from gsdi.guidance.ddim import ddim_sample, predict_x0, sampling_grid
from gsdi.guidance.exact import ExactPrior, Factor
from gsdi.priors import TextCond

SIZE, INK, PAPER = 16, -0.6, 1.0
RADII, OTHER_RADII = (3.0, 4.0, 5.0), (2.0, 6.0)
METHODS = {
    "sds": {"method": "sds", "t_schedule": "anneal"},
    "sdi t (scheduled), K 5": {"method": "sdi", "prediction_timestep": "scheduled"},
    "sdi t' (inverted), K 5": {"method": "sdi", "prediction_timestep": "inverted"},
    "sdi t, K 20": {"method": "sdi", "prediction_timestep": "scheduled", "inversion_steps": 20},
    "sdi t', K 20": {"method": "sdi", "prediction_timestep": "inverted", "inversion_steps": 20},
    "sdi t, K 1000 (delta 1)": {"method": "sdi", "prediction_timestep": "scheduled", "inversion_steps": 1000},
}


def disc(radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    inside = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2).sqrt() < radius
    return torch.where(inside, INK, PAPER).double().reshape(-1)


def disc_world(s: float = 0.1) -> ExactPrior:
    D = SIZE * SIZE
    cond = torch.stack([disc(r) for r in RADII])
    uncond = torch.cat([cond, torch.stack([disc(r) for r in OTHER_RADII])])
    return ExactPrior([Factor(torch.eye(D, dtype=torch.float64), cond, uncond)], (1, SIZE, SIZE), s=s)


def measure(x: torch.Tensor) -> dict:
    """Area of the dark part (pixels below the mid grey) over the nearest mode's, and the RMS to that mode."""
    flat = x.reshape(x.shape[0], -1)
    modes = torch.stack([disc(r) for r in RADII])
    nearest = torch.cdist(flat, modes).argmin(1)
    area = (flat < (INK + PAPER) / 2).double().sum(1) / (modes[nearest] < 0).double().sum(1)
    rms = (flat - modes[nearest]).pow(2).mean(1).sqrt()
    return {"area_ratio": round(float(area.mean()), 2), "rms_to_mode": round(float(rms.mean()), 3),
            "paper_level": round(float(flat[:, :SIZE].mean()), 2)}  # the top row is paper in every mode


def run(prior: ExactPrior, method: str, seeds: int = 8, steps: int = 25, t_min: float = 0.25, start: str = "noise") -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(seeds, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    text = TextCond(torch.zeros(seeds, 1, 1), torch.zeros(seeds, 1, 1))
    if method == "ddim":
        return ddim_sample(lambda x, t: prior.predict_noise(x, t, text, 7.5), z, prior.alphas_cumprod, sampling_grid(1000, 40, 1))
    if start == "noise":
        x = predict_x0(z, prior.predict_noise(z, 999, text, 7.5), prior.alphas_cumprod[999])
    else:  # a pale grey disc of the middle radius, as a 3D run's first renders look
        x = (0.5 + 0.5 * disc(4.0)).reshape(1, 1, SIZE, SIZE).expand(seeds, 1, SIZE, SIZE).clone()
    x = x.requires_grad_()
    config = GuidanceConfig(cfg_scale=7.5, **METHODS[method])
    rng, optimizer = Rng.seeded(0), torch.optim.Adam([x], lr=0.01)
    for level in range(40):
        t = int(1000 * (0.98 - (0.98 - t_min) * level / 39))
        for _ in range(steps):
            target = guidance_loss(prior, x.detach(), text, t, config, rng).target
            optimizer.zero_grad()
            (0.5 * (x - target).pow(2).sum()).backward()
            optimizer.step()
    return x.detach()


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    prior = disc_world()
    for start in ("noise", "grey disc"):
        for method in ["ddim", *METHODS] if start == "noise" else list(METHODS):
            print(json.dumps({"start": start, "method": method, **measure(run(prior, method, start=start))}), flush=True)


if __name__ == "__main__":
    main()
