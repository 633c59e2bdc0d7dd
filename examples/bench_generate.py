"""Whole-generation speed with a random-weight Stable Diffusion prior (no download needed).

    python examples/bench_generate.py --shape sd2.1-base --steps 50 --guidance sdi sds

Builds (once) a diffusers folder shaped like SD 2.1 base with random weights, then runs
`gsdi.generate` for each guidance and prints one JSON line each: ms per step, peak GPU memory,
final Gaussian count. Speed does not depend on the weights' values.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # random-weight models (tests/random_sd.py)

import argparse
import json
import tempfile
import time

import torch

import gsdi
from random_sd import build_random_model  # tests/random_sd.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="sd2.1-base", choices=["tiny", "sd2.1-base"])
    parser.add_argument("--model-dir", type=Path, default=None, help="where the random model is built/reused")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--guidance", nargs="+", default=["sdi", "sds"])
    parser.add_argument("--prior", default="random", help="random (the --shape model with random weights) or embedded")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="cap this process's GPU memory (torch.cuda.set_per_process_memory_fraction), e.g. 8")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.memory_cap_gb and device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb * 2**30 / total))
    model_dir = args.model_dir or Path(tempfile.gettempdir()) / f"gsdi-random-{args.shape}"
    if args.prior == "embedded":
        model_dir = Path("embedded")
    elif not (model_dir / "model_index.json").exists():
        start = time.perf_counter()
        build_random_model(model_dir, args.shape, device=device,
                           dtype=torch.float16 if device == "cuda" else torch.float32)
        print(json.dumps({"bench": "build_random_model", "shape": args.shape, "seconds": round(time.perf_counter() - start, 1)}))
    out_root = args.out or Path(tempfile.mkdtemp())
    for method in args.guidance:
        start = time.perf_counter()
        result = gsdi.generate("a red castle", out=out_root / method, prior=str(model_dir), steps=args.steps,
                               preset=args.preset, force=True, progress=False, cuda_graphs=not args.eager,
                               **{"guidance.method": method})
        print(json.dumps({
            "bench": "generate", "prior": args.prior, "shape": args.shape if args.prior == "random" else None,
            "memory_cap_gb": args.memory_cap_gb, "cuda_graphs": not args.eager, "guidance": method, "preset": args.preset, "steps": result.config.steps,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "ms_per_step": round(result.ms_per_step, 1), "loop_seconds": round(result.seconds, 1),
            "wall_seconds_with_loading": round(time.perf_counter() - start, 1),
            "peak_memory_mb": None if result.peak_memory_mb is None else round(result.peak_memory_mb),
            "gaussians": result.num_gaussians, "final_loss": result.history[-1]["loss"],
        }), flush=True)


if __name__ == "__main__":
    main()
