"""Where the pattern recogniser misreads patterns: accuracy by how many pixels of the pattern a render shows.

    python examples/research/recogniser_patterns.py [--objects 400] [--recogniser DIR] [--period LO HI]

Hypothesis: the pattern recogniser's 0.75 held-out pattern accuracy is not a limit of the network
but of the renders: on the world's training orbits a pattern covers a quarter of a small object's
painted surface, so some renders show few of its pixels and the label is hardly in the image. Draws
the held-out pool's kind of renders (random objects from random training orbits, 128 px, every
object patterned) from a seed no training used, renders each object again plain from the same
camera (its shape is the same: a pattern is drawn after the shape), counts the pixels where the
two differ by more than 0.1 in a channel (the pattern's visible pixels), and prints one JSON line
per bin of that count: renders, the recogniser's pattern accuracy, and what it read instead.
--period draws the patterns' periods from another range (world units; the world's is
gsdi.world.objects.PERIOD): how the reader does on coarser patterns than it was trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from gsdi.cameras import sample_orbits
from gsdi.eval.recogniser import PATTERN_NAMES, load_recogniser, recognise
from gsdi.world import pad_objects, render_objects
import gsdi.world.objects as objects
from gsdi.world.objects import CATEGORIES, PALETTE, sample_object
from gsdi.world.shapes import PATTERNS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import candidate_world_arguments, use_candidate_world  # noqa: E402

BINS = (0, 25, 50, 100, 200, 400, 100_000)  # visible pattern pixels at 128 px


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--recogniser", default=None, help="a folder with pattern_recogniser.safetensors (default: the shipped one)")
    candidate_world_arguments(parser)
    args = parser.parse_args()
    use_candidate_world(args)
    model = load_recogniser("cpu", patterns=True, folder=args.recogniser)
    cats, colours = list(CATEGORIES), list(PALETTE)
    g = torch.Generator().manual_seed(args.seed)
    pixels, asked, read = [], [], []
    for start in range(0, args.objects, 50):
        m = min(50, args.objects - start)
        kinds = torch.randint(len(PATTERNS), (m,), generator=g)
        cat = torch.randint(len(cats), (m,), generator=g)
        second = torch.randint(len(colours), (m,), generator=g)
        patterned, plain = [], []
        for i in range(m):
            seed = args.seed * 10_000_000 + start + i
            prims, colour = sample_object(cats[int(cat[i])], None, seed, PATTERNS[int(kinds[i])], colours[int(second[i])])
            patterned.append(prims)
            plain.append(sample_object(cats[int(cat[i])], colour, seed)[0])
        cams = sample_orbits(m, 128, 128, g)
        a, _ = render_objects(pad_objects(patterned), cams)
        b, _ = render_objects(pad_objects(plain), cams)
        pixels += ((a - b).abs().amax(-1) > 0.1).flatten(1).sum(1).tolist()
        asked += [PATTERNS[int(k)] for k in kinds]
        read += recognise(model, a)["pattern"]
    pixels = torch.tensor(pixels)
    print(json.dumps({"period": list(objects.PERIOD), "renders": len(asked), "pattern_accuracy": round(sum(x == y for x, y in zip(asked, read)) / len(asked), 3),
                      "median_visible_pixels": int(pixels.median())}))
    for lo, hi in zip(BINS, BINS[1:]):
        idx = [i for i in range(len(asked)) if lo <= pixels[i] < hi]
        if idx:
            right = sum(asked[i] == read[i] for i in idx)
            wrong = Counter(f"{asked[i]}->{read[i]}" for i in idx if asked[i] != read[i])
            print(json.dumps({"visible_pixels": f"{lo}-{hi}", "renders": len(idx), "pattern_accuracy": round(right / len(idx), 3),
                              "misread": dict(wrong.most_common(4))}))
    assert set(read) <= set(PATTERN_NAMES)


if __name__ == "__main__":
    main()
