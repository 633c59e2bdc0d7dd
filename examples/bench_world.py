"""World renderer throughput: images per second for batches of random objects and training orbits.

    python examples/bench_world.py --batch 256 --size 64
    python examples/bench_world.py --device cuda --batch 768 --size 128 --max-rays 19 21 22 40   # rays a tracer call, side by side

Prints one JSON line per batch size. This bounds how fast the embedded prior can be trained on
data generated on the fly.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gsdi.cameras import sample_orbits
import gsdi.world.render as render
from gsdi.world import CATEGORIES, pad_objects, render_objects, sample_object


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-rays", type=int, nargs="+", default=[None],
                        help="log2 of the rays a tracer call (gsdi/world/render.py MAX_RAYS); default: the device's")
    args = parser.parse_args()
    default = dict(render.MAX_RAYS)
    for exponent in args.max_rays:
        render.MAX_RAYS = default if exponent is None else default | {args.device: 1 << exponent}
        bench(args, exponent)


def bench(args: argparse.Namespace, max_rays: int | None) -> None:
    categories = list(CATEGORIES)
    g = torch.Generator().manual_seed(0)
    for batch in args.batch:
        start = time.perf_counter()
        objects = pad_objects([sample_object(categories[i % len(categories)], None, i)[0] for i in range(batch)])
        build = time.perf_counter() - start
        cams = sample_orbits(batch, args.size, args.size, g)
        objects = objects.to(args.device)
        render_objects(objects, cams)  # warm-up
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        render_objects(objects, cams)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(json.dumps({"bench": "world_render", "device": args.device,
                          "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                          "batch": batch, "size": args.size, "build_objects_s": round(build, 3),
                          "max_rays_log2": max_rays, "render_s": round(seconds, 3), "images_per_s": round(batch / seconds, 1),
                          "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if args.device == "cuda" else None}), flush=True)


if __name__ == "__main__":
    main()
