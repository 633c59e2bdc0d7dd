"""What a larger world-prior UNet would cost a step: one CFG pair of the shipped UNet's configuration
and of three larger ones, with random weights, on the world prior's 4x32x32 latents.

    python examples/bench_world_unet.py [--threads 2] [--device cpu]

Prints one JSON line: per configuration its parameters, its size in fp16 and the median time of a
CFG pair (batch 2) over --repeats runs, all measured side by side in one process.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from train_world_prior import FULL_SIZE_ATTENTION  # examples/train_world_prior.py --attention-full-size

VARIANTS = {  # changes to the shipped unet/config.json
    "shipped": {},
    "attention_at_32": FULL_SIZE_ATTENTION,
    "widths_96_192_192": {"block_out_channels": [96, 192, 192]},
    "two_layers_a_block": {"layers_per_block": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", default="gsdi/priors/world/unet", help="the configuration to start from")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(args.threads)
    base = UNet2DConditionModel.load_config(args.unet)
    size = base["sample_size"]
    x = torch.randn(2, base["in_channels"], size, size, device=args.device)
    text = torch.randn(2, 16, base["cross_attention_dim"], device=args.device)
    t = torch.tensor([500, 500], device=args.device)
    results = {}
    for name, change in VARIANTS.items():
        unet = UNet2DConditionModel.from_config({**base, **change}).to(args.device).eval()
        parameters = sum(p.numel() for p in unet.parameters())
        times = []
        with torch.no_grad():
            for i in range(args.repeats + 3):  # 3 warm-up runs
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                unet(x, t, encoder_hidden_states=text)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if i >= 3:
                    times.append(time.perf_counter() - start)
        results[name] = {"parameters": parameters, "fp16_mb": round(parameters * 2 / 2**20, 1),
                         "cfg_pair_ms": round(1000 * sorted(times)[len(times) // 2], 1)}
    print(json.dumps({"bench": "world_unet", "device": args.device, "threads": args.threads, "latents": [base["in_channels"], size, size], **results}))


if __name__ == "__main__":
    main()
