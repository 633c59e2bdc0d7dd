"""SDS vs SDI against the world's ground truth, side by side (gsdi/eval/evaluate.py; docs/eval/eval.md).

    python examples/eval_world.py --prompts "a red castle" "a blue car" --preset default --device cuda --out docs/eval/run
    python examples/eval_world.py --score A.ply B.ply --prompts "a red castle" --out DIR

For each prompt runs the chosen methods with the same seed, prior and step budget (or, with
--score, reads the given scene files), renders each scene from the held-out views and scores it
with gsdi.eval.evaluate: fidelity_kid and sharpness (the world critic: they see blur, noise, haze
and missing parts; the 128-px critic that has also seen patterns averaged away scores a prior of
128 px or more, --critic), best-instance PSNR (rewards a blurry average: layout and colour only),
silhouette IoU, front/back, haze, size, and the recognised share. Each prompt also gets the prior's
own DDIM samples scored the same way (ddim_fidelity_kid, ddim_sharpness): the 2D reference.
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
from gsdi.config import GuidanceConfig, prior_fov_range
from gsdi.formats import read_any
from gsdi.media import image_grid, write_png
from gsdi.guidance import Rng, guidance_loss, timestep
from gsdi.guidance.ddim import sample_prior
from gsdi.priors import TextCond, load_prior
from gsdi.render import render
from gsdi.world import parse
from gsdi.eval.critic import load_critic
from gsdi.eval.patterns import pattern_contrast
from gsdi.eval.evaluate import AZIMUTHS, REFERENCE_INSTANCES, Yardstick, compare, eval_cameras, reference_objects, render_instances

METHODS = {  # name: guidance overrides
    "sds-random-t": {"guidance.method": "sds", "guidance.t_schedule": "random"},
    "sds-annealed-t": {"guidance.method": "sds", "guidance.t_schedule": "anneal"},
    "sdi": {"guidance.method": "sdi", "guidance.t_schedule": "anneal"},
    "sdi-k10": {"guidance.method": "sdi", "guidance.t_schedule": "anneal", "guidance.inversion_steps": 10},
    "sdi-paper": {"guidance.method": "sdi", "guidance.t_schedule": "anneal", "guidance.inversion_start": 0,
                  "guidance.inversion_cfg_scale": -7.5, "guidance.inversion_eta": 0.3},
    "ism": {"guidance.method": "ism", "guidance.t_schedule": "anneal"},
    # the default recipe until 2026-12-01, chosen with best-instance PSNR (docs/research-log.md)
    "old-default": {"guidance.method": "sds", "guidance.t_schedule": "anneal", "steps": 250, "densify.opacity_l1": 0.02},
}
DEFAULT_METHODS = ["sds-random-t", "sds-annealed-t", "sdi"]
PATTERN_CRITIC_MIN_SIZE = 128  # --critic auto: the pattern critic's size; a 64-px prior's views stay with the plain critic


def random_prompts(n: int, seed: int, patterned: bool = False) -> list[str]:
    """n distinct "a/an {colour} {category}" prompts drawn with `seed`; with `patterned`, "... with
    {colour} {pattern}" ones (the pattern's colour never the object's)."""
    from gsdi.world.language import describe
    from gsdi.world.objects import CATEGORIES, PALETTE
    from gsdi.world.shapes import PATTERNS

    g = torch.Generator().manual_seed(seed)
    if patterned:
        specs = [(c, k, p, q) for c in CATEGORIES for k in PALETTE for p in PATTERNS for q in PALETTE if q != k]
    else:
        specs = [(c, k) for c in CATEGORIES for k in PALETTE]
    return [describe(*specs[i][:2], None, *specs[i][2:]) for i in torch.randperm(len(specs), generator=g)[:n].tolist()]


def recognised(recogniser, views: torch.Tensor, spec) -> dict:
    """Share of views [V, H, W, 3] named as the prompt's category (and colour, when it has one)."""
    from gsdi.eval.recogniser import recognise

    names = recognise(recogniser, views.cpu())
    category = [c == spec.category for c in names["category"]]
    both = [c and (spec.colour is None or k == spec.colour) for c, k in zip(category, names["colour"])]
    return {"recognised": round(sum(both) / len(both), 3), "category_recognised": round(sum(category) / len(category), 3)}


def method_means(rows: list[dict], ddim: dict) -> dict:
    """Per method: the mean of each score over its prompts (with the DDIM reference's over the same
    prompts), front/back and majority-recognised counts."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        mean = lambda key, digits=3: round(sum(r[key] for r in mine) / len(mine), digits)  # noqa: E731
        ref = lambda key, digits: round(sum(ddim[r["prompt"]][key] for r in mine) / len(mine), digits)  # noqa: E731
        out[method] = {"prompts": len(mine), "fidelity_kid": mean("fidelity_kid", 5), "ddim_fidelity_kid": ref("ddim_fidelity_kid", 5),
                       "sharpness": mean("sharpness", 4), "ddim_sharpness": ref("ddim_sharpness", 4),
                       "best_instance_psnr": mean("best_instance_psnr", 2),
                       "silhouette_iou": mean("silhouette_iou"), "front_back_correct": f"{sum(r['front_back_correct'] for r in mine)}/{len(mine)}",
                       "alpha_outside": mean("alpha_outside", 4), "faint_alpha_outside": mean("faint_alpha_outside", 4),
                       "area_ratio": mean("area_ratio")}
        if all("recognised" in r for r in mine):
            out[method]["recognised"] = mean("recognised")
            out[method]["recognised_by_majority"] = f"{sum(r['recognised'] > 0.5 for r in mine)}/{len(mine)}"
            if all("recognised" in ddim[r["prompt"]] for r in mine):
                out[method]["ddim_recognised"] = ref("recognised", 3)
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
    out["ddim"] = prior.decode(sample_prior(prior, cond, z, n, 7.5))
    result = {}
    for name, image in out.items():
        err = ((image.permute(0, 2, 3, 1).cpu() - world_refs) ** 2).flatten(1).mean(1)
        result[name] = {"nearest_world_mse": round(float(err.min()), 5), "unet_calls": calls.get(name, n)}
    return result, {k: v.cpu() for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=["a red castle", "a blue car"])
    parser.add_argument("--score", nargs="+", type=Path, default=None, metavar="SCENE",
                        help="score these scene files (.ply, compressed .ply, .splat) for the one prompt of --prompts "
                             "instead of generating; each row's method is the file's name without its extension, or with "
                             "--methods the name given in the same place")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DIR",
                        help="write one table to --out from these eval_world output folders (runs split over processes)")
    parser.add_argument("--random-prompts", type=int, default=0, metavar="N",
                        help="instead of --prompts, N prompts drawn at random (category and colour; with --patterned a pattern too) with --prompt-seed: "
                             "prompts nobody chose, for held-out checks")
    parser.add_argument("--patterned", action="store_true",
                        help="with --random-prompts: patterned prompts (\"a blue car with yellow stripes\")")
    parser.add_argument("--prompt-seed", type=int, default=0)
    parser.add_argument("--no-recogniser", action="store_true", help="skip the recognised share (gsdi/eval/recogniser.py)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--instances", type=int, default=8, help="world instances for PSNR, IoU and front/back")
    parser.add_argument("--reference-instances", type=int, default=REFERENCE_INSTANCES,
                        help="world instances in each KID reference set (x 16 views)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-steps", type=int, default=0, help="steps of the 2D analogue (0: skip it)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"any of {', '.join(METHODS)}, or NAME='{{\"guidance.field\": value, ...}}' for a variant "
                             f"(default: {' '.join(DEFAULT_METHODS)}); with --merge, keep only these methods' rows")
    parser.add_argument("--device", default="cpu", help="where the generations, world renders and the prior run (auto, cpu, cuda)")
    parser.add_argument("--critic", choices=["auto", "plain", "patterns"], default="auto",
                        help="the yardstick's critic: plain (64 px, docs/eval/yardstick), patterns (128 px, has seen "
                             "patterns, docs/eval/yardstick_patterns); auto: patterns for a prior of 128 px or more")
    parser.add_argument("--runs", type=Path, default=None, help="where the generations go (default: a temporary folder)")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out, args.methods)
        return
    if args.methods is None:  # scored files are named after themselves, generations after the default methods
        args.methods = [p.stem for p in args.score] if args.score is not None else list(DEFAULT_METHODS)
    for i, text in enumerate(args.methods):  # NAME={...}: a named set of config overrides
        if "={" in text:
            name, fields = text.split("={", 1)
            METHODS[name] = json.loads("{" + fields)
            args.methods[i] = name
        elif text not in METHODS and args.score is None:  # with --score a name is only a label
            parser.error(f"unknown method {text!r}; choose from {', '.join(METHODS)} or give NAME={{...}}")
    if args.random_prompts:
        args.prompts = random_prompts(args.random_prompts, args.prompt_seed, args.patterned)
    if args.score is not None:
        if len(args.prompts) != 1:
            parser.error("--score takes exactly one prompt in --prompts (the one the scenes were made for)")
        missing = [str(p) for p in args.score if not p.is_file()]
        if missing:
            parser.error(f"no such scene file: {', '.join(missing)}")
        if len(args.methods) != len(args.score):
            parser.error(f"--score has {len(args.score)} scene files and --methods {len(args.methods)} names; give one name a file")
        args.image_steps = 0
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="gsdi-eval-"))

    from gsdi.device import resolve_device

    device = resolve_device(args.device)
    recogniser = None
    if not args.no_recogniser:
        from gsdi.eval.recogniser import load_recogniser

        recogniser = load_recogniser("cpu")
    prior = load_prior(args.prior, device)
    patterns = args.critic == "patterns" or (args.critic == "auto" and prior.image_size >= PATTERN_CRITIC_MIN_SIZE)
    yard = Yardstick(load_critic(device, patterns=patterns), prior.image_size, args.reference_instances, render_device=device)
    cams = eval_cameras(prior.image_size)
    ring = slice(len(AZIMUTHS), None)  # the 30-degree ring: the grid's and the recogniser's views
    rows, grid_rows, analogue, ddim = [], [], {}, {}
    for prompt in args.prompts:
        spec = parse(prompt)
        inst_rgb, inst_alpha = render_instances(reference_objects(spec, args.instances), cams, device)
        ddim[prompt], samples = yard.ddim(prior, prompt, spec, seed=args.seed, fov_range=prior_fov_range(args.prior))
        if recogniser is not None:
            ddim[prompt].update(recognised(recogniser, samples, spec))
        print(json.dumps({"prompt": prompt, **ddim[prompt]}), flush=True)
        scored = {}
        for i, name in enumerate(args.methods):
            if args.score is not None:
                scene, seconds = read_any(args.score[i]), None
            else:
                overrides = dict(METHODS[name])
                steps = overrides.pop("steps", args.steps)  # a method may set its own step count
                result = gsdi.generate(prompt, out=runs / f"{prompt.replace(' ', '-')}-{name}",
                                       preset=args.preset, steps=steps, seed=args.seed, prior=args.prior,
                                       device=args.device, force=True, progress=False, **overrides)
                scene, seconds = read_any(result.ply), round(result.seconds, 1)
            with torch.no_grad():  # gsdi's torch rasterizer (the same pixels everywhere), on the chosen device
                r = render({k: v.to(device) for k, v in scene.items()}, cams, (1.0, 1.0, 1.0), "torch")
            r.rgb, r.alpha = r.rgb.cpu(), r.alpha.cpu()
            scored[name] = {**yard.score(spec, r.rgb), "critic": "patterns" if patterns else "plain",
                            **compare(r.rgb, r.alpha, inst_rgb, inst_alpha)}
            if spec.pattern is not None and spec.colour is not None:  # against the same world instances
                scored[name]["pattern_contrast"] = round(pattern_contrast(r.rgb, r.alpha, spec, inst_rgb.flatten(0, 1), inst_alpha.flatten(0, 1)), 4)
            if recogniser is not None:
                scored[name].update(recognised(recogniser, r.rgb[ring], spec))
            scored[name]["seconds"] = seconds
            rows.append({"prompt": prompt, "method": name, **scored[name]})
            grid_rows.append(r.rgb[ring])
            print(json.dumps(rows[-1]), flush=True)
        # Above each prompt's rows: the best-matching world instance, then the DDIM reference samples.
        best = scored[args.methods[-1]]["best_instance"]
        grid_rows.insert(len(grid_rows) - len(args.methods), inst_rgb[best][ring])
        grid_rows.insert(len(grid_rows) - len(args.methods), samples[: len(AZIMUTHS)])
        if args.image_steps <= 0:
            continue
        refs = inst_rgb[:, AZIMUTHS.index(0.0)]  # the instances' front views, 5 degrees up
        analogue[prompt], images = image_analogue(prior, prompt, refs, args.image_steps, args.seed)
        print(json.dumps({"prompt": prompt, "image_analogue": analogue[prompt]}), flush=True)
        write_png(args.out / f"image_analogue-{prompt.replace(' ', '-')}.png",
                  image_grid(torch.cat([images[k] for k in ("sds", "sdi", "ddim")]).permute(0, 2, 3, 1), 3))

    command = "python examples/eval_world.py " + shlex.join(sys.argv[1:])
    write_results(args.out, [command], rows, ddim, analogue, image_grid(torch.cat(grid_rows), len(AZIMUTHS)))


def grid_blocks(folder: Path) -> list[tuple[list[dict], list]]:
    """One eval_world output (or a --merge of several) cut by prompt, in its grid's order: per prompt of
    each run, its rows and its grid's rows [world instance, DDIM samples, one per method], each an
    image [H, W*len(AZIMUTHS), 3]."""
    import itertools

    import numpy as np
    from PIL import Image

    rows = json.loads((folder / "eval.json").read_text())["rows"]
    grid = np.asarray(Image.open(folder / "grid.png").convert("RGB"))
    size = grid.shape[1] // len(AZIMUTHS)
    out, at = [], 0
    for _, block in itertools.groupby(rows, key=lambda r: r["prompt"]):  # one prompt of one run
        block = list(block)
        out.append((block, [grid[(at + i) * size:(at + i + 1) * size] for i in range(2 + len(block))]))
        at += 2 + len(block)
    assert at * size == grid.shape[0], f"{folder}: {at} rows of {size} px, its grid is {grid.shape[0]} px high"
    return out


def merge(folders: list[Path], out: Path, keep: list[str] | None = None) -> None:
    """One table from several eval_world outputs (runs split over processes): rows, DDIM references
    and grids in the order given; with `keep`, only those methods' rows."""
    import numpy as np

    missing = [str(f) for f in folders if not (f / "eval.json").is_file() or not (f / "grid.png").is_file()]
    if missing:
        raise SystemExit(f"error: no eval_world output (eval.json and grid.png) in {', '.join(missing)}")
    parts = [json.loads((f / "eval.json").read_text()) for f in folders]
    commands = [c for p in parts for c in (p["commands"] if "commands" in p else [p["command"]])]
    rows, grid = [], []
    for folder in folders:
        for block, images in grid_blocks(folder):
            kept = [i for i, r in enumerate(block) if keep is None or r["method"] in keep]
            if kept:
                rows += [block[i] for i in kept]
                grid += images[:2] + [images[2 + i] for i in kept]
    prompts = {r["prompt"] for r in rows}
    write_results(out, commands, rows, {k: v for p in parts for k, v in p["ddim"].items() if k in prompts},
                  {k: v for p in parts for k, v in p["image_analogue"].items()}, np.concatenate(grid))


def write_results(out: Path, commands: list[str], rows: list[dict], ddim: dict, analogue: dict, grid) -> None:
    """eval.json, eval.md and grid.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_png(out / "grid.png", grid)
    means = method_means(rows, ddim)
    summary = {"commands": commands, "rows": rows, "ddim": ddim, "image_analogue": analogue, "means": means}
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    lines = ["Per method, over the prompts (fidelity_kid: lower is better; sharpness: higher is better; "
             "in brackets the prior's own DDIM samples of the same prompts):", "",
             "| method | prompts | fidelity_kid (DDIM) | sharpness (DDIM) | mean PSNR | mean IoU | front/back right | "
             "recognised by majority | recognised share (DDIM) | alpha outside (faint) | area ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {v['prompts']} | {v['fidelity_kid']:.4f} ({v['ddim_fidelity_kid']:.4f}) | {v['sharpness']:.3f} "
              f"({v['ddim_sharpness']:.3f}) | {v['best_instance_psnr']} | {v['silhouette_iou']} | {v['front_back_correct']} | "
              f"{v.get('recognised_by_majority', '-')} | {v.get('recognised', '-')} ({v.get('ddim_recognised', '-')}) | "
              f"{v['alpha_outside']:.1%} ({v['faint_alpha_outside']:.1%}) | {v['area_ratio']} |" for m, v in means.items()]
    lines += ["", "| prompt | method | fidelity_kid (DDIM) | sharpness (DDIM) | best-instance PSNR | silhouette IoU | "
              "front/back correct | recognised (DDIM) | alpha outside (faint) | area ratio | loop s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['prompt']} | {r['method']} | {r['fidelity_kid']:.4f} ({ddim[r['prompt']]['ddim_fidelity_kid']:.4f}) | "
              f"{r['sharpness']:.3f} ({ddim[r['prompt']]['ddim_sharpness']:.3f}) | {r['best_instance_psnr']} | {r['silhouette_iou']} | "
              f"{r['front_back_correct']} | {r.get('recognised', '-')} ({ddim[r['prompt']].get('recognised', '-')}) | "
              f"{r['alpha_outside']:.1%} ({r['faint_alpha_outside']:.1%}) | {r['area_ratio']} | {r['seconds'] if r['seconds'] is not None else '-'} |"
              for r in rows]
    patterned = [r for r in rows if "pattern_contrast" in r]
    if patterned:
        lines += ["", "Pattern contrast of patterned prompts (gsdi/eval/patterns.py: 1 the world's, lower less; "
                  "compare within a prompt, docs/eval/pattern_measure):", "", "| prompt | method | pattern_contrast |", "|---|---|---|"]
        lines += [f"| {r['prompt']} | {r['method']} | {r['pattern_contrast']:.3f} |" for r in patterned]
    lines += ["", "What each column rewards: docs/eval/eval.md. grid.png: per prompt, the best-matching world instance, "
              "16 DDIM reference samples' first 8, then one row per method (the 30-degree ring of views)."]
    if analogue:
        lines += ["", "2D analogue (error to the nearest world front view; lower is better):", "",
                  "| prompt | SDS | SDI | DDIM (same UNet calls as SDI) |", "|---|---|---|---|"]
        lines += [f"| {p} | {a['sds']['nearest_world_mse']} | {a['sdi']['nearest_world_mse']} | {a['ddim']['nearest_world_mse']} |"
                  for p, a in analogue.items()]
    made = "\n".join(f"`{c}`" for c in commands)
    (out / "eval.md").write_text(f"Made by:\n{made}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))




if __name__ == "__main__":
    main()
