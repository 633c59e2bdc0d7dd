"""Where SDI's edge over SDS comes from, on worlds whose score is exact (gsdi.guidance.exact).

Every method runs through gsdi's own `guidance_loss` against a prior with no model error; the table
says how much of a crisp mode's detail each keeps (1: a mode, as DDIM's samples; 0: the average of the
modes, SDS's blur). Start: the x0-prediction of pure noise at t = 999; t annealed from 980 to t_min
over 40 levels; per level one of these regimes:
  one    x <- target (the 2D notebook of the SDI code)
  small  n updates x += 0.1 (target - x), each with fresh noise or a fresh inversion
  adam   n Adam steps on 0.5 |x - target|^2 (lr 0.01, as gsdi's 3D runs use Adam)
Knobs: `hold` computes a level's target once and takes the n steps toward it; `keep` draws (SDS) or
inverts (SDI) the noise once per level and re-predicts with it at each step; `views` makes the
parameters one wide image seen through shifted crops, a crop a step.

    python examples/research/study_exact.py --out docs/exact-study --jobs 16   # the tables (about an hour of CPU)
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from gsdi.config import GuidanceConfig
from gsdi.guidance import NOISE, Rng, guidance_loss
from gsdi.guidance.ddim import ddim_sample, predict_x0, sampling_grid
from gsdi.guidance.exact import detail_amplitude, world
from gsdi.priors import TextCond

BATCH = 8  # independent images (seeds) per run
SIZE = 16
METHODS = {  # GuidanceConfig fields on top of the method
    "sds": {"method": "sds"},
    "sdi-reference": {"method": "sdi", "inversion_start": 0, "inversion_cfg_scale": -7.5, "inversion_eta": 0.3,
                      "inversion_steps": 10, "prediction_timestep": "scheduled"},
    "sdi-reference-t'": {"method": "sdi", "inversion_start": 0, "inversion_cfg_scale": -7.5, "inversion_eta": 0.3,
                         "inversion_steps": 10, "prediction_timestep": "inverted"},
    "sdi-embedded": {"method": "sdi", "inversion_start": 300, "inversion_cfg_scale": 1.0, "inversion_eta": 0.0,
                     "inversion_steps": 5, "prediction_timestep": "inverted"},  # gsdi's --guidance sdi on the world prior, as measured before
    "ism": {"method": "ism"},
}


def start_image(prior, z, cfg):
    """The x0-prediction of pure noise z at t = 999."""
    text = TextCond(torch.zeros(z.shape[0], 1, 1), torch.zeros(z.shape[0], 1, 1))
    return predict_x0(z, prior.predict_noise(z, 999, text, cfg), prior.alphas_cumprod[999])


def run(w, method, regime, t_min, cfg=7.5, n=25, seed=0, hold=False, keep=False, views=0, shift=1):
    """Detail amplitude (mean over BATCH images and, with views, over the crops) after one run."""
    prior = w.prior
    g = torch.Generator().manual_seed(seed)
    width = SIZE + shift * max(views - 1, 0)
    z = torch.randn(BATCH, 1, SIZE, width, generator=g, dtype=torch.float64)
    crops = [slice(v * shift, v * shift + SIZE) for v in range(max(views, 1))]
    text = TextCond(torch.zeros(BATCH, 1, 1), torch.zeros(BATCH, 1, 1))
    if method == "ddim":  # DDIM-40 from each crop's noise
        grid = sampling_grid(1000, 40, 1)
        eps = lambda x, t: prior.predict_noise(x, t, text, cfg)  # noqa: E731
        return float(torch.stack([detail_amplitude(w, ddim_sample(eps, z[..., c], prior.alphas_cumprod, grid)) for c in crops]).mean())
    config = GuidanceConfig(cfg_scale=cfg, **METHODS[method])
    rng = Rng.seeded(seed)
    x = torch.cat([start_image(prior, z[..., c], cfg) for c in crops[:1]] +
                  [start_image(prior, z[..., c], cfg)[..., -shift:] for c in crops[1:]], dim=-1).requires_grad_()
    optimizer = torch.optim.Adam([x], lr=0.01) if regime == "adam" else None
    steps = 1 if regime == "one" else n
    for level in range(40):
        t = int(1000 * (0.98 - (0.98 - t_min) * level / 39))
        cached = {}
        for k in range(steps):
            v = int(torch.randint(0, len(crops), (1,), generator=rng.host)) if views else 0
            view = x[..., crops[v]]
            if hold and v in cached:
                target = cached[v]
            else:
                kappa_fn = None
                if keep:  # this level's noise once per view, re-predicted at each step
                    def kappa_fn(prior, x0, t, text, config, rng, v=v):
                        if v not in cached:
                            cached[v] = NOISE[config.method](prior, x0, t, text, config, rng)
                        x_t_old, t_noisy, kappa = cached[v]
                        abar = prior.alphas_cumprod[t_noisy]
                        return abar.sqrt() * x0 + (1 - abar).sqrt() * kappa, t_noisy, kappa
                target = guidance_loss(prior, view.detach(), text, t, config, rng, kappa_fn=kappa_fn).target
                if hold:
                    cached[v] = target
            with torch.no_grad():
                if regime == "one":
                    x[..., crops[v]] = target
                elif regime == "small":
                    x[..., crops[v]] += 0.1 * (target - view)
            if regime == "adam":
                optimizer.zero_grad()
                (0.5 * (x[..., crops[v]] - target).pow(2).sum()).backward()
                optimizer.step()
    with torch.no_grad():
        return float(torch.stack([detail_amplitude(w, x[..., c]) for c in crops]).mean())


def measure(row: dict) -> dict:
    """One row of the table: the run its keys describe, with its detail amplitude and seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    w = world("global" if row["world"] == "stripes" else row["world"], contrast=row.get("contrast", 0.2),
              flat=row["world"] == "stripes")
    knobs = {k: row[k] for k in ("cfg", "n", "hold", "keep", "views") if k in row}
    detail = run(w, row["method"], row["regime"], row["t_min"], **knobs)
    return {**row, "detail": round(detail, 3), "seconds": round(time.perf_counter() - start, 1)}


def rows_of(part: str) -> list[dict]:
    rows = []
    if part in ("regimes", "all"):
        for kind, regime, t_min, method in itertools.product(("global", "local", "two-scale"), ("one", "small", "adam"),
                                                             (0.02, 0.25), ["ddim", *METHODS]):
            if method != "ddim" or regime == "one":
                rows.append(dict(world=kind, method=method, regime=regime, t_min=t_min))
    if part in ("knobs", "all"):
        for method in ("sds", "sdi-reference", "sdi-reference-t'", "sdi-embedded"):
            for t_min in (0.02, 0.25):
                base = dict(world="local", method=method, regime="small", t_min=t_min)
                rows += [{**base, "n": n} for n in (1, 5)]
                rows += [{**base, "hold": True}, {**base, "keep": True}, {**base, "cfg": 100.0}]
                rows += [dict(world="local", method=method, regime="one", t_min=t_min, contrast=0.5)]
            rows += [dict(world="stripes", method=method, regime=regime, t_min=0.02, views=4) for regime in ("one", "small", "adam")]
        rows.append(dict(world="stripes", method="ddim", regime="one", t_min=0.02, views=4))
    return rows


KNOBS = ("n", "hold", "keep", "cfg", "contrast", "views")


def tables(rows: list[dict]) -> str:
    """The study's markdown: the regimes table (worlds x regime x t_min, methods across) and the knobs."""
    methods = ["ddim", *METHODS]
    plain = [r for r in rows if not any(k in r for k in KNOBS)]
    lines = ["| world | regime | t_min | " + " | ".join(methods) + " |", "|" + "---|" * (3 + len(methods))]
    for kind, regime, t_min in itertools.product(("global", "local", "two-scale"), ("one", "small", "adam"), (0.02, 0.25)):
        found = {r["method"]: r["detail"] for r in plain if (r["world"], r["t_min"]) == (kind, t_min)
                 and (r["regime"] == regime or r["method"] == "ddim")}
        if found:
            lines.append(f"| {kind} | {regime} | {t_min} | " + " | ".join(str(found.get(m, "")) for m in methods) + " |")
    knob_rows = [r for r in rows if any(k in r for k in KNOBS)]
    lines += ["", "| world | method | regime | t_min | knob | detail |", "|---|---|---|---|---|---|"]
    for r in sorted(knob_rows, key=lambda r: (r["world"], r["t_min"], str([(k, r[k]) for k in KNOBS if k in r]), r["method"])):
        knob = ", ".join(f"{k} {r[k]}" for k in KNOBS if k in r)
        lines.append(f"| {r['world']} | {r['method']} | {r['regime']} | {r['t_min']} | {knob} | {r['detail']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/exact-study"))
    parser.add_argument("--part", choices=["regimes", "knobs", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=1, help="rows measured in parallel processes")
    parser.add_argument("--tables", type=Path, default=None, metavar="JSON", help="only write the tables of a finished run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tables:
        (args.out / "tables.md").write_text(tables(json.loads(args.tables.read_text())))
        return
    rows = rows_of(args.part)
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            done = []
            for row in pool.imap_unordered(measure, rows):
                done.append(row)
                print(json.dumps(row), flush=True)
    else:
        done = [measure(row) for row in rows]
    (args.out / f"{args.part}.json").write_text(json.dumps(done, indent=1))
    (args.out / "tables.md").write_text(tables(done))
    print(json.dumps({"rows": len(done), "seconds": sum(r["seconds"] for r in done)}))


if __name__ == "__main__":
    main()
