"""Batch throughput: assets per hour with 1 vs N processes (GPUs) under torchrun, same prompt list.

    python examples/bench_batch.py --gpus 1 2 --prompts 8 --preset preview --prior embedded

For each process count N it runs `torchrun --standalone --nproc-per-node N gsdi batch LIST --out DIR`
into a fresh folder, times the whole command (process start, prior loading and all generations)
and prints one JSON line: assets/hour and the scaling efficiency against N = the first count.
`--prior random` builds a Stable-Diffusion-2.1-base-shaped prior with random weights first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # random-weight models (tests/random_sd.py)

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

from gsdi.world import CATEGORIES, PALETTE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--prior", default="embedded", help="embedded, or random (SD-2.1-base shape, random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="gsdi-bench-batch-"))
    prior = args.prior
    if prior == "random":
        import torch

        from random_sd import build_random_model  # tests/random_sd.py

        prior = str(work / "sd-random")
        if not (Path(prior) / "model_index.json").exists():
            cuda = torch.cuda.is_available()
            build_random_model(prior, "sd2.1-base", device="cuda" if cuda else "cpu",
                               dtype=torch.float16 if cuda else torch.float32)
    colours, categories = list(PALETTE), list(CATEGORIES)
    lines = [f"a {colours[i % len(colours)]} {categories[(3 * i) % len(categories)]}" for i in range(args.prompts)]
    prompt_file = work / "prompts.txt"
    prompt_file.write_text("\n".join(lines) + "\n")
    gsdi_cmd = shutil.which("gsdi") or sys.exit("gsdi is not on PATH; pip install -e . first")
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    base_rate = None
    for n in args.gpus:
        out = work / f"out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", gsdi_cmd,
                   "batch", str(prompt_file), "--out", str(out), "--preset", args.preset, "--prior", prior,
                   "--device", args.device, "--quiet"]
        if args.steps:
            command += ["--steps", str(args.steps)]
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        index = json.loads((out / "index.json").read_text()) if (out / "index.json").exists() else {"done": 0}
        rate = 3600 * index["done"] / seconds
        base_rate = base_rate or rate / n
        row = {"bench": "batch", "processes": n, "prior": args.prior, "preset": args.preset, "steps": args.steps,
               "prompts": args.prompts, "done": index["done"], "seconds": round(seconds, 1),
               "assets_per_hour": round(rate, 1), "efficiency": round(rate / (n * base_rate), 3),
               "device": gpu_name(), "returncode": proc.returncode}
        print(json.dumps(row), flush=True)
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)


def gpu_name() -> str:
    import torch

    return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
