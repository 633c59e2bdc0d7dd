"""Teach a world VAE's encoder to see a faint haze, the decoder and the clean code kept.

    python examples/research/haze_encoder.py --vae VAE --out OUT/vae --zoom 1.5 --minutes 13
    python examples/research/haze_encoder.py --vae VAE --out OUT/vae --zoom 1.5 --device cuda --pool 8000 --batch 64 --decoder

The test of whether an encoder that registers haze lets score distillation clear it
(`haze_push.py`): the encoder alone is fine-tuned (the decoder frozen, so the UNet's samples are
unchanged) to round-trip world renders (at the VAE's framing, `--zoom`) carrying a speckled haze of a
random world colour (`--any-tint`: any colour) in random clouds on the white ground (a tenth to a half
of the cloud's pixels, `--uniform`: all of them; at strength 0.05-0.4), its haze pixels weighing 5x,
while its latents of the clean renders are held to the
old encoder's (`--anchor`, squared error of the scaled latents), so a UNet trained on those stays
valid. `--decoder` trains the decoder too (so it can learn to draw a haze from a latent direction
rather than the encoder finding codes the clean decoder happens to draw as one); the clean renders'
round trip is then in the loss as well. `--gain-floor G` adds a squared hinge on the encoder's gain
(what `encoder_blind_spots.py` reads) where it falls below G: a direct push on the blind spot, since
a round trip alone can be met by a small latent change that the decoder magnifies. The defaults are
sized for a CPU: a few hundred renders, batches of 8, minutes; `--device cuda` for thousands of
steps. Put OUT/vae in a copy of a pipeline folder in place of its vae/ and run haze_push.py and a
generation on it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import add_haze, candidate_world_arguments, use_candidate_world  # noqa: E402

HAZE_WEIGHT = 5.0


def haze_gain(latent: torch.Tensor, hazy_latent: torch.Tensor, x: torch.Tensor, hazy: torch.Tensor,
              haze: torch.Tensor) -> torch.Tensor:
    """Scaled latents [B, c, h, w] of the renders and of their hazy copies, the renders and copies
    [B, 3, S, S], the haze's pixels [B, 1, S, S] bool -> the encoder's gain per render [B]: the RMS
    change of the latent over the cells the haze touches over the pixels' mean change (as
    encoder_blind_spots.py reads it). Differentiable; renders without a haze give 0."""
    B, _, S, _ = x.shape
    assert haze.shape == (B, 1, S, S) and latent.shape == hazy_latent.shape, (haze.shape, latent.shape)
    cells = F.max_pool2d(haze.float(), S // latent.shape[-1])  # [B, 1, h, w]
    shift = (hazy_latent - latent).pow(2).mean(1, keepdim=True)  # [B, 1, h, w]
    moved = ((hazy - x).norm(dim=1, keepdim=True) * haze).flatten(1).sum(1) / haze.flatten(1).sum(1).clamp(min=1)
    mean_shift = (shift * cells).flatten(1).sum(1) / cells.flatten(1).sum(1).clamp(min=1)
    return mean_shift.clamp(min=1e-10).sqrt() / moved.clamp(min=1e-4)  # clamped: sqrt's gradient at 0 is infinite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, help="the VAE folder whose encoder is fine-tuned")
    parser.add_argument("--out", required=True, help="where the new VAE folder goes")
    parser.add_argument("--pool", type=int, default=384, help="training renders")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--anchor", type=float, default=1.0, help="weight of the clean latents' distance to the old encoder's")
    parser.add_argument("--minutes", type=float, default=13.0)
    parser.add_argument("--decoder", action="store_true", help="train the decoder too (clean round trip in the loss)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--any-tint", action="store_true", help="haze of any colour of the RGB cube (else the world's palette)")
    parser.add_argument("--uniform", action="store_true", help="every pixel of a cloud tinted (else a speckle)")
    parser.add_argument("--darken", type=float, default=0.0, help="with --any-tint, the share of clouds that are a plain grey")
    parser.add_argument("--gain-floor", type=float, default=0.0,
                        help="hinge on the encoder's gain on the haze below this (0: off; P1's least is 3.7)")
    parser.add_argument("--gain-weight", type=float, default=0.1, help="weight of the squared hinge (the round trip weighs 100)")
    candidate_world_arguments(parser)
    args = parser.parse_args()
    use_candidate_world(args)
    from gsdi.world import PALETTE, render_pool

    start = time.perf_counter()
    device = torch.device(args.device)
    pool = render_pool(args.pool, 91, 128, args.device, batch=256, patterned=0.5)["images"].to(device)  # uint8 [N, 3, 128, 128]
    print(json.dumps({"event": "pool", "renders": args.pool, "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    old = AutoencoderKL.from_pretrained(args.vae, torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    vae = copy.deepcopy(old)
    vae.encoder.requires_grad_(True)
    vae.quant_conv.requires_grad_(True)
    if args.decoder:
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    tints = torch.tensor(list(PALETTE.values())).view(-1, 3, 1, 1).to(device)
    sf = vae.config.scaling_factor
    g = torch.Generator(device).manual_seed(1)
    step, start = 0, time.perf_counter()
    while time.perf_counter() - start < 60 * args.minutes:
        x = pool[torch.randint(args.pool, (args.batch,), generator=g, device=device)].float() / 255
        hazy, haze = add_haze(x, None if args.any_tint else tints, g, args.uniform, args.darken)
        hazy_latent = vae.encode(hazy * 2 - 1).latent_dist.mean
        out = (vae.decode(hazy_latent).sample + 1) / 2
        weight = 1 + (HAZE_WEIGHT - 1) * haze.float()
        round_trip = (weight * (out - hazy) ** 2).mean() / weight.mean()
        with torch.no_grad():
            kept = old.encode(x * 2 - 1).latent_dist.mean
        latent = vae.encode(x * 2 - 1).latent_dist.mean
        anchor = ((latent - kept) * sf).pow(2).mean()
        loss = 100 * round_trip + args.anchor * anchor
        gain = torch.zeros(())
        has = haze.flatten(1).any(1)  # renders that got a cloud
        if args.gain_floor > 0 and has.any():
            gain = haze_gain(latent * sf, hazy_latent * sf, x, hazy, haze)[has]
            loss = loss + args.gain_weight * (F.relu(args.gain_floor - gain) ** 2).mean()
            gain = gain.mean()
        if args.decoder:  # the clean renders still round-trip
            loss = loss + 100 * ((vae.decode(latent).sample + 1) / 2 - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % args.log_every == 0:
            print(json.dumps({"event": "encoder", "step": step, "round_trip_x100": round(100 * round_trip.item(), 4),
                              "anchor": round(anchor.item(), 5),
                              "gain": round(gain.item(), 3), "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    vae.eval().save_pretrained(args.out)
    print(json.dumps({"event": "done", "steps": step, "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
