"""What the training scripts share: the command line of examples/train_recogniser.py and
examples/train_critic.py, and the priors' start and optimiser step with its weight average
(train_embedded_prior.py, train_world_prior.py), their denoising objective, and latents fitted
through a VAE's decoder (train_world_prior.py, research/vae_patterns.py), and a haze on a render's
white ground (research/haze_encoder.py, train_world_prior.py tiny)."""

from __future__ import annotations

import argparse
from pathlib import Path


def training_arguments(description: str, train: int, held_out: int, steps: int, what: str,
                       extra: dict[str, dict] | None = None) -> argparse.Namespace:
    """The command line of a world network's training script (pool sizes, steps, a time budget, batch,
    lr, width, device, --out; `extra` adds flags, name -> add_argument's keywords)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--train", type=int, default=train, help=f"training {what}")
    parser.add_argument("--held-out", type=int, default=held_out, help=f"held-out {what} (other seeds)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--minutes", type=float, default=None, help="stop training after this long (the schedule follows the clock)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    for name, keywords in (extra or {}).items():
        parser.add_argument(name, **keywords)
    candidate_world_arguments(parser)
    args = parser.parse_args()
    use_candidate_world(args)
    return args


def candidate_world_arguments(parser: argparse.ArgumentParser) -> None:
    """--period LO HI and --zoom Z: a candidate world, trained on before the world changes (see use_candidate_world)."""
    parser.add_argument("--period", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="draw the patterns' periods from this range (world units) instead of the world's "
                             "(gsdi.world.objects.PERIOD): a candidate world, trained on before the world changes")
    parser.add_argument("--zoom", type=float, default=None,
                        help="frame the training orbits this many times closer (their field of view narrowed, "
                             "gsdi.config.ORBIT_FOV): a candidate world whose objects fill more of each view")


def use_candidate_world(args: argparse.Namespace) -> None:
    """This process draws pattern periods from --period and training orbits zoomed by --zoom, where
    given (the card's command records them)."""
    if args.period is not None:
        import gsdi.world.objects as objects

        assert 0 < args.period[0] <= args.period[1], args.period
        objects.PERIOD = tuple(args.period)  # build_object draws each instance's period from it
    if args.zoom is not None:
        import gsdi.config as config

        config.ORBIT_FOV = config.zoomed_fov(config.ORBIT_FOV, args.zoom)  # sample_orbits reads it at each call


def training_start(args: argparse.Namespace) -> str:
    """A training script's start: the device ("cuda" where there is one), cuDNN's autotuner, --out made,
    torch seeded with --seed."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    return device


def ema_step(loss, optimizer, parameters: list, ema: list, decay: float, clip: float = 1.0) -> None:
    """One optimiser step on `loss` with the gradient norm clipped to `clip`, then the weight average
    `ema` (what a prior ships) moves towards the weights by 1 - decay."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    optimizer.step()
    torch._foreach_lerp_(ema, [p.detach() for p in parameters], 1 - decay)


def denoising_target(x0, noise, abar_t, prediction: str, gamma: float | None):
    """What a diffusion UNet regresses on at these noise levels, and the loss weight: (target, weight),
    target [n, ...], weight [n, 1, ...] broadcastable. prediction "epsilon": the noise;
    "v_prediction": v = sqrt(abar) eps - sqrt(1 - abar) x0 (SD 2.1 768's objective). gamma:
    Min-SNR-gamma (Hang et al., ICCV 2023), the same weight on the clean estimate's error for either
    target, min(SNR, gamma) / SNR on epsilon's, min(SNR, gamma) / (SNR + 1) on v's, SNR = abar /
    (1 - abar), so the nearly clean steps weigh less; None or 0: weight 1 (the plain objective)."""
    import torch

    weight = torch.ones_like(abar_t)
    if gamma:
        snr = abar_t / (1 - abar_t)
        weight = snr.clamp(max=gamma) / snr * (abar_t if prediction == "v_prediction" else 1)
    if prediction == "v_prediction":
        return abar_t.sqrt() * noise - (1 - abar_t).sqrt() * x0, weight
    return noise, weight


def decoder_latents(vae, x, steps: int, lr: float = 0.03, start=None):
    """Latents [N, C, h, w] for images x [N, 3, H, W] in [-1, 1]: the encoder's posterior mean (or
    `start`, where the caller has it), then `steps` Adam steps on the decoded squared error through
    the frozen decoder (what the decoder can draw of x, without the encoder's limits)."""
    import torch

    assert x.ndim == 4 and x.shape[1] == 3, x.shape
    if start is None:
        with torch.no_grad():
            start = vae.encode(x).latent_dist.mean
    z = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = (vae.decode(z).sample - x).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return z.detach()


def add_haze(x, tints, g, uniform: bool = False, darken: float = 0.0):
    """Renders x [B, 3, S, S] in [0, 1] -> (the same with a haze on their white ground, the haze's pixels
    [B, 1, S, S] bool). tints [K, 3, 1, 1] to draw from, or None for any colour of the RGB cube; uniform:
    every pixel of a cloud tinted (else a random tenth to half of them); darken: with tints None, the
    share of clouds that are a plain grey."""
    import torch
    import torch.nn.functional as F

    B, _, S, _ = x.shape
    ground = (x > 0.97).all(1, keepdim=True)
    density = 0.1 + 0.4 * torch.rand(B, 1, 1, 1, generator=g, device=x.device)
    density = torch.ones_like(density) if uniform else density  # drawn either way: the later draws stay those without --uniform
    strength = 0.05 + 0.35 * torch.rand(B, 1, 1, 1, generator=g, device=x.device)
    cloud = F.interpolate(torch.rand(B, 1, 8, 8, generator=g, device=x.device), size=S, mode="bilinear") > 0.5
    haze = (torch.rand(B, 1, S, S, generator=g, device=x.device) < density) & ground & cloud
    if tints is None:
        tint = torch.rand(B, 3, 1, 1, generator=g, device=x.device)
        if darken > 0:  # that share of the clouds a plain grey: a darkening of the white ground
            grey = torch.rand(B, 1, 1, 1, generator=g, device=x.device).expand(B, 3, 1, 1)
            tint = torch.where(torch.rand(B, 1, 1, 1, generator=g, device=x.device) < darken, grey, tint)
    else:
        tint = tints[torch.randint(len(tints), (B,), generator=g, device=x.device)]  # [B, 3, 1, 1]
    return torch.where(haze, (1 - strength) * x + strength * tint, x), haze
