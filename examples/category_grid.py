"""The ten categories of the embedded prior's world, one `gsdi generate` each, in one picture.

    python examples/category_grid.py --out docs/categories --device cuda

Runs `gsdi.generate` (default preset and settings unless --preset/--set say otherwise) for one prompt
per category and writes grid.png: a row per prompt (in the order printed), four views at 128 px
(front, right side, back, left side, 15 degrees up), plus grid.json with the prompts, the command
and each run's loop time.
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
from gsdi.export import image_grid, read_ply, write_png
from gsdi.turntable import render_orbit

PROMPTS = ["a red castle", "a blue house", "a green tree", "a white snowman", "a red mushroom", "a blue car",
           "an orange rocket", "a yellow duck", "a purple lamp", "a brown table"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--preset", default="default")
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
    views, seconds = [], {}
    for prompt in args.prompts:
        result = gsdi.generate(prompt, out=runs / prompt.replace(" ", "-"), preset=args.preset, seed=args.seed,
                               device=args.device, force=True, progress=False, turntable_frames=0, **overrides)
        views.append(render_orbit(read_ply(result.ply), n, args.size, distance=2.0, fov=55.0, backend="torch"))  # 15 degrees up, fov 55: the world's scale
        seconds[prompt] = round(result.seconds, 1)
        print(json.dumps({"prompt": prompt, "loop_seconds": seconds[prompt], "method": result.config.guidance.method}), flush=True)
    write_png(args.out / "grid.png", image_grid(torch.cat(views), n))
    (args.out / "grid.json").write_text(json.dumps({"command": "python examples/category_grid.py " + shlex.join(sys.argv[1:]),
                                                    "rows": args.prompts, "loop_seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
