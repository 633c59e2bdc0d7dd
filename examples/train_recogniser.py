"""Train the world recogniser (gsdi/eval/recogniser.py) on world renders and measure it on held-out ones.

    python examples/train_recogniser.py --device cuda --out gsdi/world

Renders a labelled pool (random objects of every category and colour from random training orbits,
64x64) and a held-out pool from other seeds, trains the CNN with the `degrade` augmentation, and
writes recogniser.safetensors (fp16) and recogniser.json (accuracy on the held-out pool, clean and
degraded; the command; the time) to --out.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from gsdi.world import render_pool
from gsdi.eval.recogniser import Recogniser, degrade
from gsdi.eval.training import fit, save_weights
from training_args import training_arguments  # examples/training_args.py


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
    args = training_arguments(__doc__.splitlines()[0], train=24_000, held_out=4_000, steps=4_000, what="renders")
    device = torch.device(args.device)
    torch.manual_seed(0)

    begin = time.time()
    train = render_pool(args.train, seed=11, size=64, device=str(device))
    held = render_pool(args.held_out, seed=12, size=64, device=str(device))
    render_s = time.time() - begin
    print(json.dumps({"pool": args.train, "held_out": args.held_out, "render_s": round(render_s, 1)}), flush=True)

    model = Recogniser(args.width).to(device)
    g = torch.Generator().manual_seed(1)

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(args.train, (args.batch,), generator=g).to(device)
        out = model(degrade(train["images"][idx].float() / 255, g))
        return (F.cross_entropy(out["category"], train["category"][idx]) + F.cross_entropy(out["colour"], train["colour"][idx])
                + F.cross_entropy(out["side"], train["view"][idx]))

    train_s = fit(model, args.steps, args.lr, step_loss)

    card = {"width": args.width, "steps": args.steps, "batch": args.batch, "train_renders": args.train,
            "held_out_renders": args.held_out, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "held_out_accuracy_clean": accuracy(model, held, None),
            "held_out_accuracy_degraded": accuracy(model, held, torch.Generator().manual_seed(2)),
            "command": "python examples/train_recogniser.py " + shlex.join(sys.argv[1:])}
    print(json.dumps(card), flush=True)
    save_weights(model, args.out, "recogniser", card)

if __name__ == "__main__":
    main()
