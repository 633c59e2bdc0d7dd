"""gsdi from Python: generate a scene, look at what came out, and read it back.

    python examples/python_api.py "a blue car" --out outputs/api-car --preset preview

The same settings as `gsdi generate` (README, What to expect): keyword arguments are the config's keys, dotted
ones with `__` (guidance__method="sds") or given as a dict.
"""

from __future__ import annotations

import argparse

import gsdi
from gsdi.formats import read_ply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", nargs="?", default="a red castle")
    parser.add_argument("--out", default="outputs/api")
    parser.add_argument("--preset", default="preview", help="auto, default, short, refined, preview, long or stable-diffusion")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = gsdi.generate(args.prompt, out=args.out, preset=args.preset, seed=args.seed, force=True)
    print(f"{result.num_gaussians} Gaussians in {result.seconds:.0f} s ({result.ms_per_step:.0f} ms a step)")
    print(f"scene {result.ply}, preview {result.preview}")
    scene = read_ply(result.ply)  # means [N, 3], scales [N, 3] (log), quats [N, 4], opacities [N] (logit), sh0, shN
    print({name: tuple(value.shape) for name, value in scene.items()})
    print("the settings that ran:", result.config.guidance.method, result.config.steps, "steps")


if __name__ == "__main__":
    main()
