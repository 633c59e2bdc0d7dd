"""Train the world critic (gsdi/eval/critic.py) on clean and degraded world renders.

    python examples/train_critic.py --device cuda --out gsdi/eval
    python examples/train_critic.py --device cuda --out gsdi/eval --patterns   # the 128-px critic that sees patterns

Renders a pool of random objects (every category and colour) from random training orbits at 64x64,
each also without its part (gsdi.world.objects.PARTS) from the same camera, and a held-out pool
from other seeds; with --patterns at 128x128, half of the objects patterned (stripes, dots or checks
in a second colour) and each also rendered with its pattern averaged into its mean colour. Trains the quality head on degraded copies (critic.training_batch: blur, noise,
speckle, haze, a removed part, at random strengths, with soft targets) and the category, colour and
side heads on the same images. Writes critic.safetensors (fp16) and critic.json (held-out figures,
the command, the time) to --out (pattern_critic.* with --patterns).
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from gsdi.cameras import sample_orbits
from gsdi.prompts import VIEW_WORDS
from gsdi.world import CATEGORIES, PALETTE, pad_objects, render_objects
from gsdi.world.shapes import PATTERNS
from gsdi.eval.critic import Critic, quality_loss, training_batch
from gsdi.eval.recogniser import PATTERN_SIZE, SIZE
from gsdi.world.objects import build_object, pattern_averaged, without_part
from gsdi.eval.training import fit, save_weights
from training_args import training_arguments  # examples/training_args.py


def part_pool(n: int, seed: int, size: int, device: str, batch: int = 1024, patterned: float = 0.0) -> dict[str, torch.Tensor]:
    """n random objects from random training orbits, rendered whole and without their part:
    images and part_removed uint8 [n, 3, size, size], category / colour / view indices [n]. With
    `patterned` > 0 that share carries a random pattern and every object is also rendered with its
    pattern averaged into its mean colour (`averaged`; a plain object's is itself)."""
    cats_all, colours_all = list(CATEGORIES), list(PALETTE)
    g = torch.Generator().manual_seed(seed)
    keys = ("images", "part_removed") + (("averaged",) if patterned > 0 else ())
    out = {k: [] for k in (*keys, "category", "colour", "view")}
    for start in range(0, n, batch):
        m = min(batch, n - start)
        cat = torch.randint(len(cats_all), (m,), generator=g)
        kinds, seconds = torch.full((m,), -1), torch.zeros(m, dtype=torch.long)
        if patterned > 0:  # drawn only then, so that the plain pool is the one earlier versions drew
            kinds = torch.where(torch.rand(m, generator=g) < patterned, torch.randint(len(PATTERNS), (m,), generator=g), -1)
            seconds = torch.randint(len(colours_all), (m,), generator=g)
        whole, parted, flat, colour_ids = [], [], [], []
        for i in range(m):
            category, object_seed = cats_all[int(cat[i])], seed * 10_000_000 + start + i
            pattern = PATTERNS[int(kinds[i])] if kinds[i] >= 0 else None
            second = colours_all[int(seconds[i])] if pattern else None  # the object's colour is drawn unlike it
            prims, colour, _ = build_object(category, None, object_seed, pattern, second)
            whole.append(prims)
            parted.append(without_part(category, colour, object_seed, pattern=pattern, pattern_colour=second))
            if patterned > 0:
                flat.append(pattern_averaged(prims))
            colour_ids.append(colours_all.index(colour))
        cams = sample_orbits(m, size, size, g)
        for key, objects in zip(keys, (whole, parted, flat)):
            rgb, _ = render_objects(pad_objects(objects).to(device), cams)
            out[key].append((rgb.permute(0, 3, 1, 2) * 255).round().to(torch.uint8))
        out["category"].append(cat)
        out["colour"].append(torch.tensor(colour_ids))
        out["view"].append(torch.tensor([VIEW_WORDS.index(w) for w in cams.view_words()]))
    return {k: torch.cat(v).to(device) for k, v in out.items()}


def held_out_figures(model: Critic, pool: dict, batch: int = 1024) -> dict:
    """Category accuracy on clean renders, and the quality head's mean error and rank correlation on
    degraded copies (a fixed generator)."""
    g = torch.Generator().manual_seed(2)
    model.eval()
    hits, n, pred, target, clean_p = 0, pool["images"].shape[0], [], [], []
    with torch.no_grad():
        for start in range(0, n, batch):
            clean = pool["images"][start:start + batch].float() / 255
            parted = pool["part_removed"][start:start + batch].float() / 255
            out = model(clean)
            hits += int((out["category"].argmax(1) == pool["category"][start:start + batch]).sum())
            clean_p.append(torch.sigmoid(out["quality"]))
            averaged = pool["averaged"][start:start + batch].float() / 255 if "averaged" in pool else None
            x, q = training_batch(clean, parted, g, averaged)
            pred.append(torch.sigmoid(model(x)["quality"]))
            target.append(q)
    model.train()
    pred, target = torch.cat(pred), torch.cat(target)
    rank = lambda v: v.argsort().argsort().double()  # noqa: E731
    spearman = torch.corrcoef(torch.stack([rank(pred), rank(target)]))[0, 1]
    return {"category_accuracy_clean": round(hits / n, 4), "quality_clean_mean": round(float(torch.cat(clean_p).mean()), 4),
            "quality_abs_error": round(float((pred - target).abs().mean()), 4), "quality_spearman": round(float(spearman), 4)}


def feature_rms(model: Critic, pool: dict, n: int = 1024) -> float:
    """RMS of the critic's features over the first n clean held-out renders: the unit of the yardstick's KID."""
    model.eval()
    with torch.no_grad():
        h = model.features(pool["images"][:n].float() / 255)
    model.train()
    return round(float(h.pow(2).mean().sqrt()), 4)


def main() -> None:
    args = training_arguments(__doc__.splitlines()[0], train=32_000, held_out=4_000, steps=6_000,
                              what="objects (each rendered whole and without its part)",
                              extra={"--patterns": {"action": "store_true",
                                                    "help": "the 128-px critic that has also seen patterns and their averaging"}})
    size, patterned = (PATTERN_SIZE, 0.5) if args.patterns else (SIZE, 0.0)
    device = torch.device(args.device)
    torch.manual_seed(0)

    begin = time.time()
    train = part_pool(args.train, seed=21, size=size, device=str(device), patterned=patterned)
    held = part_pool(args.held_out, seed=22, size=size, device=str(device), patterned=patterned)
    render_s = time.time() - begin
    print(json.dumps({"pool": args.train, "held_out": args.held_out, "render_s": round(render_s, 1)}), flush=True)

    model = Critic(args.width, size=size).to(device)
    g = torch.Generator().manual_seed(1)

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(args.train, (args.batch,), generator=g).to(device)
        averaged = train["averaged"][idx].float() / 255 if "averaged" in train else None
        x, q = training_batch(train["images"][idx].float() / 255, train["part_removed"][idx].float() / 255, g, averaged)
        out = model(x)
        return quality_loss(out["quality"], q) + (F.cross_entropy(out["category"], train["category"][idx])
                                                  + F.cross_entropy(out["colour"], train["colour"][idx])
                                                  + F.cross_entropy(out["side"], train["view"][idx])) / 3

    steps, train_s = fit(model, args.steps, args.lr, step_loss, minutes=args.minutes)

    card = {"width": args.width, "size": size, "patterned_share": patterned, "steps": steps, "batch": args.batch, "train_objects": args.train,
            "held_out_objects": args.held_out, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "held_out": held_out_figures(model, held), "feature_rms": feature_rms(model, held),
            "command": "python examples/train_critic.py " + shlex.join(sys.argv[1:])}
    print(json.dumps(card), flush=True)
    save_weights(model, args.out, "pattern_critic" if args.patterns else "critic", card)


if __name__ == "__main__":
    main()
