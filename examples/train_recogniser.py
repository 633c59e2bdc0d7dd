"""Train the world recogniser (gsdi/eval/recogniser.py) on world renders and measure it on held-out ones.

    python examples/train_recogniser.py --device cuda --out gsdi/eval
    python examples/train_recogniser.py --device cuda --out gsdi/eval --patterns   # the 128-px pattern reader

Renders a labelled pool (random objects of every category and colour from random training orbits,
64x64; with --patterns 128x128 and half of the objects patterned) and a held-out pool from other
seeds, trains the CNN with the `degrade` augmentation (with --mirror-shift PX also mirrored and moved
copies, `mirror_and_shift`), and writes recogniser.safetensors (fp16) and
recogniser.json (accuracy on the held-out pool, clean and degraded; the command; the time) to --out
(pattern_recogniser.* with --patterns).
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from gsdi.world import render_pool
from gsdi.eval.recogniser import BLUR, PATTERN_BLUR, PATTERN_SIZE, SIZE, Recogniser, degrade, mirror_and_shift
from gsdi.eval.training import fit, save_weights
from training_args import training_arguments  # examples/training_args.py

HEADS = {"category": "category", "colour": "colour", "side": "view"}  # head -> the pool's label
PATTERN_HEADS = {"pattern": "pattern", "pattern_colour": "pattern_colour"}
POOL_SEEDS = {"training": 11, "held_out": 12}  # render_pool's seeds (examples/research/reader_overfit.py draws them again)


def max_blur(model: Recogniser) -> float:
    """The training blur's cap: a pattern reader's is smaller, so that its labels stay in the image."""
    return PATTERN_BLUR if "pattern" in model.heads else BLUR


def accuracy(model: Recogniser, pool: dict, generator: torch.Generator | None, batch: int = 512) -> dict[str, float]:
    """Held-out accuracy per head, of category and colour together, and (pattern recogniser) of
    everything a prompt names: category, colour, pattern and its colour. The pattern colour is
    scored on patterned renders only; degraded with `generator`, clean without."""
    heads = {k: v for k, v in (HEADS | PATTERN_HEADS).items() if k in model.heads}
    right = {k: [] for k in heads}
    n = pool["images"].shape[0]
    model.eval()
    with torch.no_grad():
        for start in range(0, n, batch):
            x = pool["images"][start:start + batch].float() / 255
            if generator is not None:
                x = degrade(x, generator, max_blur(model))
            out = model(x)
            for k, label in heads.items():
                right[k].append(out[k].argmax(1) == pool[label][start:start + batch])
    model.train()
    right = {k: torch.cat(v) for k, v in right.items()}
    scores = {k: v.float().mean() for k, v in right.items()}
    scores["category_and_colour"] = (right["category"] & right["colour"]).float().mean()
    if "pattern" in right:
        patterned = pool["pattern"] > 0
        scores["pattern_colour"] = right["pattern_colour"][patterned].float().mean()
        named = right["category"] & right["colour"] & right["pattern"] & (right["pattern_colour"] | ~patterned)
        scores["all_named"] = named.float().mean()
        scores["all_named_patterned"] = named[patterned].float().mean()
    return {k: round(float(v), 4) for k, v in scores.items()}


def main() -> None:
    args = training_arguments(__doc__.splitlines()[0], train=24_000, held_out=4_000, steps=4_000, what="renders",
                              extra={"--patterns": {"action": "store_true",
                                                    "help": "the 128-px recogniser that also reads patterns"},
                                     "--mirror-shift": {"type": int, "default": 0, "metavar": "PX",
                                                        "help": "also mirror half the training images and move each by up to PX "
                                                                "pixels (labels kept, the side's left out on mirrored ones: the light "
                                                                "is fixed in the world; against learning the pool by heart; 0: off)"}})
    device = torch.device(args.device)
    torch.manual_seed(0)
    size, patterned = (PATTERN_SIZE, 0.5) if args.patterns else (SIZE, 0.0)

    begin = time.time()
    train = render_pool(args.train, seed=POOL_SEEDS["training"], size=size, device=str(device), patterned=patterned)
    held = render_pool(args.held_out, seed=POOL_SEEDS["held_out"], size=size, device=str(device), patterned=patterned)
    render_s = time.time() - begin
    print(json.dumps({"pool": args.train, "held_out": args.held_out, "render_s": round(render_s, 1)}), flush=True)

    model = Recogniser(args.width, size, args.patterns).to(device)
    heads = HEADS | (PATTERN_HEADS if args.patterns else {})
    g = torch.Generator().manual_seed(1)

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(args.train, (args.batch,), generator=g).to(device)
        x = train["images"][idx].float() / 255
        labels = {k: train[label][idx] for k, label in heads.items()}
        if args.mirror_shift:  # a mirrored render is lit from the other side: no side loss on it
            x, mirrored = mirror_and_shift(x, g, args.mirror_shift)
            labels["side"] = labels["side"].masked_fill(mirrored, -1)
        x = degrade(x, g, max_blur(model))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x)
        # a plain render's pattern colour is -1: no loss there
        return sum(F.cross_entropy(out[k].float(), labels[k], ignore_index=-1) for k in heads)

    steps, train_s = fit(model, args.steps, args.lr, step_loss, minutes=args.minutes)

    card = {"width": args.width, "size": size, "patterns": args.patterns, "patterned_share": patterned,
            "steps": steps, "batch": args.batch, "train_renders": args.train, "mirror_shift": args.mirror_shift,
            "held_out_renders": args.held_out, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "held_out_accuracy_clean": accuracy(model, held, None),
            "held_out_accuracy_degraded": accuracy(model, held, torch.Generator().manual_seed(2)),
            "command": "python examples/train_recogniser.py " + shlex.join(sys.argv[1:])}
    print(json.dumps(card), flush=True)
    save_weights(model, args.out, "pattern_recogniser" if args.patterns else "recogniser", card)


if __name__ == "__main__":
    main()
