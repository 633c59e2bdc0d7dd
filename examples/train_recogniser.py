"""Train the world recogniser (gsdi/world/recogniser.py) on world renders and measure it on held-out ones.

    python examples/train_recogniser.py --device cuda --out gsdi/world

Renders a labelled pool (random objects of every category and colour from random training orbits,
64x64) and a held-out pool from other seeds, trains the CNN with the `degrade` augmentation, and
writes recogniser.safetensors (fp16) and recogniser.json (accuracy on the held-out pool, clean and
degraded; the command; the time) to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.world import render_pool
from gsdi.world.recogniser import Recogniser, degrade


def accuracy(model: Recogniser, pool: dict, generator: torch.Generator | None, batch: int = 1024) -> dict[str, float]:
    """Held-out accuracy per head (and all three right); degraded with `generator`, clean without."""
    hits = {"category": 0, "colour": 0, "side": 0, "category_and_colour": 0}
    n = pool["images"].shape[0]
    model.eval()
    with torch.no_grad():
        for start in range(0, n, batch):
            x = pool["images"][start:start + batch].float() / 255
            if generator is not None:
                x = degrade(x, generator)
            out = model(x)
            right = {k: out[k].argmax(1) == pool[label][start:start + batch]
                     for k, label in (("category", "category"), ("colour", "colour"), ("side", "view"))}
            for k, r in right.items():
                hits[k] += int(r.sum())
            hits["category_and_colour"] += int((right["category"] & right["colour"]).sum())
    model.train()
    return {k: round(v / n, 4) for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=24_000, help="training renders")
    parser.add_argument("--held-out", type=int, default=4_000, help="held-out renders (other seeds)")
    parser.add_argument("--steps", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    begin = time.time()
    train = render_pool(args.train, seed=11, size=64, device=str(device))
    held = render_pool(args.held_out, seed=12, size=64, device=str(device))
    render_s = time.time() - begin
    print(json.dumps({"pool": args.train, "held_out": args.held_out, "render_s": round(render_s, 1)}), flush=True)

    model = Recogniser(args.width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(1)
    begin = time.time()
    for step in range(args.steps):
        idx = torch.randint(args.train, (args.batch,), generator=g).to(device)
        x = degrade(train["images"][idx].float() / 255, g)
        out = model(x)
        loss = (F.cross_entropy(out["category"], train["category"][idx]) + F.cross_entropy(out["colour"], train["colour"][idx])
                + F.cross_entropy(out["side"], train["view"][idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == args.steps - 1:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4)}), flush=True)
    train_s = time.time() - begin

    card = {"width": args.width, "steps": args.steps, "batch": args.batch, "train_renders": args.train,
            "held_out_renders": args.held_out, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "held_out_accuracy_clean": accuracy(model, held, None),
            "held_out_accuracy_degraded": accuracy(model, held, torch.Generator().manual_seed(2)),
            "command": "python examples/train_recogniser.py " + shlex.join(sys.argv[1:])}
    print(json.dumps(card), flush=True)
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous().cpu() for k, v in model.state_dict().items()},
              str(args.out / "recogniser.safetensors"))
    (args.out / "recogniser.json").write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
