"""The 2D dual of score distillation on the world prior: does a noise rule land near DDIM's samples?

    python examples/research/sdi_dual.py --variants sds sdi sdi-paper ism --seeds 4 --out docs/eval/dual
    python examples/research/sdi_dual.py --prior world --start noise --variants sds sds-cfg100 sdi-reference \
        --prompts "a red castle" "a blue car with yellow stripes" ... --out docs/eval/dual_world   # the paper's protocol

The paper's process without an optimiser (docs/method.md; the research log, 2026-11-26): start
from an image, and at each of --steps steps with t annealed 0.98 -> 0.02 set the image to the loss's
target, the one-step prediction from the noisy sample (`GuidanceOutput.target`). With random noise
(SDS) it is a valid sampler; with SDI's noise it should track DDIM. Every prompt (default: one per
category) starts from a white canvas with a centred grey disc of radius a sixth of the image, like a
first render of the initial cloud, and is scored by its error (MSE of RGB in [0, 1]) to the nearest
of many world renders of the prompt from front cameras, beside the prior's own DDIM-50 samples of
the same prompt and seeds. With `--start noise` every run starts where the paper's 2D protocol does,
from the prior's x0 prediction of pure noise at t = 999 (CFG --cfg; each seed's noise is DDIM's). Each
method also gets a fidelity KID against the reference renders (the critic's features) and, for
patterned prompts, the pattern measure of gsdi/eval/patterns.py (the mask: pixels not near white; for
--splats, pixels whose alpha is over a half).
Writes dual.json, dual.md and dual.png (a row per method, seed 0) to --out.

`--optimise LR` runs the dual as a 3D run does instead: the image is pixels (a sigmoid of a logit,
started from the start image decoded), encoded by the prior at every step and moved by Adam (LR) on
the loss's gradient, so each step is a small move toward that step's target and many targets are
averaged, the regime in which SDS is said to over-smooth; t falls from the variant's p_max to its
p_min (GuidanceConfig's, 0.98 -> 0.25 unless the variant sets them) over --steps, as gsdi's annealed
schedule does, and a level's t and noise are kept for the variant's hold_steps. Scored on the pixels
themselves. `--pixels N` optimises an N x N image upsampled (bilinear) to the prior's size, so that
neighbouring pixels move together as a splat's do; `--splats N` makes each image a render of N
Gaussians (gsdi's initial ball, rates and renderer, no densification) from one fixed front camera
(elevation 15, distance 1.75, field of view --splat-fov; the start image is then the ball's render), with
--optimise the colours' rate and gsdi's own rates for the rest: 3D's parameters on one view
(`--splat-views K`: K front cameras over azimuths -40..40, one a level in turn).

A variant is a named set of GuidanceConfig fields (VARIANTS below), or NAME='{"field": value}'.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.cameras import FRONT_VIEWS, orbit_cameras, sample_orbits
from gsdi.config import GuidanceConfig, OptimConfig, SceneConfig
from gsdi.media import image_grid, write_png
from gsdi.guidance import Rng, guidance_loss, kept_noise
from gsdi.guidance.ddim import sample_prior
from gsdi.guidance.schedule import t_annealed
from gsdi.priors import TextCond, load_prior
from gsdi.render import render
from gsdi.scene import init_params, make_optimizers
from gsdi.render import to_prior_input
from gsdi.world import pad_objects, parse, render_objects
from gsdi.eval.critic import load_critic
from gsdi.eval.evaluate import critic_features, kid, reference_objects
from gsdi.eval.patterns import pattern_contrast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import candidate_world_arguments, use_candidate_world  # noqa: E402

PROMPTS = ["a red castle", "a blue house", "a green tree", "a white snowman", "a red mushroom", "a blue car",
           "an orange rocket", "a yellow duck", "a purple lamp", "a brown table"]
PAPER = {"method": "sdi", "inversion_start": 0, "inversion_cfg_scale": -7.5, "inversion_eta": 0.3, "inversion_steps": 10}
VARIANTS: dict[str, dict] = {
    "sds": {"method": "sds"},
    "sdi": {"method": "sdi"},  # the project's defaults, whatever they are
    "sdi-paper": PAPER,
    "sdi-paper-cfg7.5-eta0": {**PAPER, "inversion_cfg_scale": 7.5, "inversion_eta": 0.0},
    "ism": {"method": "ism"},
    "sds-cfg100": {"method": "sds", "cfg_scale": 100.0},
    # the reference's step (threestudio's stable-diffusion-sdi-guidance, as the stable-diffusion preset sets it, Perp-Neg off)
    "sdi-reference": {**PAPER, "cfg_form": "reference", "prediction_timestep": "scheduled"},
}


def front_references(prompt: str, instances: int, size: int, cameras: str = "training") -> tuple[torch.Tensor, torch.Tensor]:
    """World renders of the prompt from V front cameras per instance: RGB [instances * V, S, S, 3] and alpha [..., 1].

    "training": V = 8 cameras drawn per instance from the prior's training orbits restricted to what
    "front view" means (|azimuth| < 45; gsdi.config's ORBIT_* ranges of distance, fov, elevation), since the
    prompt does not fix the framing; "fixed": the 4 cameras (azimuth 0, elevation 0/25,
    distance/fov 1.6/50 and 1.9/65) of the first runs of this script.
    """
    spec = parse(prompt)
    V = 8 if cameras == "training" else 4
    out, alpha = [], []
    for m, instance in enumerate(reference_objects(spec, instances)):
        if cameras == "training":
            g = torch.Generator().manual_seed(5000 + m)
            cams = sample_orbits(V, size, size, g, azimuth_range=FRONT_VIEWS)
        else:
            cams = orbit_cameras(torch.zeros(4), torch.tensor([0.0, 0.0, 25.0, 25.0]), torch.tensor([1.6, 1.9, 1.6, 1.9]),
                                 torch.tensor([50.0, 65.0, 50.0, 65.0]), size, size)
        rgb, a = render_objects(pad_objects([instance] * V), cams)
        out.append(rgb)
        alpha.append(a)
    return torch.cat(out), torch.cat(alpha)


def disc_start(size: int) -> torch.Tensor:
    """[1, 3, S, S] a white canvas with a centred grey (0.5) disc of radius S/6."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= (size / 6) ** 2
    image = torch.ones(1, 3, size, size)
    image[:, :, inside] = 0.5
    return image


def variant(text: str) -> tuple[str, dict]:
    if "={" in text:
        name, fields = text.split("={", 1)
        return name, json.loads("{" + fields)
    return text, VARIANTS[text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--variants", nargs="+", default=["sds", "sdi", "sdi-paper", "ism"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=4, help="runs per prompt (seeds 0..N-1)")
    parser.add_argument("--instances", type=int, default=32, help="world instances per prompt in the reference set")
    parser.add_argument("--references", choices=["training", "fixed"], default="training",
                        help="front cameras of the reference renders (see front_references)")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=7.5, help="CFG of the DDIM samples (the guidance's scale)")
    parser.add_argument("--no-clamp", dest="clamp", action="store_false",
                        help="keep targets outside the image range (a render is always inside it, so by default the dual "
                             "clamps a pixel prior's targets; a latent prior's are never clamped)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prior", default="embedded", help="a prior's name or folder (embedded, world, ...)")
    parser.add_argument("--start", choices=["disc", "noise"], default="disc",
                        help="disc: a grey disc on white; noise: the x0 prediction of pure noise at t = 999 (the paper's 2D protocol)")
    parser.add_argument("--optimise", type=float, default=0.0, metavar="LR",
                        help="Adam on a pixel image through the encoder at this learning rate, t over the variant's "
                             "p_max -> p_min (0: x <- target, t 0.98 -> 0.02)")
    parser.add_argument("--pixels", type=int, default=0,
                        help="with --optimise: the side of the optimised image, upsampled to the prior's (0: the prior's)")
    parser.add_argument("--splats", type=int, default=0,
                        help="with --optimise: each image a render of this many Gaussians from one front camera")
    parser.add_argument("--splat-fov", type=float, default=55.0,
                        help="--splats: the camera's field of view (the middle of the prior's training orbits: 55 for "
                             "the world's, 38.7 for --zoom 1.5)")
    parser.add_argument("--splat-views", type=int, default=1,
                        help="--splats: cameras at azimuths spread over -40..40 (all front views), one a level in turn; "
                             "scored from the front one")
    parser.add_argument("--verbose", action="store_true", help="print t, t', kappa std and max |target| at every step")
    parser.add_argument("--critic", choices=["plain", "patterns"], default="plain",
                        help="the KID's critic: plain (64 px, docs/eval/yardstick) or patterns (128 px, has seen patterns "
                             "averaged away, docs/eval/yardstick_patterns)")
    candidate_world_arguments(parser)  # --zoom: the references framed as the prior's training views (1.5 for "world")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if (args.pixels or args.splats) and not args.optimise:
        parser.error("--pixels and --splats shape the image --optimise moves: give --optimise LR")
    use_candidate_world(args)
    args.out.mkdir(parents=True, exist_ok=True)

    device = torch.device(args.device)
    prior = load_prior(args.prior, device)
    S, T = prior.image_size, prior.alphas_cumprod.shape[0]
    P, N = len(args.prompts), args.seeds
    prompts = [p for p in args.prompts for _ in range(N)]  # rows: prompt-major, seed-minor
    text = TextCond(prior.text_embeddings([f"{p}, front view" for p in prompts]), prior.text_embeddings([""] * len(prompts)))
    references = [front_references(p, args.instances, S, args.references) for p in args.prompts]
    refs = [rgb.to(device) for rgb, _ in references]
    critic = load_critic("cpu", patterns=args.critic == "patterns")
    ref_features = [critic_features(critic, rgb) for rgb, _ in references]

    def scores(x: torch.Tensor, pixels: bool = False, alpha: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """The rows decoded once -> ({"errors": nearest-reference MSE per row, "fidelity_kid": per prompt, KID
        of its N images against its reference renders, "pattern_contrast": per patterned prompt, the pattern
        measure of its N images masked where not near white, or where alpha [P * N, S, S, 1] (splats) is
        over a half}, the decoded seed-0 images [P, 3, S, S])."""
        rgb = (x if pixels else prior.decode(x)).permute(0, 2, 3, 1)
        errors = [float(((rgb[i][None] - refs[i // N]) ** 2).flatten(1).mean(1).min()) for i in range(P * N)]
        shown = rgb.cpu().clamp(0, 1)
        fid, pat = [], []
        for i, prompt in enumerate(args.prompts):
            mine = shown[i * N:(i + 1) * N]
            fid.append(round(kid(critic_features(critic, mine), ref_features[i]), 4))
            spec = parse(prompt)
            patterned = spec.pattern is not None and spec.colour is not None
            mask = (mine < 0.9).any(-1, keepdim=True).float() if alpha is None else (alpha[i * N:(i + 1) * N].cpu() > 0.5).float()
            pat.append(round(pattern_contrast(mine, mask, spec, *references[i]), 3) if patterned else None)
        return {"errors": errors, "fidelity_kid": fid, "pattern_contrast": pat}, rgb[::N].permute(0, 3, 1, 2).cpu()

    noise = torch.cat([torch.randn(1, *prior.encode(disc_start(S).to(device)).shape[1:],
                                   generator=torch.Generator().manual_seed(seed)) for _ in args.prompts for seed in range(N)])
    start = time.time()
    ddim = sample_prior(prior, text, noise.to(device), args.ddim_steps, args.cfg)
    seconds = round(time.time() - start, 1)
    scored, shown = scores(ddim)
    results = {"ddim": {**scored, "unet_calls": args.ddim_steps, "seconds": seconds}}
    images = {"ddim": shown}
    print(json.dumps({"method": "ddim", "mean_error": round(sum(scored["errors"]) / (P * N), 4)}), flush=True)

    if args.start == "noise":  # x0 predicted from pure noise at t = 999 (each seed's noise is DDIM's)
        z = noise.to(device)
        a = prior.alphas_cumprod[T - 1].to(device)
        start_image = (z - (1 - a).sqrt() * prior.predict_noise(z, T - 1, text, args.cfg)) / a.sqrt()
    else:
        start_image = prior.encode(disc_start(S).to(device)).expand(P * N, -1, -1, -1).clone()
    clamp = args.clamp and start_image.shape[1:] == (3, S, S)  # a pixel prior's image; a latent has no such range

    def splat_camera(azimuth: float):
        return orbit_cameras(torch.full((1,), azimuth), torch.full((1,), 15.0), torch.full((1,), 1.75),
                             torch.full((1,), args.splat_fov), S, S)

    front = splat_camera(0.0)
    turns = [splat_camera(a) for a in torch.linspace(-40, 40, args.splat_views).tolist()] if args.splat_views > 1 else [front]

    def splat_images(scenes: list, camera=front, alpha: bool = False):
        """--splats: each scene rendered from the camera (default the front one) -> [B, 3, S, S] in [0, 1]
        (with alpha: also the alpha [B, S, S, 1])."""
        out = [render(scene, camera, (1.0, 1.0, 1.0), "torch") for scene in scenes]
        rgb = to_prior_input(torch.cat([o.rgb for o in out]), S)
        return (rgb, to_prior_input(torch.cat([o.alpha for o in out]), S).permute(0, 2, 3, 1)) if alpha else rgb

    def image(logit: torch.Tensor) -> torch.Tensor:
        """--optimise's parameters [B, 3, N, N] -> the image [B, 3, S, S] in [0, 1] the prior sees."""
        rgb = torch.sigmoid(logit)
        return rgb if rgb.shape[-1] == S else F.interpolate(rgb, size=S, mode="bilinear", align_corners=False)
    for text_variant in args.variants:
        name, fields = variant(text_variant)
        config = GuidanceConfig(**fields)
        x, rng = start_image.clone(), Rng.seeded(0, device)
        if args.splats:  # one scene per image, its colours at --optimise, the rest at gsdi's rates
            scenes = [init_params(SceneConfig(num_points=args.splats), torch.Generator().manual_seed(i), device)
                      for i in range(P * N)]
            adams = [adam for scene in scenes for adam in make_optimizers(scene, OptimConfig(sh0_lr=args.optimise)).values()]
        elif args.optimise:  # pixels through the encoder, as a 3D run's renders
            pixels = prior.decode(start_image)  # RGB in [0, 1] for either kind of prior
            if args.pixels:
                pixels = F.interpolate(pixels, size=args.pixels, mode="area")
            logit = torch.logit(pixels.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
            adams = [torch.optim.Adam([logit], lr=args.optimise)]
        held = None  # --optimise: the current level's t and noise
        calls_before = prior.runner.calls  # CFG-batched UNet calls
        kappa_std, begin = [], time.time()
        for step in range(args.steps):
            if args.optimise:  # a level's t and noise kept for hold_steps steps, as gsdi/step.py keeps them
                held = held if step % config.hold_steps else None
                t = held["t"] if held else t_annealed(step, args.steps - 1, T, config.p_min, config.p_max)
                turn = turns[(step // config.hold_steps) % len(turns)]  # --splat-views: a level's camera
                z = prior.encode(splat_images(scenes, turn) if args.splats else image(logit), generator=rng.device)
                out = guidance_loss(prior, z, text, t, config, rng, kept_noise(held["noise"], held["t_noisy"]) if held else None)
                held = held or {"t": t, "t_noisy": out.t_noisy, "noise": out.noise}
                for adam in adams:
                    adam.zero_grad(set_to_none=True)
                out.loss.backward()
                for adam in adams:
                    adam.step()
            else:
                t = t_annealed(step, args.steps - 1, T, 0.02, 0.98)
                out = guidance_loss(prior, x, text, t, config, rng)
                x = out.target.clamp(-1, 1) if clamp else out.target
            kappa_std.append(round(float(out.kappa.std()), 3))
            if args.verbose:
                print(step, t, out.t_noisy, round(float(out.kappa.std()), 3), round(float(out.target.abs().max()), 2), flush=True)
        calls, seconds = prior.runner.calls - calls_before, round(time.time() - begin, 1)
        if args.optimise:
            with torch.no_grad():
                final, alpha = splat_images(scenes, alpha=True) if args.splats else (image(logit), None)
            scored, images[name] = scores(final, pixels=True, alpha=alpha)
        else:
            scored, images[name] = scores(x)
        results[name] = {"fields": fields, **scored, "unet_calls": calls, "kappa_std_by_step": kappa_std, "seconds": seconds}
        print(json.dumps({"method": name, "mean_error": round(sum(scored["errors"]) / (P * N), 4), "unet_calls": calls,
                          "kappa_std_first_mid_last": kappa_std[:: max(args.steps // 2 - 1, 1)]}), flush=True)

    def per_prompt(errs: list[float]) -> list[float]:
        return [sum(errs[i * N:(i + 1) * N]) / N for i in range(P)]

    reference = per_prompt(results["ddim"]["errors"])
    for name, r in results.items():
        r["per_prompt"] = dict(zip(args.prompts, [round(e, 4) for e in per_prompt(r["errors"])]))
        r["ratio_to_ddim"] = dict(zip(args.prompts, [round(e / d, 2) for e, d in zip(per_prompt(r["errors"]), reference)]))
        r["worst_ratio"] = max(r["ratio_to_ddim"].values())
    command = "python examples/research/sdi_dual.py " + shlex.join(sys.argv[1:])
    (args.out / "dual.json").write_text(json.dumps({"command": command, "prompts": args.prompts, "seeds": N,
                                                    "steps": args.steps, "results": results}, indent=1))
    short = [p.split(" ", 1)[1] for p in args.prompts]  # without the article
    lines = [f"Made by: `{command}`", "",
             f"Nearest-world-render error (MSE, mean of {N} seeds; lower is better); in brackets the ratio to DDIM-{args.ddim_steps}.", "",
             "| method | UNet calls | " + " | ".join(short) + " | worst ratio |", "|---" * (P + 3) + "|"]
    for name, r in results.items():
        cells = [f"{r['per_prompt'][p]:.4f} ({r['ratio_to_ddim'][p]:.2f})" for p in args.prompts]
        lines.append(f"| {name} | {r['unet_calls']} | " + " | ".join(cells) + f" | {r['worst_ratio']:.2f} |")
    lines += ["", "Fidelity KID per prompt against its reference renders (critic features; lower is better), and for patterned",
              "prompts the pattern measure (1: the world's two-colour contrast at the pattern's scale, blotches included):", "",
              "| method | " + " | ".join(short) + " |", "|---" * (P + 1) + "|"]
    for name, r in results.items():
        cells = [f"{f:.3f}" + (f" / {p:.2f}" if p is not None else "") for f, p in zip(r["fidelity_kid"], r["pattern_contrast"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "dual.md").write_text("\n".join(lines) + "\n")
    write_png(args.out / "dual.png", image_grid(torch.cat(list(images.values())).permute(0, 2, 3, 1), P))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
