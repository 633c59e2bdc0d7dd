"""How hard does score distillation push a faint haze off the white ground, through a given prior?

    python examples/research/haze_push.py --prior world scratch/U2/pipeline --zoom 1 1.5

A 3D run starts from Gaussians in a ball around the object; those the object does not need must fade
(their opacity pushed down until pruned). What pushes them is the prior's gradient on the faint haze
they make in a render. Per prior (each with its own framing, --zoom), for each prompt: world renders
of the prompt from front cameras of the training orbits at the prior's size, a speckled haze added on
the white ground of the views' top third (a third of those pixels tinted --strength toward a green);
the gradient of gsdi's own SDS loss (gsdi.guidance.guidance_loss, CFG --cfg, the prompt against the
empty one) on the image, summed over t = 100, 200, ..., 900 with --noises noises each. Prints one JSON
line per prior: the mean push toward white on the haze pixels (the gradient's component that makes
them whiter under descent; positive cleans), the gradient's mean size on the object, on the haze and
on clear white, and the push over the object's size (what Adam, which normalises scale, sees); and in
the latent, with the same draws on the render without the haze, how much the loss's residual
(x0 - target) changes along the haze's latent shift, over that shift's size (latent_restoring: 0 if
the prior does not see the haze), the push that this change alone makes on the haze, pulled back
through the encoder, over the object's size (response_push_over_object: the rest of the push is the
residual the render has without the haze), and the haze's latent shift (its RMS over the latent).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import torch

from gsdi.cameras import FRONT_VIEWS, sample_orbits
from gsdi.config import ORBIT_FOV, GuidanceConfig, zoomed_fov
from gsdi.guidance import Rng, guidance_loss
from gsdi.eval.evaluate import reference_objects
from gsdi.priors import TextCond, load_prior
from gsdi.world import pad_objects, parse, render_objects

PROMPTS = ["a blue car with yellow stripes", "a red castle with white stripes", "a green tree", "a white snowman with red dots"]
HAZE_TINT = (0.4, 0.8, 0.5)


def hazy_views(prompt: str, views: int, size: int, zoom: float, strength: float) -> tuple[torch.Tensor, ...]:
    """World renders of the prompt [V, 3, S, S] in [0, 1], the same with a haze, the haze's pixels
    [V, 1, S, S] and the object's [V, 1, S, S] (bool)."""
    g = torch.Generator().manual_seed(7)
    cams = sample_orbits(views, size, size, g, fov_range=zoomed_fov(ORBIT_FOV, zoom), azimuth_range=FRONT_VIEWS)
    rgb, alpha = render_objects(pad_objects(reference_objects(parse(prompt), views)), cams)
    x = rgb.permute(0, 3, 1, 2)
    ground = alpha.permute(0, 3, 1, 2) < 0.01
    top = torch.zeros_like(ground)
    top[..., : size // 3, :] = True
    haze = (torch.rand(ground.shape, generator=g) < 1 / 3) & ground & top
    tint = torch.tensor(HAZE_TINT).view(1, 3, 1, 1)
    return x, torch.where(haze, (1 - strength) * x + strength * tint, x), haze, alpha.permute(0, 3, 1, 2) > 0.5


def toward_white(grad: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The component [V, 1, S, S] of a loss gradient [V, 3, S, S] that, under descent, moves each pixel of images straight toward white."""
    whiter = 1 - images
    return (-grad * whiter).sum(1, keepdim=True) / whiter.norm(dim=1, keepdim=True).clamp_min(1e-6)


def push(prior, prompt: str, zoom: float, args) -> dict:
    """One prompt's figures through one prior (see the module's docstring)."""
    clean, images, haze, obj = hazy_views(prompt, args.views, prior.image_size, zoom, args.strength)
    V = images.shape[0]
    text = TextCond(prior.text_embeddings([f"{prompt}, front view"] * V), prior.text_embeddings([""] * V))
    config = GuidanceConfig(method="sds", cfg_scale=args.cfg, perp_neg=False)
    images = images.to(prior.device).requires_grad_(True)
    from_response = torch.zeros_like(images)  # [V, 3, S, S]: the gradient's part made by the residual's change
    restoring, shifts = [], []  # per draw: the latent residual's response to the haze along the haze's latent shift; the shift's RMS
    for t in range(100, 901, 100):
        for k in range(args.noises):
            rng = Rng.seeded(1000 * t + k)  # the VAE's posterior sample, then kappa
            x0 = prior.encode(images, generator=rng.device)
            hazy = guidance_loss(prior, x0, text, t, config, rng)
            with torch.no_grad():  # the same draws on the render without the haze
                rng = Rng.seeded(1000 * t + k)
                z = prior.encode(clean.to(prior.device), generator=rng.device)
                plain = guidance_loss(prior, z, text, t, config, rng)
                shift = (x0.detach() - z).flatten(1)  # the haze in the latent
                response = (x0.detach() - hazy.target) - (z - plain.target)  # the residual's change [V, c, h, w]
                restoring.append(((response.flatten(1) * shift).sum(1) / shift.pow(2).sum(1)).mean().item())
                shifts.append(shift.pow(2).mean().sqrt().item())
            # the part of the loss's gradient that the residual's change makes (the loss is 0.5 mean(r^2) / V)
            from_response += torch.autograd.grad((x0 * response).sum() / (x0.numel() * V), images, retain_graph=True)[0]
            hazy.loss.backward()
    grad, images, from_response = images.grad.cpu(), images.detach().cpu(), from_response.cpu()  # descent moves the image by -lr * grad
    push_on = toward_white(grad, images)
    size = grad.norm(dim=1, keepdim=True)
    clear = ~haze & ~obj
    clear[..., prior.image_size // 3:, :] = False
    figures = {"push_on_haze": push_on[haze].mean().item(), "size_on_object": size[obj].mean().item(),
               "size_on_haze": size[haze].mean().item(), "size_on_clear_white": size[clear].mean().item()}
    figures["push_over_object"] = figures["push_on_haze"] / figures["size_on_object"]
    figures["response_push_over_object"] = toward_white(from_response, images)[haze].mean().item() / figures["size_on_object"]
    figures["latent_restoring"] = sum(restoring) / len(restoring)  # 1 would undo the haze's latent shift in one step
    figures["latent_shift"] = sum(shifts) / len(shifts)  # RMS over the latent, in the prior's model space (unit-scaled latents)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", nargs="+", default=["world"])
    parser.add_argument("--zoom", type=float, nargs="+", default=None, help="each prior's framing (its training orbits zoomed; 1: the world's)")
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--noises", type=int, default=4)
    parser.add_argument("--strength", type=float, default=0.2)
    parser.add_argument("--cfg", type=float, default=7.5)
    args = parser.parse_args()
    zooms = args.zoom or [1.0] * len(args.prior)
    assert len(zooms) == len(args.prior), "one --zoom per --prior"
    torch.manual_seed(0)
    for name, zoom in zip(args.prior, zooms):
        prior = load_prior(name, torch.device("cpu"))
        per_prompt = {p: push(prior, p, zoom, args) for p in args.prompts}
        mean = {k: sum(f[k] for f in per_prompt.values()) / len(per_prompt) for k in next(iter(per_prompt.values()))}
        print(json.dumps({"prior": name, "zoom": zoom, "mean": {k: float(f"{v:.3g}") for k, v in mean.items()},
                          "push_over_object": {p: round(f["push_over_object"], 3) for p, f in per_prompt.items()},
                          "command": shlex.join(["python", *sys.argv])}), flush=True)


if __name__ == "__main__":
    main()
