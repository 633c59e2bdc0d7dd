"""How much of a pattern the world prior's VAE keeps, by pattern period (the latent testbed's check).

    python examples/research/vae_patterns.py [--vae gsdi/priors/world/vae] [--instances 12]

A latent prior can give back only what its VAE's decoder draws. Renders blue objects of six
categories with yellow stripes, dots or checks from random training orbits at 128 px, for the
world's pattern periods and two coarser ranges, round-trips them through the VAE (the posterior's
mean, decoded) and prints, per period range and pattern, the pattern measure's band energy of the
round trip over the render's (gsdi/eval/patterns.py, inside the render's object mask): 1 kept,
0 averaged away. The validation's blurs (docs/eval/pattern_measure/) give 0.78 / 0.50 / 0.19 at
0.5 / 1 / 2 px, for reading the figures as a blur.
"""

from __future__ import annotations

import argparse
import json

import torch

import gsdi.world.objects as objects
from gsdi.cameras import sample_orbits
from gsdi.eval.patterns import band_energy
from gsdi.world.render import pad_objects, render_objects
from gsdi.world.shapes import PATTERNS

CATEGORIES = ["car", "castle", "snowman", "house", "rocket", "table"]
PERIODS = [objects.PERIOD, (0.22, 0.32), (0.30, 0.45)]  # world units; the first is the world's


def kept(vae, period: tuple[float, float], pattern: str, n: int) -> float:
    """Band energy of the VAE's round trip over the renders', n blue objects with yellow `pattern`."""
    objects.PERIOD = period  # build_object draws each instance's period from this range
    prims = [objects.sample_object(CATEGORIES[i % len(CATEGORIES)], "blue", 1000 + i, pattern, "yellow")[0] for i in range(n)]
    cams = sample_orbits(n, 128, 128, torch.Generator().manual_seed(7))
    rgb, alpha = render_objects(pad_objects(prims), cams)
    x = rgb.permute(0, 3, 1, 2) * 2 - 1
    back = (vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1) + 1) / 2
    ratio = band_energy(back.permute(0, 2, 3, 1), alpha, "blue", "yellow").mean() / band_energy(rgb, alpha, "blue", "yellow").mean()
    return round(float(ratio), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="gsdi/priors/world/vae")
    parser.add_argument("--instances", type=int, default=12)
    args = parser.parse_args()
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.vae).float().eval()
    world = objects.PERIOD
    with torch.no_grad():
        for period in PERIODS:
            row = {p: kept(vae, period, p, args.instances) for p in PATTERNS}
            print(json.dumps({"period": period, "world's": period == world, **row}), flush=True)
    objects.PERIOD = world


if __name__ == "__main__":
    main()
