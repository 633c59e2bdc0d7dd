"""SDS vs SDI against the world's ground truth, side by side (shared/world.md).

    python examples/eval_world.py --prompts "a red castle" "a blue car" --preset preview --out docs/eval

For each prompt runs three generations with the same seed, prior and step budget: SDS with random t
(the classic baseline), SDS with SDI's annealed t (separates "annealing helps" from "inversion
helps") and SDI. Each scene is rendered from held-out views (8 azimuths x 2 elevations) next to M
fixed instances of the prompt drawn from the world, and scored by
- best-instance PSNR: max over instances of the mean PSNR over views (blurry averages score low),
- silhouette IoU (alpha > 0.5) against that instance,
- front/back: whether the generated front and back match the instance's front and back better
  than swapped (1) or not (0): the Janus check.
Also the 2D analogue: one image optimised directly by SDS and by SDI, beside plain DDIM sampling with
the same number of UNet calls, each scored by its error to the nearest world render of the prompt.
Writes eval.json, eval.md and grid.png to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

import gsdi
from gsdi.cameras import orbit_cameras
from gsdi.config import GuidanceConfig
from gsdi.export import image_grid, read_ply, write_png
from gsdi.guidance import Rng, guidance_loss, timestep
from gsdi.guidance.ddim import ddim_sample, sampling_grid
from gsdi.priors import TextCond, load_prior
from gsdi.render import render
from gsdi.world import pad_objects, parse, render_objects, sample_object

METHODS = {  # name: guidance overrides
    "sds-random-t": {"guidance.method": "sds", "guidance.t_schedule": "random"},
    "sds-annealed-t": {"guidance.method": "sds", "guidance.t_schedule": "anneal"},
    "sdi": {"guidance.method": "sdi", "guidance.t_schedule": "anneal"},
    "sdi-k10": {"guidance.method": "sdi", "guidance.t_schedule": "anneal", "guidance.inversion_steps": 10},
    "sdi-paper": {"guidance.method": "sdi", "guidance.t_schedule": "anneal", "guidance.inversion_start": 0,
                  "guidance.inversion_cfg_scale": -7.5, "guidance.inversion_eta": 0.3},
    "ism": {"guidance.method": "ism", "guidance.t_schedule": "anneal"},
}
DEFAULT_METHODS = ["sds-random-t", "sds-annealed-t", "sdi"]
AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0]
ELEVATIONS = [5.0, 30.0]


def random_prompts(n: int, seed: int) -> list[str]:
    """n distinct "a/an {colour} {category}" prompts drawn with `seed`."""
    from gsdi.world.language import describe
    from gsdi.world.objects import CATEGORIES, PALETTE

    g = torch.Generator().manual_seed(seed)
    pairs = [(c, k) for c in CATEGORIES for k in PALETTE]
    return [describe(*pairs[i]) for i in torch.randperm(len(pairs), generator=g)[:n].tolist()]


def recognised(recogniser, views: torch.Tensor, spec) -> dict:
    """Share of views [V, H, W, 3] named as the prompt's category (and colour, when it has one)."""
    from gsdi.world.recogniser import recognise

    names = recognise(recogniser, views.cpu())
    category = [c == spec.category for c in names["category"]]
    both = [c and (spec.colour is None or k == spec.colour) for c, k in zip(category, names["colour"])]
    return {"recognised": round(sum(both) / len(both), 3), "category_recognised": round(sum(category) / len(category), 3)}


def ddim_views(prior, prompt: str, seed: int) -> torch.Tensor:
    """[8, S, S, 3] DDIM-50 samples (CFG 7.5) of the prompt with the view words of the ring's 8 azimuths."""
    from gsdi.cameras import view_word

    words = [view_word(a, 30.0) for a in AZIMUTHS]
    text = TextCond(prior.text_embeddings([f"{prompt}, {w} view" for w in words]), prior.text_embeddings([""] * len(words)))
    x = prior.encode(torch.zeros(len(words), 3, prior.image_size, prior.image_size, device=prior.device))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(prior.device)
    grid = sampling_grid(1000, 50, prior.steps_offset)
    return prior.decode(ddim_sample(lambda v, t: prior.predict_noise(v, t, text, 7.5), z, prior.alphas_cumprod, grid)).permute(0, 2, 3, 1)


def eval_cameras(size: int):
    az = torch.tensor(AZIMUTHS * len(ELEVATIONS))
    el = torch.tensor([e for e in ELEVATIONS for _ in AZIMUTHS])
    n = az.shape[0]
    return orbit_cameras(az, el, torch.full((n,), 1.8), torch.full((n,), 55.0), size, size)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of [V, H, W, 3] in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def score(scene_rgb, scene_alpha, inst_rgb, inst_alpha) -> dict:
    """scene [V,H,W,*], instances [M,V,H,W,*] -> best-instance PSNR, IoU, front/back correctness."""
    per_instance = torch.stack([psnr(scene_rgb, inst_rgb[m]).mean() for m in range(inst_rgb.shape[0])])
    best = int(per_instance.argmax())
    a, b = scene_alpha[..., 0] > 0.5, inst_alpha[best][..., 0] > 0.5
    iou = float((a & b).sum() / (a | b).sum().clamp_min(1))
    front, back = AZIMUTHS.index(0.0), AZIMUTHS.index(180.0)
    f_gen, b_gen = scene_rgb[[front, back]]
    f_ref, b_ref = inst_rgb[best][[front, back]]
    straight = psnr(f_gen[None], f_ref[None]) + psnr(b_gen[None], b_ref[None])
    swapped = psnr(f_gen[None], b_ref[None]) + psnr(b_gen[None], f_ref[None])
    # Haze: the share of the scene's rendered alpha that falls outside the matched instance's
    # silhouette grown by 2 pixels (so edges do not count), and the share of it that is faint (< 0.5).
    grown = torch.nn.functional.max_pool2d(b[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
    alpha = scene_alpha[..., 0]
    outside = alpha * ~grown
    return {"best_instance_psnr": round(float(per_instance[best]), 2), "silhouette_iou": round(iou, 3),
            "front_back_correct": int(straight.item() > swapped.item()), "best_instance": best,
            "alpha_outside": round(float(outside.sum() / alpha.sum().clamp_min(1e-6)), 4),
            "faint_alpha_outside": round(float((outside * (alpha < 0.5)).sum() / alpha.sum().clamp_min(1e-6)), 4),
            # Size: the scene's silhouette area over the matched instance's (1: the world's framing).
            "area_ratio": round(float(a.sum() / b.sum().clamp_min(1)), 3)}


def method_means(rows: list[dict], ddim_share: dict) -> dict:
    """Per method: the mean of each score over its prompts, front/back and majority-recognised counts."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        mean = lambda key, digits=3: round(sum(r[key] for r in mine) / len(mine), digits)  # noqa: E731
        out[method] = {"prompts": len(mine), "best_instance_psnr": mean("best_instance_psnr", 2),
                       "silhouette_iou": mean("silhouette_iou"), "front_back_correct": f"{sum(r['front_back_correct'] for r in mine)}/{len(mine)}",
                       "alpha_outside": mean("alpha_outside", 4), "faint_alpha_outside": mean("faint_alpha_outside", 4),
                       "area_ratio": mean("area_ratio")}
        if all("recognised" in r for r in mine):
            out[method]["recognised"] = mean("recognised")
            out[method]["recognised_by_majority"] = f"{sum(r['recognised'] > 0.5 for r in mine)}/{len(mine)}"
            if all(r["prompt"] in ddim_share for r in mine):
                out[method]["ddim_recognised"] = round(sum(ddim_share[r["prompt"]]["recognised"] for r in mine) / len(mine), 3)
    return out


def image_analogue(prior, prompt: str, world_refs: torch.Tensor, steps: int, seed: int) -> dict:
    """Optimise one image (model space) by SDS and by SDI; DDIM-sample with the same UNet calls."""
    cond = TextCond(prior.text_embeddings([f"{prompt}, front view"]), prior.text_embeddings([""]))
    out, calls = {}, {}
    for name, method in (("sds", "sds"), ("sdi", "sdi")):
        config = GuidanceConfig(method=method, t_schedule="anneal")
        gray = torch.full((1, 3, prior.image_size, prior.image_size), 0.5, device=prior.device)
        x = prior.encode(gray).detach().clone().requires_grad_()
        optimizer = torch.optim.Adam([x], lr=0.02)
        rng = Rng.seeded(seed, prior.device)
        calls_before = prior.runner.calls  # CFG-batched UNet calls
        for step in range(steps):
            loss = guidance_loss(prior, x, cond, timestep(step, steps, config, 1000, rng), config, rng).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        out[name], calls[name] = prior.decode(x.detach()), prior.runner.calls - calls_before
    n = max(1, min(calls["sdi"], 999))
    g = torch.Generator().manual_seed(seed)
    c = x.shape[1]
    z = torch.randn(1, c, x.shape[2], x.shape[3], generator=g).to(prior.device)
    grid = sampling_grid(1000, n, prior.steps_offset)
    z = ddim_sample(lambda v, t: prior.predict_noise(v, t, cond, 7.5), z, prior.alphas_cumprod, grid)
    out["ddim"] = prior.decode(z)
    result = {}
    for name, image in out.items():
        err = ((image.permute(0, 2, 3, 1).cpu() - world_refs) ** 2).flatten(1).mean(1)
        result[name] = {"nearest_world_mse": round(float(err.min()), 5), "unet_calls": calls.get(name, n)}
    return result, {k: v.cpu() for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=["a red castle", "a blue car"])
    parser.add_argument("--random-prompts", type=int, default=0, metavar="N",
                        help="instead of --prompts, N prompts drawn at random (category and colour) with --prompt-seed: "
                             "prompts nobody chose, for held-out checks")
    parser.add_argument("--prompt-seed", type=int, default=0)
    parser.add_argument("--no-recogniser", action="store_true", help="skip the recognised share (gsdi/world/recogniser.py)")
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-steps", type=int, default=200, help="steps of the 2D analogue (0: skip it)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                        help=f"any of {', '.join(METHODS)}, or NAME='{{\"guidance.field\": value, ...}}' for a variant")
    parser.add_argument("--device", default="cpu", help="where the generations run (auto, cpu, cuda); scoring is on CPU")
    parser.add_argument("--runs", type=Path, default=None, help="where the generations go (default: a temporary folder)")
    args = parser.parse_args()
    for i, text in enumerate(args.methods):  # NAME={...}: a named set of config overrides
        if "={" in text:
            name, fields = text.split("={", 1)
            METHODS[name] = json.loads("{" + fields)
            args.methods[i] = name
        elif text not in METHODS:
            parser.error(f"unknown method {text!r}; choose from {', '.join(METHODS)} or give NAME={{...}}")
    if args.random_prompts:
        args.prompts = random_prompts(args.random_prompts, args.prompt_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="gsdi-eval-"))

    rows, grid_rows, analogue, ddim_share = [], [], {}, {}
    recogniser = None
    if not args.no_recogniser:
        from gsdi.world.recogniser import load_recogniser

        recogniser = load_recogniser("cpu")
    from gsdi.generate import resolve_device

    prior = load_prior(args.prior, resolve_device(args.device))
    size = prior.image_size
    cams = eval_cameras(size)
    for prompt in args.prompts:
        spec = parse(prompt)
        instances = [sample_object(spec.category, spec.colour, 1000 + m)[0] for m in range(args.instances)]
        inst = [render_objects(pad_objects([o] * len(cams)), cams) for o in instances]
        inst_rgb, inst_alpha = torch.stack([r for r, _ in inst]), torch.stack([a for _, a in inst])
        scored = {}
        for name in args.methods:
            overrides = dict(METHODS[name])
            steps = overrides.pop("steps", args.steps)  # a method may set its own step count
            result = gsdi.generate(prompt, out=runs / f"{prompt.replace(' ', '-')}-{name}",
                                   preset=args.preset, steps=steps, seed=args.seed, prior=args.prior,
                                   device=args.device, force=True, progress=False, **overrides)
            with torch.no_grad():
                r = render(read_ply(result.ply), cams, (1.0, 1.0, 1.0), "torch")
            scored[name] = score(r.rgb, r.alpha, inst_rgb, inst_alpha)
            if recogniser is not None:  # the 8 views of the 30-degree ring, named by the recogniser
                scored[name].update(recognised(recogniser, r.rgb[len(AZIMUTHS):], spec))
            scored[name]["seconds"] = round(result.seconds, 1)
            rows.append({"prompt": prompt, "method": name, **scored[name]})
            grid_rows.append(r.rgb[len(AZIMUTHS):])  # the 30-degree ring
            print(json.dumps(rows[-1]), flush=True)
        if recogniser is not None:
            ddim_share[prompt] = recognised(recogniser, ddim_views(prior, prompt, args.seed), spec)
            print(json.dumps({"prompt": prompt, "ddim_samples": ddim_share[prompt]}), flush=True)
        best = scored[args.methods[-1]]["best_instance"]
        grid_rows.insert(len(grid_rows) - len(args.methods), inst_rgb[best][len(AZIMUTHS):])
        if args.image_steps <= 0:
            continue
        refs = inst_rgb[:, AZIMUTHS.index(0.0)]  # the instances' front views, 5 degrees up
        analogue[prompt], images = image_analogue(prior, prompt, refs, args.image_steps, args.seed)
        print(json.dumps({"prompt": prompt, "image_analogue": analogue[prompt]}), flush=True)
        write_png(args.out / f"image_analogue-{prompt.replace(' ', '-')}.png",
                  image_grid(torch.cat([images[k] for k in ("sds", "sdi", "ddim")]).permute(0, 2, 3, 1), 3))

    write_png(args.out / "grid.png", image_grid(torch.cat(grid_rows), len(AZIMUTHS)))
    means = method_means(rows, ddim_share)
    summary = {"command": "python examples/eval_world.py " + shlex.join(sys.argv[1:]), "rows": rows, "image_analogue": analogue,
               "ddim_samples_recognised": ddim_share, "means": means}
    (args.out / "eval.json").write_text(json.dumps(summary, indent=2))
    lines = ["Per method, over the prompts:", "",
             "| method | prompts | mean PSNR | mean IoU | front/back right | recognised by majority | recognised share "
             "(DDIM samples') | alpha outside (faint) | area ratio |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {v['prompts']} | {v['best_instance_psnr']} | {v['silhouette_iou']} | {v['front_back_correct']} | "
              f"{v.get('recognised_by_majority', '-')} | {v.get('recognised', '-')} ({v.get('ddim_recognised', '-')}) | "
              f"{v['alpha_outside']:.1%} ({v['faint_alpha_outside']:.1%}) | {v['area_ratio']} |" for m, v in means.items()]
    lines += ["", "| prompt | method | best-instance PSNR | silhouette IoU | front/back correct | recognised | DDIM samples recognised "
             "| alpha outside (faint) | area ratio | loop s |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['prompt']} | {r['method']} | {r['best_instance_psnr']} | {r['silhouette_iou']} | "
              f"{r['front_back_correct']} | {r.get('recognised', '-')} | "
              f"{ddim_share.get(r['prompt'], {}).get('recognised', '-')} | "
              f"{r['alpha_outside']:.1%} ({r['faint_alpha_outside']:.1%}) | {r['area_ratio']} | {r['seconds']} |" for r in rows]
    if recogniser is not None:
        lines += ["", "alpha outside: share of the scene's rendered alpha outside the matched instance's silhouette "
                  "grown by 2 pixels (haze, floaters, and a scene larger than the instance); faint: of it, pixels "
                  "with alpha < 0.5. area ratio: the scene's silhouette area over the matched instance's (1 is the world's size)."]
        lines += ["", "recognised: share of the 8 views of the 30-degree ring that the world recogniser names as the "
                  "prompt's category and colour; DDIM samples: the same share for 8 DDIM-50 samples of the prompt "
                  "(CFG 7.5) with the view words of those 8 cameras."]
    if analogue:
        lines += ["", "2D analogue (error to the nearest world front view; lower is better):", "",
                  "| prompt | SDS | SDI | DDIM (same UNet calls as SDI) |", "|---|---|---|---|"]
        lines += [f"| {p} | {a['sds']['nearest_world_mse']} | {a['sdi']['nearest_world_mse']} | {a['ddim']['nearest_world_mse']} |"
                  for p, a in analogue.items()]
    (args.out / "eval.md").write_text(f"Made by: `{summary['command']}`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
