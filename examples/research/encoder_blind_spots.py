"""Which faint tints on the white ground does a world VAE's encoder barely see?

    python examples/research/encoder_blind_spots.py --vae gsdi/priors/world/vae WIDE/vae --zoom 1 1.5

Score distillation reaches the splats through the encoder: a faint tint that the encoder maps to
nearly the latent of white ground costs the loss nearly nothing, so Gaussians can settle on it
instead of fading. Per VAE (each at its framing, --zoom): world renders of --prompt from front cameras
of the training orbits (haze_push.py's views), a faint uniform patch on the white ground above
the object (each pixel moved --strength of the way toward a tint); the gain is the RMS change of the
scaled latent over the patch's cells over the pixels' mean change (so a uniform, unit-scaled encoder
of the patch would read about its pixels per cell). Prints one JSON line per VAE: the gain per tint
and, from the latent's 3x3 Jacobian in the patch's colour (central differences of R, G and B), its
singular values and the colour directions (unit RGB) the encoder sees least and most.
"""

from __future__ import annotations

import argparse
import json

import torch
from diffusers import AutoencoderKL

from haze_push import HAZE_TINT, hazy_views  # examples/research/haze_push.py: its haze colour and front views of a prompt

TINTS = {"grey": (0.5, 0.5, 0.5), "black": (0.0, 0.0, 0.0), "haze green": HAZE_TINT, "green": (0.0, 1.0, 0.0),
         "red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0), "magenta": (1.0, 0.0, 1.0),
         "cyan": (0.0, 1.0, 1.0)}
SIZE = 128
PATCH = (slice(8, 48), slice(40, 88))  # rows, columns of the 128-px view: above the object


def front_renders(prompt: str, views: int, zoom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World renders [V, 3, S, S] in [0, 1] and the patch's white-ground pixels [V, 1, S, S] (bool)."""
    x = hazy_views(prompt, views, SIZE, zoom, 0.0)[0]
    patch = torch.zeros(views, 1, SIZE, SIZE, dtype=torch.bool)
    patch[..., PATCH[0], PATCH[1]] = True
    return x, patch & (x > 0.97).all(1, keepdim=True)


def blind_spots(vae: AutoencoderKL, x: torch.Tensor, patch: torch.Tensor, strength: float) -> dict:
    """One VAE's figures (see the module's docstring)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)  # pixels a latent cell spans
    cells = (slice(None), slice(None), slice(PATCH[0].start // factor, PATCH[0].stop // factor),
             slice(PATCH[1].start // factor, PATCH[1].stop // factor))

    def latent(images: torch.Tensor) -> torch.Tensor:  # the patch's scaled latent cells
        return (vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor)[cells]

    with torch.no_grad():
        z0 = latent(x)
        gains = {}
        for name, colour in TINTS.items():
            tint = torch.tensor(colour).view(1, 3, 1, 1)
            tinted = torch.where(patch, (1 - strength) * x + strength * tint, x)
            moved = (tinted - x).norm(dim=1, keepdim=True)[patch].mean()
            gains[name] = round(((latent(tinted) - z0).pow(2).mean().sqrt() / moved).item(), 3)
        columns = []
        for c in range(3):  # d latent / d (the patch's channel c), central differences of +-strength / 2
            step = torch.zeros(1, 3, 1, 1)
            step[0, c] = strength / 2
            columns.append(((latent(torch.where(patch, x + step, x)) - latent(torch.where(patch, x - step, x))) / strength).flatten())
        _, singular, vh = torch.linalg.svd(torch.stack(columns, 1), full_matrices=False)  # [cells, 3]
    scale = z0.numel() ** 0.5  # a unit colour step's latent change as an RMS over the cells, as the gains
    return {"gains": gains, "singular_values": [round((s / scale).item(), 3) for s in singular],
            "least_seen_rgb": [round(v, 2) for v in vh[-1].tolist()], "most_seen_rgb": [round(v, 2) for v in vh[0].tolist()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", nargs="+", required=True, help="VAE folders (a pipeline's vae/)")
    parser.add_argument("--zoom", type=float, nargs="+", default=None, help="each VAE's framing (1: the world's)")
    parser.add_argument("--prompt", default="a blue car with yellow stripes")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--strength", type=float, default=0.1)
    args = parser.parse_args()
    zooms = args.zoom or [1.0] * len(args.vae)
    assert len(zooms) == len(args.vae), "one --zoom per --vae"
    for path, zoom in zip(args.vae, zooms):
        vae = AutoencoderKL.from_pretrained(path, torch_dtype=torch.float32).eval()
        x, patch = front_renders(args.prompt, args.views, zoom)
        print(json.dumps({"vae": path, "zoom": zoom, **blind_spots(vae, x, patch, args.strength)}), flush=True)


if __name__ == "__main__":
    main()
