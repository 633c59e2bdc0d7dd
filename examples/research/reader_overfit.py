"""Has a world reader learned its training renders by heart? Its accuracy on its own training renders
beside held-out ones.

    python examples/research/reader_overfit.py --recogniser DIR [--renders 1024] [--zoom 1.5]

`train_recogniser.py` renders its training and held-out pools from two seeds (POOL_SEEDS there), a
round of render_pool's default batch at a time; the first round of each (here `--renders`, at most
that batch) is drawn again on this machine and read by the recogniser in DIR (its card's accuracy,
clean renders). A reader that names its own renders far better than held-out ones is short of renders
or of augmentation, not of steps. --zoom / --period: the candidate world it was trained on.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from gsdi.eval.recogniser import PATTERN_SIZE, load_recogniser
from gsdi.world import render_pool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from train_recogniser import POOL_SEEDS, accuracy  # noqa: E402
from training_args import candidate_world_arguments, use_candidate_world  # noqa: E402

ROUND = inspect.signature(render_pool).parameters["batch"].default  # its first round is the same whatever the pool's size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recogniser", required=True, help="a folder with pattern_recogniser.safetensors")
    parser.add_argument("--renders", type=int, default=ROUND, help=f"renders of each pool (at most {ROUND})")
    parser.add_argument("--device", default="cpu")
    candidate_world_arguments(parser)
    args = parser.parse_args()
    assert 0 < args.renders <= ROUND, args.renders
    use_candidate_world(args)
    model = load_recogniser(args.device, patterns=True, folder=args.recogniser)
    for name, seed in POOL_SEEDS.items():
        begin = time.time()
        pool = render_pool(ROUND, seed=seed, size=PATTERN_SIZE, device=args.device, patterned=0.5)
        pool = {k: v[:args.renders] for k, v in pool.items()}
        print(json.dumps({"pool": name, "renders": args.renders, "render_s": round(time.time() - begin),
                          "clean": accuracy(model, pool, None)}), flush=True)


if __name__ == "__main__":
    main()
