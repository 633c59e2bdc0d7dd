"""Validate the quality yardstick on world renders before any generation is scored with it.

    python examples/validate_yardstick.py --device cuda --out docs/eval/yardstick

For one prompt per category, held-out instances of the prompt (seeds the reference and the critic's
training never used) are rendered from the eval views, then degraded: Gaussian blur, additive noise,
speckle (random opaque dots), haze (a blend towards white), the category's part removed
(gsdi.world.objects.PARTS). Each set of 16 views gets `fidelity_kid` (against the prompt's
reference instances) and `sharpness` from gsdi.eval.evaluate.Yardstick. The table says whether each
degradation makes both strictly worse, monotonically in its strength. The prior's DDIM samples of the
same prompts are scored on the same scale: the reference (x0 prediction where the schedule's noise is
3x the grain) and plain DDIM to the clean image (with the training grain). Writes validation.json,
validation.md and examples.png to --out.

With --patterns the critic is the 128-px one that has seen patterns (load_critic(patterns=True)),
the prompts are patterned, the views 128 px, and three conditions are added: the pattern averaged
into its mean colour, its phase scrambled between views (each view from one of two copies of the
instance whose patterns are shifted) and the plain object in its own colour.

    python examples/validate_yardstick.py --patterns --device cuda --no-ddim --out docs/eval/yardstick_patterns
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from gsdi.config import prior_fov_range
from gsdi.media import image_grid, write_png
from gsdi.eval import degrade
from gsdi.world import parse
from gsdi.eval.critic import load_critic
from gsdi.eval.evaluate import DENOISE_RATIO, Yardstick, eval_cameras, pattern_conditions, render_instances, reference_objects
from gsdi.world.objects import PATTERN_SHARE, without_part

PROMPTS = ["a red castle", "a blue house", "a green tree", "a white snowman", "a red mushroom", "a blue car",
           "an orange rocket", "a yellow duck", "a purple lamp", "a brown table"]
HELD_OUT_SEED = 50_000  # held-out instances: seeds 50000, 50001, ... (the reference uses 1000 + m)
STRENGTHS = {"blur": [0.5, 1.0, 2.0], "noise": [0.02, 0.05, 0.1], "speckle": [0.005, 0.01, 0.02], "haze": [0.1, 0.2, 0.4]}
PATTERN_PROMPTS = ["a red castle with white stripes", "a purple house with orange dots", "a green tree with red dots",
                   "a white snowman with red checks", "a red mushroom with white dots", "a blue car with yellow stripes",
                   "an orange rocket with blue stripes", "a yellow duck with green checks", "a purple lamp with yellow stripes",
                   "a yellow table with blue checks"]
EXTRA_PARTS = {"a blue house": ["door", "chimney"], "a red castle": ["gate"], "a blue car": ["cabin"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=None, help="default: one per category (patterned with --patterns)")
    parser.add_argument("--patterns", action="store_true", help="the 128-px critic that has seen patterns, on patterned prompts")
    parser.add_argument("--held-out", type=int, default=6, help="held-out instances per prompt (16 views each)")
    parser.add_argument("--device", default="cpu", help="where world renders and the prior run")
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--no-ddim", action="store_true", help="skip the DDIM rows (no prior needed)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    args.prompts = args.prompts or (PATTERN_PROMPTS if args.patterns else PROMPTS)
    critic = load_critic(device, patterns=args.patterns)
    yard = Yardstick(critic, critic.size, render_device=device)
    cams = eval_cameras(yard.size)
    prior = None
    if not args.no_ddim:
        from gsdi.priors import load_prior

        prior = load_prior(args.prior, device)
    rows, pictures = [], []
    g = torch.Generator().manual_seed(3)
    for prompt in args.prompts:
        spec = parse(prompt)
        seeds = [HELD_OUT_SEED + m for m in range(args.held_out)]
        held = reference_objects(spec, args.held_out, HELD_OUT_SEED)
        clean, _ = render_instances(held, cams, device)
        conditions = {("clean", 0.0): clean}
        for kind, strengths in STRENGTHS.items():
            for s in strengths:
                flat = clean.flatten(0, 1).permute(0, 3, 1, 2)
                conditions[(kind, s)] = degrade.apply(kind, flat, s, g).permute(0, 2, 3, 1).reshape(clean.shape)
        for part in [None, *EXTRA_PARTS.get(prompt, [])]:
            parted = [without_part(spec.category, spec.colour, s, part, spec.pattern, spec.pattern_colour) for s in seeds]
            conditions[(f"part removed: {part or 'main'}", 0.0)] = render_instances(parted, cams, device)[0]
        if spec.pattern is not None:
            conditions |= {k: rgb for k, (rgb, _) in pattern_conditions(spec, held, HELD_OUT_SEED, cams, device, g).items()}
        for (kind, s), views in conditions.items():
            scores = [yard.score(spec, views[m]) for m in range(args.held_out)]
            rows.append({"prompt": prompt, "condition": kind, "strength": s,
                         "fidelity_kid": round(sum(r["fidelity_kid"] for r in scores) / len(scores), 5),
                         "sharpness": round(sum(r["sharpness"] for r in scores) / len(scores), 4)})
            print(json.dumps(rows[-1]), flush=True)
        shown = [("clean", 0.0), ("blur", 1.0), ("noise", 0.05), ("speckle", 0.01), ("haze", 0.2), ("part removed: main", 0.0)]
        if spec.pattern is not None:
            shown = [("clean", 0.0), ("blur", 0.5), ("blur", 1.0), ("blur", 2.0), ("pattern averaged into its mean colour", PATTERN_SHARE),
                     ("phase scrambled between views", 0.0), ("plain, the object's own colour", 0.0), ("part removed: main", 0.0)]
        pictures.append(torch.stack([conditions[k][0, 8] for k in shown]))
        if prior is not None:
            fov = prior_fov_range(args.prior)  # the prior's samples are framed as its training views
            ddim = {name: yard.ddim(prior, prompt, spec, seed=0, denoise_ratio=ratio, fov_range=fov)
                    for name, ratio in (("DDIM-50 reference (x0 at noise ratio 0.3)", DENOISE_RATIO),
                                        ("DDIM-50 to the clean image (with grain)", None))}
            orbits = yard.ddim_cameras(seed=0, fov_range=fov)
            world, _ = render_instances(reference_objects(spec, 1, HELD_OUT_SEED), orbits, device)
            grained = degrade.noise(world[0].permute(0, 3, 1, 2), 0.05, g).permute(0, 2, 3, 1)
            ddim["world renders + the prior's grain (noise 0.05)"] = (
                {f"ddim_{k}": v for k, v in yard.score(spec, grained, orbits, key=yard.orbits_key(0, 16, fov)).items()}, grained)
            for name, (scored, _) in ddim.items():
                rows.append({"prompt": prompt, "condition": name, "strength": 0.0,
                             "fidelity_kid": scored["ddim_fidelity_kid"], "sharpness": scored["ddim_sharpness"]})
                print(json.dumps(rows[-1]), flush=True)
            pictures[-1] = torch.cat([pictures[-1], *(samples[:1] for _, samples in ddim.values())])
    write_png(args.out / "examples.png", image_grid(torch.cat(pictures), pictures[0].shape[0]))

    # Means over prompts per condition, and the monotonicity verdict per degradation.
    conditions = list(dict.fromkeys((r["condition"], r["strength"]) for r in rows))
    means = {}
    for c in conditions:
        mine = [r for r in rows if (r["condition"], r["strength"]) == c]
        means[c] = {"fidelity_kid": round(sum(r["fidelity_kid"] for r in mine) / len(mine), 5),
                    "sharpness": round(sum(r["sharpness"] for r in mine) / len(mine), 4), "prompts": len(mine)}
    verdicts = {}
    for kind, strengths in STRENGTHS.items():
        chain = [means[("clean", 0.0)]] + [means[(kind, s)] for s in strengths]
        verdicts[kind] = {"fidelity": all(a["fidelity_kid"] < b["fidelity_kid"] for a, b in zip(chain, chain[1:])),
                          "sharpness": all(a["sharpness"] > b["sharpness"] for a, b in zip(chain, chain[1:]))}
    per_prompt_parts = [r for r in rows if r["condition"].startswith("part removed")]
    clean_of = {r["prompt"]: r for r in rows if r["condition"] == "clean"}
    verdicts["part removed"] = {
        "fidelity": all(r["fidelity_kid"] > clean_of[r["prompt"]]["fidelity_kid"] for r in per_prompt_parts if r["condition"].endswith("main")),
        "sharpness": all(r["sharpness"] < clean_of[r["prompt"]]["sharpness"] for r in per_prompt_parts if r["condition"].endswith("main"))}
    flat = [r for r in rows if r["condition"] == "pattern averaged into its mean colour"]
    if flat:  # the written check for the pattern critic: averaging a pattern away is worse than the clean render, per prompt
        verdicts["pattern averaged"] = {"fidelity": all(r["fidelity_kid"] > clean_of[r["prompt"]]["fidelity_kid"] for r in flat),
                                        "sharpness": all(r["sharpness"] < clean_of[r["prompt"]]["sharpness"] for r in flat)}
    command = "python examples/validate_yardstick.py " + shlex.join(sys.argv[1:])
    (args.out / "validation.json").write_text(json.dumps(
        {"command": command, "rows": rows, "means": [{"condition": c, "strength": s, **v} for (c, s), v in means.items()],
         "monotone": verdicts}, indent=2) + "\n")
    yes = lambda b: "yes" if b else "**no**"  # noqa: E731
    lines = [f"Made by: `{command}`", "",
             f"Held-out world instances ({args.held_out} per prompt, 16 eval views each) of {len(args.prompts)} prompts, "
             "degraded; the mean over prompts. fidelity_kid: lower is better; sharpness: higher is better.", "",
             "| condition | strength | fidelity_kid | sharpness |", "|---|---|---|---|"]
    lines += [f"| {c} | {s:g} | {v['fidelity_kid']:.5f} | {v['sharpness']:.4f} |" for (c, s), v in means.items()]
    lines += ["", "Strictly worse at every step of strength (clean first), in the means; part removed (and pattern averaged): worse than clean on every prompt:", "",
              "| degradation | fidelity_kid | sharpness |", "|---|---|---|"]
    lines += [f"| {k} | {yes(v['fidelity'])} | {yes(v['sharpness'])} |" for k, v in verdicts.items()]
    lines += ["", "Per prompt, clean against its part removed:", "", "| prompt | part | fidelity_kid clean -> removed | sharpness clean -> removed |",
              "|---|---|---|---|"]
    lines += [f"| {r['prompt']} | {r['condition'].split(': ')[1]} | {clean_of[r['prompt']]['fidelity_kid']:.5f} -> {r['fidelity_kid']:.5f} | "
              f"{clean_of[r['prompt']]['sharpness']:.4f} -> {r['sharpness']:.4f} |" for r in per_prompt_parts]
    (args.out / "validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
