"""README's Guidance picture, cut from eval_world.py's grids: per prompt one row of the best-matching
world render, the prior's own DDIM sample, then the chosen methods, all at one of the grid's views.

    python examples/guidance_picture.py --eval DIR [DIR ...] --methods sds-annealed-t sdi-reference \
        --out docs/eval/world3d_v3/patterned.png [--patterned] [--view 1] [--sample 0]

Each DIR is an eval_world.py output, or a --merge of several (eval.json + grid.png: per prompt of
each run, the world instance's row, the DDIM samples' row, then one row per method in eval.json's
order; views are the 30-degree ring's azimuths 0, 45, 90, ... degrees). A prompt found more than
once takes each method, and its world and DDIM images, from the first place that has them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from eval_world import grid_blocks  # examples/ is on the path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, nargs="+", required=True)
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--prompts", nargs="*", default=None, help="these prompts in this order (default: all)")
    parser.add_argument("--patterned", action="store_true", help="only prompts with a pattern ('... with ...')")
    parser.add_argument("--view", type=int, default=1, help="the grid's view (0..7: azimuth 0, 45, ... degrees) for the world and the methods")
    parser.add_argument("--sample", type=int, default=0, help="which of the DDIM row's samples")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    found: dict[str, dict[str, np.ndarray]] = {}
    for folder in args.eval:
        for block, images in grid_blocks(folder):
            names = ["world", "ddim", *(r["method"] for r in block)]
            for name, image in zip(names, images):
                found.setdefault(block[0]["prompt"], {}).setdefault(name, image)
    prompts = args.prompts or [p for p in found if not args.patterned or " with " in p]
    size = next(iter(found.values()))["world"].shape[0]

    def cell(row: np.ndarray, view: int) -> np.ndarray:
        return row[:, view * size:(view + 1) * size]  # [H, W, 3]

    lines = []
    for prompt in prompts:
        missing = [m for m in args.methods if m not in found.get(prompt, {})]
        if missing:
            raise SystemExit(f"{prompt!r}: no rows for {missing} in {[str(f) for f in args.eval]}")
        row = found[prompt]
        lines.append(np.concatenate([cell(row["world"], args.view), cell(row["ddim"], args.sample),
                                     *[cell(row[m], args.view) for m in args.methods]], axis=1))
        print(f"{prompt}: world, DDIM sample {args.sample}, {', '.join(args.methods)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(lines)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
