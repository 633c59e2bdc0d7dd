"""How much of a pattern the world prior's VAE keeps, by pattern period (the latent testbed's check).

    python examples/research/vae_patterns.py [--vae gsdi/priors/world/vae] [--instances 12]

A latent prior can give back only what its VAE's decoder draws. Renders blue objects of six
categories with yellow stripes, dots or checks from random training orbits at 128 px, for the
world's pattern periods and two coarser ranges, round-trips them through the VAE (the posterior's
mean, decoded) and prints, per period range and pattern, the pattern measure's band energy of the
round trip over the render's (gsdi/eval/patterns.py, inside the render's object mask): 1 kept,
0 averaged away. The validation's blurs (docs/eval/pattern_measure/) give 0.78 / 0.50 / 0.19 at
0.5 / 1 / 2 px, for reading the figures as a blur. Noise has band energy too (an untrained VAE
"keeps" about 1), so each pattern also gets `_drawn`: 1 minus the band energy of the round trip's
error over the render's, 1 for the same pattern in the same place, 0 for none, below 0 for noise.

    python examples/research/vae_patterns.py --picture periods.png  # and the renders and round trips it read
    python examples/research/vae_patterns.py --fit-latents 150        # what the decoder can draw
    python examples/research/vae_patterns.py --zoom 1.5               # the objects shown 1.5x larger

--zoom narrows the training orbits' field of view so that each object fills more of the 128 px, and
moves the measure's band with it (BAND follows the pattern's size in pixels): how much of a pattern
the VAE keeps at the pattern's own scale when the views are framed closer.

With --pipeline FOLDER --from-t T [T ...] the UNet is read instead of the VAE alone: each render's
latent is noised to step T (one fixed noise) and DDIM-sampled back to 0 by the pipeline's UNet (30
steps, CFG 7.5, the prompt "a blue CATEGORY with yellow PATTERN"), then decoded. T = 0 is the VAE's round
trip. Where `_drawn` stays up the UNet redraws the pattern in place; where it falls but the phase-free
band energy stays, it draws a pattern of its own; where both fall it draws none (blotches). The T at
which that happens is the noise level at which the UNet must invent the pattern and cannot.

    python examples/research/vae_patterns.py --pipeline gsdi/priors/world --from-t 0 200 400 600 800

With --fit-latents K the encoder is left out: each render's latent, started at the encoder's,
takes K Adam steps on the round trip's squared error through the frozen decoder (the world's
periods only). Patterns drawn then but not from the encoder's latents put the loss in the encoder;
patterns not drawn even then put it in the decoder and the latent's room.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import gsdi.world.objects as objects
from gsdi.cameras import sample_orbits
from gsdi.config import ORBIT_FOV, zoomed_fov
from gsdi.eval.patterns import band_energy
from gsdi.world.language import describe
from gsdi.world.objects import PALETTE
from gsdi.world.render import pad_objects, render_objects
from gsdi.world.shapes import PATTERNS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import decoder_latents  # noqa: E402

CATEGORIES = ["car", "castle", "snowman", "house", "rocket", "table"]
PERIODS = [objects.PERIOD, (0.22, 0.32), (0.30, 0.45)]  # world units; the first is the world's


def redraw(pipe, z: torch.Tensor, prompts: list[str], t: int, steps: int = 30, cfg: float = 7.5) -> torch.Tensor:
    """Latents z [N, 4, h, w] (the VAE's, unscaled) noised to step t with one fixed noise, then DDIM-sampled
    back to 0 by the pipeline's UNet with CFG on `prompts`; t = 0 gives z back."""
    if t == 0:
        return z
    scale = pipe.vae.config.scaling_factor
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[scheduler.timesteps <= t]
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(11))
    x = scheduler.add_noise(z * scale, noise, timesteps[:1])
    cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True, [""] * len(prompts))
    text = torch.cat([uncond, cond])
    for step in timesteps:
        eps_uncond, eps_cond = pipe.unet(torch.cat([x, x]), step, encoder_hidden_states=text).sample.chunk(2)
        x = scheduler.step(eps_uncond + cfg * (eps_cond - eps_uncond), step, x).prev_sample
    return x / scale


def kept(vae, period: tuple[float, float], pattern: str, n: int, fit_steps: int = 0, zoom: float = 1.0,
         pipe=None, t: int = 0, cfg: float = 7.5) -> tuple[float, float, torch.Tensor]:
    """n blue objects with yellow `pattern`: the band energy of the VAE's round trip over the renders',
    1 minus that of the round trip's error, and the renders over their round trips [2, n, 128, 128, 3].
    zoom > 1 narrows the training orbits' field of view so that the object shows zoom times larger;
    with `pipe`, the latents go through `redraw` from step t before they are decoded."""
    objects.PERIOD = period  # build_object draws each instance's period from this range
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]
    prims = [objects.sample_object(category, "blue", 1000 + i, pattern, "yellow")[0] for i, category in enumerate(categories)]
    cams = sample_orbits(n, 128, 128, torch.Generator().manual_seed(7), fov_range=zoomed_fov(ORBIT_FOV, zoom))
    rgb, alpha = render_objects(pad_objects(prims), cams)
    x = rgb.permute(0, 3, 1, 2) * 2 - 1
    z = decoder_latents(vae, x, fit_steps) if fit_steps else vae.encode(x).latent_dist.mean
    if pipe is not None:
        z = redraw(pipe, z, [describe(category, "blue", None, pattern, "yellow") for category in categories], t, cfg=cfg)
    back = (vae.decode(z).sample.clamp(-1, 1) + 1) / 2
    back = back.permute(0, 2, 3, 1)
    world = band_energy(rgb, alpha, "blue", "yellow", zoom).mean()
    blue = torch.tensor(PALETTE["blue"])  # the signal is affine in the colour: error + blue reads as the error's signal
    error = band_energy(back - rgb + blue, alpha, "blue", "yellow", zoom).mean()
    return (round(float(band_energy(back, alpha, "blue", "yellow", zoom).mean() / world), 3), round(float(1 - error / world), 3),
            torch.stack([rgb, back]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="gsdi/priors/world/vae")
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--fit-latents", type=int, default=0, help="Adam steps on each latent through the frozen decoder (0: the encoder's)")
    parser.add_argument("--zoom", type=float, default=1.0, help="show the objects this many times larger (the orbits' field of view narrowed)")
    parser.add_argument("--picture", default=None, help="a PNG of the first four renders of each pattern, each period's renders above their round trips")
    parser.add_argument("--pipeline", default=None, help="a world prior's pipeline folder: read its UNet's redraw from --from-t (its own VAE replaces --vae)")
    parser.add_argument("--from-t", type=int, nargs="+", default=[0], help="with --pipeline: the steps the latents are noised to before DDIM brings them back")
    parser.add_argument("--cfg", type=float, default=7.5, help="with --pipeline: the redraw's CFG scale (1: the conditional score alone)")
    args = parser.parse_args()
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    pipe = None
    if args.pipeline:
        pipe = StableDiffusionPipeline.from_pretrained(args.pipeline, safety_checker=None, requires_safety_checker=False).to(torch.float32)
        pipe.set_progress_bar_config(disable=True)
        vae = pipe.vae.eval()
    else:
        vae = AutoencoderKL.from_pretrained(args.vae).float().eval().requires_grad_(False)
    world = objects.PERIOD
    if pipe is not None:  # the world's periods, one reading a starting step
        readings = [({"from_t": t, "cfg": args.cfg}, world, 0, t) for t in args.from_t]
    else:  # one reading a period range
        readings = [({"period": period, "world's": period == world, "fit_latents": args.fit_latents}, period, args.fit_latents, 0)
                    for period in (PERIODS[:1] if args.fit_latents else PERIODS)]
    rows = []
    with torch.no_grad():
        for label, period, fit_steps, t in readings:
            row = {p: kept(vae, period, p, args.instances, fit_steps, args.zoom, pipe, t, args.cfg) for p in PATTERNS}
            print(json.dumps({**label, "zoom": args.zoom, **{p: k for p, (k, _, _) in row.items()},
                              **{f"{p}_drawn": d for p, (_, d, _) in row.items()}}), flush=True)
            pair = torch.cat([views[:, :4] for _, _, views in row.values()], 1)  # [2, 12, 128, 128, 3]
            lines = [torch.cat(list(line), 1) for line in pair]  # the renders, then their round trips (or redraws)
            rows += lines[1:] if pipe is not None and rows else lines  # redraws: the renders once, above them all
    objects.PERIOD = world
    if args.picture:
        import imageio.v3 as iio

        iio.imwrite(args.picture, (torch.cat(rows, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy())


if __name__ == "__main__":
    main()
