"""Probe SDI in 2D on the embedded prior: does it keep a DDIM sample, how do its knobs matter?

    python examples/research/sdi_probe.py --steps 60 --variant "{'init': 'ddim'}" --variant "{'inversion_cfg_scale': 7.5}" \
        --variant "{'opt': 'sgd', 'lr': 1.0}" --variant "{'method': 'sds'}"

Optimises one 64x64 image of --prompt (front view) directly with guidance_loss, from grey or from
the prior's own DDIM sample (`init`), with any GuidanceConfig fields plus `opt` (adam/sgd) and `lr`
per variant, and prints the error to the nearest world render (as examples/eval_world.py's 2D
analogue) over the run. Writes the images (DDIM sample first) to --png. docs/research-log.md
quotes its output.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import torch

from gsdi.cameras import orbit_cameras
from gsdi.config import GuidanceConfig
from gsdi.media import image_grid, write_png
from gsdi.guidance import Rng, guidance_loss, timestep
from gsdi.guidance.ddim import sample_prior
from gsdi.priors import TextCond, load_prior
from gsdi.world import pad_objects, parse, render_objects
from gsdi.eval.evaluate import reference_objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a red castle")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--variant", action="append", default=[], help="a dict literal per run")
    parser.add_argument("--png", type=Path, default=Path("sdi_probe.png"))
    args = parser.parse_args()

    prior = load_prior("embedded", torch.device("cpu"))
    spec = parse(args.prompt)
    n = 8
    front = orbit_cameras(torch.zeros(1), torch.full((1,), 5.0), torch.full((1,), 1.8), torch.full((1,), 55.0), 64, 64)
    refs = torch.cat([render_objects(pad_objects([o]), front)[0] for o in reference_objects(spec, n)])
    cond = TextCond(prior.text_embeddings([f"{args.prompt}, front view"]), prior.text_embeddings([""]))
    z = torch.randn(1, 12, 32, 32, generator=torch.Generator().manual_seed(0))
    ddim = sample_prior(prior, cond, z, 50, 7.5)

    def error(x: torch.Tensor) -> float:
        return round(float(((prior.decode(x).permute(0, 2, 3, 1) - refs) ** 2).flatten(1).mean(1).min()), 4)

    print(json.dumps({"ddim_sample_error": error(ddim)}), flush=True)
    images = [prior.decode(ddim)]
    for text in args.variant:
        options = ast.literal_eval(text)
        init, lr, opt = options.pop("init", "grey"), options.pop("lr", 0.02), options.pop("opt", "adam")
        config = GuidanceConfig(method=options.pop("method", "sdi"), t_schedule="anneal", **options)
        x = (ddim.clone() if init == "ddim" else torch.zeros_like(ddim)).requires_grad_()
        optimizer = torch.optim.Adam([x], lr=lr) if opt == "adam" else torch.optim.SGD([x], lr=lr)
        rng, start, trace = Rng.seeded(0, "cpu"), time.time(), []
        for step in range(args.steps):
            out = guidance_loss(prior, x, cond, timestep(step, args.steps, config, 1000, rng), config, rng)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if step % max(args.steps // 4, 1) == 0:
                trace.append(error(x.detach()))
        images.append(prior.decode(x.detach()))
        print(json.dumps({"variant": text, "final_error": error(x.detach()), "trace": trace,
                          "seconds": round(time.time() - start)}), flush=True)
    write_png(args.png, image_grid(torch.cat(images).permute(0, 2, 3, 1), len(images)))


if __name__ == "__main__":
    main()
