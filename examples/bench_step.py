"""Milliseconds per optimisation step against the hardware floor, eager vs CUDA graphs (GPU).

    python examples/bench_step.py --ks 1 3 5 10 --modes eager graphs --markdown docs/bench_step.md

Builds a Stable-Diffusion-2.1-base-shaped prior with random weights (speed does not depend on
their values), a scene of --gaussians Gaussians rendered at --size^2, and times gsdi's real step
(`gsdi.step.Generation.advance`, densification off so the count stays fixed) for SDS and for
SDI with each inversion grid size k, over one whole annealed t schedule of --steps steps.

The floor, timed alone in the same run: (UNet calls per step, counted) x one CFG-batched UNet call
replayed from a CUDA graph + VAE encode forward/backward + render forward/backward. One JSON line
per configuration; with --markdown also a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # random-weight models (tests/random_sd.py)

import argparse
import gc
import json
import tempfile
import time

import torch

from gsdi.config import make_config
from gsdi.step import Generation
from gsdi.priors import load_prior, text_cond
from gsdi.priors.graphs import UNetRunner
from random_sd import build_random_model  # tests/random_sd.py
from gsdi.render import render


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_ms(fn, repeats: int) -> float:
    """Mean milliseconds of fn() on the GPU (after one untimed call)."""
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return 1000 * (time.perf_counter() - start) / repeats


def config_for(args, method: str, k: int, graphs: bool, model_dir: Path):
    return make_config(
        "a castle", prior=str(model_dir), steps=args.steps, log_every=args.steps, cuda_graphs=graphs,
        **{"guidance.method": method, "guidance.inversion_steps": k, "scene.num_points": args.gaussians,
           "densify.enabled": False, "densify.max_gaussians": args.gaussians, "render.max_resolution": args.size,
           "camera.views_per_step": args.views, "guidance.t_schedule": "anneal", "guidance.perp_neg": args.perp_neg})


def floor_parts(gen: Generation, repeats: int) -> dict[str, float]:
    """ms of one graphed CFG UNet call (batch 2B, or 4B with Perp-Neg's two negatives), VAE encode
    fwd+bwd and render fwd+bwd, each alone."""
    prior, B, S = gen.prior, gen.config.camera.views_per_step, gen.prior.image_size
    rows = 4 if gen.config.guidance.perp_neg else 2
    runner = UNetRunner(prior.unet, graphs=True)
    text = text_cond(prior, gen.config.prompt, "", ["front"] * B, B)
    latents = prior.encode(torch.rand(B, 3, S, S, device=gen.device))
    x = latents.repeat(rows, 1, 1, 1).to(prior.dtype)
    timesteps = torch.full((rows * B,), 500, device=gen.device, dtype=torch.long)
    hidden = torch.cat([text.uncond, text.cond] * (rows // 2)).to(prior.dtype)
    unet_ms = cuda_ms(lambda: runner(x, timesteps, hidden), repeats)

    images = torch.rand(B, 3, S, S, device=gen.device, requires_grad=True)
    vae_ms = cuda_ms(lambda: prior.encode(images).sum().backward(), repeats)

    from gsdi.cameras import sample_orbits

    cams = sample_orbits(B, gen.size, gen.size, torch.Generator().manual_seed(0))
    render_ms = cuda_ms(lambda: render(gen.params, cams, (1.0, 1.0, 1.0), gen.backend).rgb.sum().backward(), repeats)
    return {"unet_graphed_ms": unet_ms, "vae_fwd_bwd_ms": vae_ms, "render_fwd_bwd_ms": render_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="sd2.1-base", choices=["tiny", "sd2.1-base"])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--gaussians", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--views", type=int, default=1, help="views per step (batched through UNet and rasteriser)")
    parser.add_argument("--perp-neg", action="store_true", help="with Perp-Neg (the UNet batch doubles; the floor's UNet call too)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--modes", nargs="+", default=["eager", "graphs"], choices=["eager", "graphs"])
    parser.add_argument("--steps", type=int, default=40, help="timed steps: one whole annealed t schedule")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20, help="repeats of each floor part")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()  # the CUDA path is what this measures; CPU only smoke-tests the script
    device = torch.device("cuda" if cuda else "cpu")
    model_dir = args.model_dir or Path(tempfile.gettempdir()) / f"gsdi-random-{args.shape}"
    if not (model_dir / "model_index.json").exists():
        build_random_model(model_dir, args.shape, device=device.type, dtype=torch.float16 if cuda else torch.float32)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    rows, floors = [], {}
    for mode in args.modes:  # one prior in memory at a time, so peak VRAM is one run's
        prior = load_prior(str(model_dir), device, cuda_graphs=mode == "graphs")
        for method, k in [("sds", 0), *(("sdi", k) for k in args.ks)]:
            config = config_for(args, method, max(k, 1), mode == "graphs", model_dir)
            warm = Generation(config, prior=prior)
            for _ in range(args.warmup):
                warm.advance()
            if "unet_graphed_ms" not in floors:
                floors = floor_parts(warm, args.repeats)
            del warm
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            gen = Generation(config, prior=prior)
            calls_before = prior.runner.calls
            sync()
            start = time.perf_counter()
            while gen.step < args.steps:
                gen.advance()
            sync()
            step_ms = 1000 * (time.perf_counter() - start) / args.steps
            calls = (prior.runner.calls - calls_before) / args.steps
            floor = calls * floors["unet_graphed_ms"] + floors["vae_fwd_bwd_ms"] + floors["render_fwd_bwd_ms"]
            row = {
                "bench": "step", "device": device_name, "shape": args.shape, "gaussians": args.gaussians,
                "size": args.size, "views": args.views, "perp_neg": args.perp_neg, "method": method, "k": k or None, "mode": mode,
                "ms_per_step": round(step_ms, 1), "unet_calls_per_step": round(calls, 2),
                "floor_ms": round(floor, 1), "ratio": round(step_ms / floor, 3),
                "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
                **{key: round(value, 2) for key, value in floors.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            del gen
        del prior
        gc.collect()  # the prior's embedding cache holds a bound method: a cycle only gc frees
        if cuda:
            torch.cuda.empty_cache()
    rows.sort(key=lambda r: (r["method"] != "sds", r["k"] or 0, r["mode"]))
    if args.markdown:
        write_markdown(args, rows, device_name)


def write_markdown(args, rows: list[dict], device_name: str) -> None:
    floor = rows[0]
    lines = [
        f"# Step time vs floor ({device_name}, {args.shape} shape, random weights, "
        f"{args.gaussians} Gaussians, {args.size}^2, {args.views} view(s) per step{', Perp-Neg' if args.perp_neg else ''})",
        "",
        f"Command: `python examples/bench_step.py --ks {' '.join(map(str, args.ks))} --modes {' '.join(args.modes)} "
        f"--steps {args.steps} --gaussians {args.gaussians} --size {args.size} --views {args.views}"
        f"{' --perp-neg' if args.perp_neg else ''}`",
        "",
        f"Floor parts, each timed alone: one CFG-batched UNet call from a CUDA graph {floor['unet_graphed_ms']} ms, "
        f"VAE encode fwd+bwd {floor['vae_fwd_bwd_ms']} ms, render fwd+bwd {floor['render_fwd_bwd_ms']} ms. "
        "floor = UNet calls per step x UNet + VAE + render.",
        "",
        "| method | k | mode | ms/step | UNet calls/step | floor ms | step/floor | peak VRAM MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['k'] or '-'} | {r['mode']} | {r['ms_per_step']} | {r['unet_calls_per_step']} "
                     f"| {r['floor_ms']} | {r['ratio']} | {r['peak_vram_mb']} |")
    lines += ["", "JSON lines:", "", "```", *(json.dumps(r) for r in rows), "```", ""]
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
