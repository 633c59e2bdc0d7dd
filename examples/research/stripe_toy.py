"""Can a UNet of the world prior's layout draw straight stripes from noise? A toy on 2 CPU cores.

The latent world prior draws its stripes as wavy bands of the right width from t = 600 on
(research log). Two explanations predict different things here: too little training (then every
layout learns straight stripes given the steps), or its layout (the 32x32 level only convolves, and a
stripe's period, 3-4.5 latent cells, is under two cells at the 16x16 level where attention is; then a
layout with attention at 32x32 draws them straight where the shipped one, trained the same, does not).

Data: one-channel 32x32 images of straight stripes alone (no object, no colour): a stripe a third of
a period, the period 3-4.5 cells (the closer-framed world's in latent cells), orientation and phase
uniform, drawn at 4x and averaged down, values -1 / +1. Each layout (diffusers UNet2DModel, the world
UNet's levels at a quarter of its widths) is trained alike (epsilon objective, SD 2.1's schedule,
uniform t, same batches), then samples by DDIM-30 from the same noise, and each image is read:
- coherence: the global structure tensor's (l1 - l2) / (l1 + l2) over the image's gradients; 1 for
  straight parallel stripes of one orientation, lower for bands that bend, 0 for noise;
- band: the share of the (mean-removed) power at the stripes' frequencies (periods 2.7-5 cells, or
  --period's widened 10%);
- coherence_32: the coherence of the image area-averaged to 32x32 (the same as coherence in pixels).

With --vae FOLDER the same stripes are painted yellow on blue at 128 px (4x, so the period is the
same in latent cells), encoded by that world VAE, the UNet trained on its latents (a fresh posterior
sample a step) and its samples decoded: whether the VAE's code of a stripe is what the UNet cannot
draw. The data row is then the VAE's round trip, and the readings are of the decoded images' blue
to yellow axis. --vae pca puts a linear code of the same shape in the VAE's place (each 4x4 patch's
top four principal components, each of unit std): a latent with no nonlinearity in it; --vae
pca-natural keeps the components' own proportions (the coarse one carries most of the power);
--factor 2 makes the linear code of 2x2 patches (a 64x64 grid, the stripes' periods twice as many
cells): a latent at factor 2, judged before any VAE is trained for it.

    python examples/research/stripe_toy.py --steps 2000 --batch 16 --widths 16 32 32 --picture stripe_toy.png
    python examples/research/stripe_toy.py --layouts shipped --vae gsdi/priors/world/vae --picture stripe_toy_latent.png
    python examples/research/stripe_toy.py --layouts shipped --vae pca --factor 2 --steps 2000 --batch 16 --widths 16 32 32
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.priors.stable_diffusion import SD21_BASE_SCHEDULER
from gsdi.world import PALETTE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import denoising_target  # noqa: E402

SIZE = 32
PERIOD = (3.0, 4.5)  # latent cells: the closer-framed world's stripes at factor 4
DUTY = 1 / 3  # a stripe's share of its period (gsdi.world.shapes)
LEVELS = {"down": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"), "up": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")}
LAYOUTS = {  # the world UNet's levels (32, 16, 8; attention at 16 and 8) and the changes bench_world_unet.py prices
    "shipped": {**LEVELS},
    "attention_at_32": {"down": ("AttnDownBlock2D",) * 3, "up": ("AttnUpBlock2D",) * 3},
    "two_layers": {**LEVELS, "layers_per_block": 2},
}


def stripes(n: int, g: torch.Generator, supersample: int = 4, scale: int = 1) -> torch.Tensor:
    """[n, 1, SIZE * scale, SIZE * scale] straight stripes, values in [-1, 1]: random period (in cells
    of SIZE, from PERIOD), orientation and phase."""
    s = SIZE * scale * supersample
    yx = (torch.arange(s) + 0.5) / (supersample * scale)
    y, x = torch.meshgrid(yx, yx, indexing="ij")
    angle = torch.rand(n, 1, 1, generator=g) * math.pi
    period = PERIOD[0] + (PERIOD[1] - PERIOD[0]) * torch.rand(n, 1, 1, generator=g)
    phase = torch.rand(n, 1, 1, generator=g)
    u = (x * angle.cos() + y * angle.sin()) / period + phase
    on = (u - u.floor() < DUTY).float().unsqueeze(1)
    return F.avg_pool2d(on, supersample) * 2 - 1


def coherence(x: torch.Tensor) -> torch.Tensor:
    """[n] the structure tensor's coherence over each whole image [n, 1, H, W]: 1 for one orientation."""
    gx = (x[..., 1:-1, 2:] - x[..., 1:-1, :-2]) / 2  # centred differences: both at the same cells
    gy = (x[..., 2:, 1:-1] - x[..., :-2, 1:-1]) / 2
    jxx, jyy, jxy = (gx * gx).sum((1, 2, 3)), (gy * gy).sum((1, 2, 3)), (gx * gy).sum((1, 2, 3))
    return ((jxx - jyy) ** 2 + 4 * jxy ** 2).sqrt() / (jxx + jyy).clamp_min(1e-12)


def band(x: torch.Tensor) -> torch.Tensor:
    """[n] the share of each image's mean-removed power at the stripes' periods (PERIOD, widened 10%) in cells of SIZE."""
    lo, hi = 0.9 * PERIOD[0], 1.11 * PERIOD[1]  # 2.7 .. 5 cells for the closer-framed world's 3 .. 4.5
    power = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True)).abs().pow(2).sum(1)
    scale = x.shape[-1] // SIZE
    lo, hi = lo * scale, hi * scale
    f = torch.fft.fftfreq(x.shape[-1])
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    inside = (radius >= 1 / hi) & (radius <= 1 / lo)
    return power[:, inside].sum(-1) / power.sum((-2, -1)).clamp_min(1e-12)


class Latents:
    """The toy's stripes through a world VAE: painted yellow on blue at 128 px, encoded (a pool of
    posteriors, a fresh sample each draw), decoded back to the blue-to-yellow axis in [-1, 1]. With
    folder "pca", a linear code instead: each 4x4 patch's top four principal components, each of unit
    std ("pca-natural": in their own proportions, unit std together)."""

    BLUE, YELLOW = torch.tensor(PALETTE["blue"]), torch.tensor(PALETTE["yellow"])

    def __init__(self, folder: str, pool: int, g: torch.Generator, device: str = "cpu", factor: int = 4):
        from diffusers import AutoencoderKL

        self.device = device
        self.vae = None if folder.startswith("pca") else AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
        self.scale, self.channels = (factor, 4) if self.vae is None else (2 ** (len(self.vae.config.block_out_channels) - 1), self.vae.config.latent_channels)
        self.painted = 4 if self.vae is None else self.scale  # the stripes are painted at SIZE * painted px (128 for the world's VAEs)
        self.side = SIZE * self.painted // self.scale  # the code's grid: SIZE at factor 4
        if self.vae is None:  # principal components of the painted stripes' patches: [3 f f] mean, [3 f f, 4] basis
            patches = F.unfold(self.paint(stripes(256, g, 2, self.painted)).cpu(), self.scale, stride=self.scale).permute(0, 2, 1)
            patches = patches.reshape(-1, patches.shape[-1])
            self.patch_mean = patches.mean(0)
            _, sv, v = torch.linalg.svd(patches - self.patch_mean, full_matrices=False)
            std = sv[:self.channels] / (patches.shape[0] - 1) ** 0.5  # each component's std
            basis = v[:self.channels].T / (std if folder == "pca" else std.pow(2).mean().sqrt())  # unit-std codes, or their natural shares
            self.patch_mean, self.basis = self.patch_mean.to(device), basis.to(device)
        self.sf = 1.0 if self.vae is None else float(self.vae.config.scaling_factor)
        with torch.no_grad():
            posteriors = [self.encode(self.paint(stripes(64, g, 2, self.painted))) for _ in range(pool // 64)]
        self.mean = torch.cat([m for m, _ in posteriors])
        self.std = torch.cat([sd for _, sd in posteriors])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [n, 3, H, W] -> posterior mean, std [n, C, side, side] (unscaled)
        if self.vae is not None:
            q = self.vae.encode(x).latent_dist
            return q.mean, q.std
        n, side = x.shape[0], x.shape[-1] // self.scale
        code = (F.unfold(x, self.scale, stride=self.scale).permute(0, 2, 1) - self.patch_mean) @ self.basis
        code = code.permute(0, 2, 1).reshape(n, self.channels, side, side)
        return code, torch.zeros_like(code)

    def paint(self, x: torch.Tensor) -> torch.Tensor:  # [n, 1, H, W] in [-1, 1] -> [n, 3, H, W] in [-1, 1] on the device
        w = x.to(self.device) * 0.5 + 0.5
        blue, yellow = self.BLUE.to(self.device).view(1, 3, 1, 1), self.YELLOW.to(self.device).view(1, 3, 1, 1)
        return (blue * (1 - w) + yellow * w) * 2 - 1

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        i = torch.randint(self.mean.shape[0], (n,), generator=g)
        return (self.mean[i] + self.std[i] * torch.randn(self.mean[i].shape, generator=g).to(self.device)) * self.sf

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:  # [n, C, side, side] -> [n, 1, H, W] on the CPU, blue -1 .. yellow +1
        z = z.to(self.device)
        if self.vae is not None:
            rgb = self.vae.decode(z / self.sf).sample * 0.5 + 0.5
        else:  # the basis' pseudo-inverse
            n, side = z.shape[0], z.shape[-1]
            patches = z.reshape(n, self.channels, -1).permute(0, 2, 1) @ torch.linalg.pinv(self.basis) + self.patch_mean
            rgb = F.fold(patches.permute(0, 2, 1), side * self.scale, self.scale, stride=self.scale) * 0.5 + 0.5
        rgb, axis = rgb.cpu(), self.YELLOW - self.BLUE
        w = ((rgb - self.BLUE.view(1, 3, 1, 1)) * axis.view(1, 3, 1, 1)).sum(1, keepdim=True) / axis.pow(2).sum()
        return (w * 2 - 1).clamp(-1, 1)


def build(layout: dict, widths: tuple[int, ...], channels: int = 1, side: int = SIZE):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=side, in_channels=channels, out_channels=channels, block_out_channels=widths,
                       layers_per_block=layout.get("layers_per_block", 1), down_block_types=layout["down"],
                       up_block_types=layout["up"], attention_head_dim=8, norm_num_groups=8)


def train(name: str, args, abar: torch.Tensor, latents: Latents | None):
    torch.manual_seed(args.seed)
    unet = build(LAYOUTS[name], tuple(args.widths), latents.channels if latents else 1, latents.side if latents else SIZE).to(args.device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)  # the same batches, times and noise for every layout
    start, losses = time.perf_counter(), []
    for step in range(args.steps):
        for group in optimizer.param_groups:  # warm-up, then cosine to zero
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        x0 = latents.draw(args.batch, g) if latents else stripes(args.batch, g).to(args.device)
        t = torch.randint(0, abar.shape[0], (args.batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g).to(args.device)
        a = abar[t].view(-1, 1, 1, 1).to(args.device)
        target, weight = denoising_target(x0, noise, a, args.prediction, args.min_snr)
        loss = (weight * (unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t.to(args.device)).sample - target) ** 2).mean() / weight.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(json.dumps({"layout": name, "step": step + 1, "loss": round(sum(losses[-250:]) / 250, 4),
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    return unet.eval(), {"parameters": sum(p.numel() for p in unet.parameters()), "train_s": round(time.perf_counter() - start, 1),
                         "last_loss": round(sum(losses[-250:]) / len(losses[-250:]), 4)}


@torch.no_grad()
def sample(unet, n: int, steps: int, seed: int, prediction: str = "epsilon") -> torch.Tensor:
    """[n, C, side, side] DDIM samples (eta 0) from noise seeded by `seed` (side: the UNet's sample_size)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**{**SD21_BASE_SCHEDULER, "prediction_type": prediction})
    scheduler.set_timesteps(steps)
    side = unet.config.sample_size
    x = torch.randn(n, unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(seed)).to(unet.device)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    return x.cpu()


def read(x: torch.Tensor) -> dict:
    """The readings of images [n, 1, H, W]; coherence_32 reads them area-averaged to SIZE (the pixel toy's
    own size, where a decoded image's edges no longer count, only where its stripes run)."""
    return {"coherence": round(float(coherence(x).mean()), 3), "coherence_q10": round(float(coherence(x).quantile(0.1)), 3),
            "coherence_32": round(float(coherence(F.adaptive_avg_pool2d(x, SIZE)).mean()), 3),
            "band": round(float(band(x).mean()), 3), "std": round(float(x.std()), 3)}


def main() -> None:
    global PERIOD
    from diffusers import DDIMScheduler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--widths", type=int, nargs=3, default=[32, 64, 64], help="block widths (the world UNet's: 64 128 128)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--prediction", default="epsilon", choices=["epsilon", "v_prediction"],
                        help="what the UNet predicts (diffusers' prediction_type)")
    parser.add_argument("--min-snr", type=float, default=None, metavar="GAMMA",
                        help="weigh the epsilon loss by min(SNR, GAMMA) / SNR, v's by min(SNR, GAMMA) / (SNR + 1) (Min-SNR; default: the plain objective)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", default=None, help="a world VAE folder: train on its latents of the stripes (see above); "
                                                     "pca: on a linear code of them (each 4x4 patch's top four principal components); "
                                                     "pca-natural: the same in their own proportions")
    parser.add_argument("--pool", type=int, default=4096, help="--vae: stripe images encoded")
    parser.add_argument("--factor", type=int, default=4, choices=[2, 4],
                        help="--vae pca: the code's patch side in px of the 128-px painting (2: a 64x64 grid of 2x2 patches, the "
                             "periods twice as many cells; the UNet's layout the same)")
    parser.add_argument("--period", type=float, nargs=2, default=list(PERIOD), metavar=("LO", "HI"),
                        help="the stripes' period range in cells of SIZE (the closer-framed world's: 3 4.5; "
                             "objects framed k times larger: k times both)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the same batches and noise: drawn on the CPU)")
    parser.add_argument("--picture", default=None, help="PNG: rows of data, then each layout's samples (128 px a sample)")
    args = parser.parse_args()
    PERIOD = tuple(args.period)  # stripes() and band() read it

    abar = DDIMScheduler(**SD21_BASE_SCHEDULER).alphas_cumprod
    assert args.factor == 4 or (args.vae or "").startswith("pca"), "--factor sets a linear code's patch (a VAE has its own)"
    latents = Latents(args.vae, args.pool, torch.Generator().manual_seed(20_000), args.device, args.factor) if args.vae else None
    data_g, noise_g = torch.Generator().manual_seed(10_000), torch.Generator().manual_seed(1)
    if latents:  # what the code gives back of the data, and what a noise latent decodes to
        with torch.no_grad():
            data = latents.decode(latents.encode(latents.paint(stripes(args.samples, data_g, 2, latents.painted)))[0] * latents.sf)
        noise = latents.decode(torch.randn(args.samples, latents.channels, latents.side, latents.side, generator=noise_g))
    else:
        data, noise = stripes(args.samples, data_g), torch.randn(args.samples, 1, SIZE, SIZE, generator=noise_g)
    rows = {"data": data, "noise": noise.clamp(-1, 1)}
    print(json.dumps({"source": "data" + (" (the code's round trip)" if latents else ""), **read(rows["data"])}), flush=True)
    print(json.dumps({"source": "noise", **read(rows["noise"])}), flush=True)
    for name in args.layouts:
        unet, figures = train(name, args, abar, latents)
        x = sample(unet, args.samples, args.sample_steps, seed=args.seed + 1, prediction=args.prediction)
        rows[name] = latents.decode(x) if latents else x.clamp(-1, 1)
        print(json.dumps({"source": name, "steps": args.steps, "batch": args.batch, "vae": args.vae, "factor": latents.scale if latents else None, "min_snr": args.min_snr, "prediction": args.prediction, "period": PERIOD, **figures, **read(rows[name])}), flush=True)
    if args.picture:
        from gsdi.media import image_grid, write_png

        shown = torch.cat([rows["data"][:16]] + [rows[k][:16] for k in args.layouts])
        shown = F.interpolate(shown, size=128, mode="nearest")  # every sample at 128 px, the world renders' size
        write_png(args.picture, image_grid(shown.repeat(1, 3, 1, 1).permute(0, 2, 3, 1) * 0.5 + 0.5, 8))


if __name__ == "__main__":
    main()
