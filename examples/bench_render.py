"""Rasterizer speed: forward and forward+backward ms per view for gsdi.kernels (and gsplat on CUDA).

    python examples/bench_render.py --gaussians 20000 --size 128 --views 1

Prints one JSON line per (backend, configuration). Gaussians are a random object-sized cloud seen
from random training orbits, with scales typical of a generation in progress.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gsdi.cameras import sample_orbits


def scene(n: int, device: str, g: torch.Generator):
    means = torch.randn(n, 3, generator=g) * 0.25
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.02 + 0.005
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    return [x.to(device).requires_grad_() for x in (means, quats, scales, opacities, colors)]


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--size", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from gsdi.kernels import rasterization as ours

    backends = {"gsdi.kernels": ours}
    if args.device == "cuda":
        from gsplat import rasterization as theirs

        backends["gsplat"] = theirs
    g = torch.Generator().manual_seed(0)
    for n in args.gaussians:
        params = scene(n, args.device, g)
        for size in args.size:
            cams = sample_orbits(args.views, size, size, g)
            viewmats, Ks = cams.viewmats.to(args.device), cams.Ks.to(args.device)
            for name, raster in backends.items():
                def forward():
                    with torch.no_grad():
                        return raster(*params, viewmats, Ks, size, size)

                def forward_backward():
                    image, alpha, meta = raster(*params, viewmats, Ks, size, size)
                    image.sum().backward()

                print(json.dumps({
                    "bench": "render", "backend": name, "device": args.device,
                    "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                    "threads": torch.get_num_threads(), "gaussians": n, "size": size, "views": args.views,
                    "forward_ms": round(timed(forward, args.device, args.repeats), 2),
                    "forward_backward_ms": round(timed(forward_backward, args.device, args.repeats), 2),
                }), flush=True)


if __name__ == "__main__":
    main()
