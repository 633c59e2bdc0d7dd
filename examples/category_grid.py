"""How close 3D comes to 2D: the ten categories, each as the world, the prior and gsdi see it.

    python examples/category_grid.py --out docs/categories --device cuda

Runs `gsdi.generate` (default preset and settings unless --preset/--set say otherwise) for one prompt
per category and writes grid.png: a row per prompt (in the order printed) of six pictures at 128 px:
a world render of the prompt (its first reference instance, from the front, 15 degrees up), a DDIM
sample of the embedded prior ("<prompt>, front view", 64 px shown at 128, the grain-free reference of
gsdi.eval.evaluate), then the generation from the front, right side, back and left side (15 degrees
up, the world's scale), plus grid.json with the prompts, the command and each run's loop time.
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
from gsdi.cameras import eval_orbits
from gsdi.device import resolve_device
from gsdi.formats import read_ply
from gsdi.media import image_grid, write_png
from gsdi.priors import load_prior
from gsdi.media import render_orbit
from gsdi.world import parse
from gsdi.eval.evaluate import ddim_reference, reference_objects, render_instances

PROMPTS = ["a red castle", "a blue house", "a green tree", "a white snowman", "a red mushroom", "a blue car",
           "an orange rocket", "a yellow duck", "a purple lamp", "a brown table"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="pixels of each view")
    parser.add_argument("--set", dest="settings", nargs="*", default=[], help="config values key=value, as gsdi generate --set")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from gsdi.cli import parse_settings

    overrides = parse_settings(args.settings)
    runs = Path(tempfile.mkdtemp(prefix="gsdi-grid-"))
    n = 4  # front, side, back, other side
    device = resolve_device(args.device)
    prior = load_prior("embedded", device)
    front = eval_orbits(n, args.size, args.size, distance=2.0, fov=55.0, elevation=15.0).take(slice(0, 1))
    views, seconds = [], {}
    for prompt in args.prompts:
        world = render_instances(reference_objects(parse(prompt), 1), front, device)[0][0]  # [1, S, S, 3]
        sample = ddim_reference(prior, prompt, ["front"], args.seed).cpu()  # [1, 64, 64, 3]
        sample = torch.nn.functional.interpolate(sample.permute(0, 3, 1, 2), size=args.size, mode="nearest").permute(0, 2, 3, 1)
        result = gsdi.generate(prompt, out=runs / prompt.replace(" ", "-"), preset=args.preset, seed=args.seed,
                               device=args.device, force=True, progress=False, turntable_frames=0, **overrides)
        scene = render_orbit(read_ply(result.ply), n, args.size, distance=2.0, fov=55.0, backend="torch")  # the world's scale
        views.append(torch.cat([world, sample, scene]))
        seconds[prompt] = round(result.seconds, 1)
        print(json.dumps({"prompt": prompt, "loop_seconds": seconds[prompt], "method": result.config.guidance.method}), flush=True)
    write_png(args.out / "grid.png", image_grid(torch.cat(views), n + 2))
    (args.out / "grid.json").write_text(json.dumps({"command": "python examples/category_grid.py " + shlex.join(sys.argv[1:]),
                                                    "rows": args.prompts, "loop_seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
