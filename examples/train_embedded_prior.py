"""Train gsdi's embedded prior on the procedural world, then measure and ship it.

    python examples/train_embedded_prior.py --out runs/embedded --minutes 6

1. Renders a pool of random world objects from random training orbits (gsdi's cameras and
   background), each labelled with its category, colour and view word.
2. Trains the EmbeddedPrior networks (UNet on the pixel-unshuffled image + word encoder) with the
   epsilon objective at uniform t, dropping the prompt 10% of the time (for CFG) and the colour and
   view words now and then (so "a castle" and "a castle, front view" are understood too).
3. Writes the prior (fp16 safetensors + architecture), a checkpoint to resume from, DDIM samples
   for every category and colour, a recognisability figure and a model card.

Recognisability: each DDIM sample is classified by its nearest neighbour (L2 between 16x16 area
averages) in a labelled bank of held-out world renders; accuracy is the fraction whose neighbour has the asked category
(and colour). Resumable: rerun with the same --out to continue from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.media import image_grid, write_png
from gsdi.guidance.ddim import sample_prior
from gsdi.priors import TextCond
from gsdi.priors.embedded import EmbeddedPrior
from gsdi.world import CATEGORIES, PALETTE, describe, render_pool
from gsdi.prompts import VIEW_WORDS
from training_args import ema_step, training_start  # examples/training_args.py

CATS, COLOURS = list(CATEGORIES), list(PALETTE)


def prompt_table(encoder) -> torch.Tensor:
    """Token ids for every (category, colour or none, view or none): [C, colours+1, views+1, max_words]."""
    table = torch.zeros(len(CATS), len(COLOURS) + 1, len(VIEW_WORDS) + 1, encoder.max_words, dtype=torch.long)
    for a, cat in enumerate(CATS):
        for b, col in enumerate([*COLOURS, None]):
            for c, view in enumerate([*VIEW_WORDS, None]):
                table[a, b, c] = torch.tensor(encoder.tokenize(describe(cat, col, view)))
    return table


def save_checkpoint(path: Path, prior: EmbeddedPrior, optimizer, step: int, losses: list[float]) -> None:
    """Weights in fp32 and Adam's moments as safetensors, the rest as JSON; written atomically."""
    from safetensors.torch import save_file

    tensors = {f"unet.{k}": v for k, v in prior.unet.state_dict().items()}
    tensors.update({f"text.{k}": v for k, v in prior.text_encoder.state_dict().items()})
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                tensors[f"adam.{i}.{key}"] = value
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"step": step, "losses": losses}))


def load_checkpoint(path: Path, prior: EmbeddedPrior, optimizer) -> tuple[int, list[float]]:
    from safetensors.torch import load_file

    tensors = load_file(str(path), device=str(prior.device))
    prior.unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    prior.text_encoder.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("text.")})
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, i, name = key.split(".", 2)
            optimizer.state[params[int(i)]][name] = value
    meta = json.loads(path.with_suffix(".json").read_text())
    return meta["step"], meta["losses"]


@torch.no_grad()
def sample(prior: EmbeddedPrior, prompts: list[str], generator: torch.Generator, steps: int = 50, scale: float = 4.0) -> torch.Tensor:
    """DDIM samples [B, 3, S, S] in [0, 1] for prompts, from the same closed-form DDIM gsdi guides with."""
    B, S = len(prompts), prior.image_size
    c = 3 * prior.unshuffle**2
    x = torch.randn(B, c, S // prior.unshuffle, S // prior.unshuffle, generator=generator).to(prior.device)
    text = TextCond(prior.text_embeddings(prompts), prior.text_embeddings([""] * B))
    return prior.decode(sample_prior(prior, text, x, steps, scale))


def recognisability(prior: EmbeddedPrior, bank: dict[str, torch.Tensor], views: int, seed: int, steps: int) -> dict:
    """Nearest-neighbour (L2 of 16x16 averages) labels of DDIM samples for every category x colour, from `views` azimuths."""
    g = torch.Generator().manual_seed(seed)
    def features(images: torch.Tensor) -> torch.Tensor:  # 16x16 area averages: robust to pixel noise
        return F.adaptive_avg_pool2d(images, 16).flatten(1)

    bank_images = features(bank["images"].float().div(255))
    hits_cat = hits_col = total = 0
    per_category = {c: 0 for c in CATS}
    for a, cat in enumerate(CATS):
        prompts, colours = [], []
        for b, col in enumerate(COLOURS):
            for v in range(views):
                prompts.append(describe(cat, col, VIEW_WORDS[v % 3]))
                colours.append(b)
        images = features(sample(prior, prompts, g, steps))
        nearest = torch.cdist(images, bank_images).argmin(dim=1)
        cat_ok = bank["category"][nearest] == a
        col_ok = bank["colour"][nearest] == torch.tensor(colours, device=nearest.device)
        hits_cat += int(cat_ok.sum())
        hits_col += int((cat_ok & col_ok).sum())
        per_category[cat] = round(float(cat_ok.float().mean()), 3)
        total += len(prompts)
    return {"category_accuracy": hits_cat / total, "category_and_colour_accuracy": hits_col / total,
            "samples": total, "per_category": per_category, "chance_category": 1 / len(CATS),
            "chance_category_and_colour": 1 / (len(CATS) * len(COLOURS))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=40_000, help="training renders")
    parser.add_argument("--bank", type=int, default=5_000, help="held-out renders for the recognisability measure")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time budget of this call")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--eval-views", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the samples and the measure")
    parser.add_argument("--init", type=Path, default=None, help="start from a saved prior folder (fresh optimizer)")
    parser.add_argument("--ema", type=float, default=0.999, help="decay of the weight average that ships")
    parser.add_argument("--offset-noise", type=float, default=0.1,
                        help="std of a per-image, per-colour constant added to the training noise, so DDIM can reach "
                             "the white background from mean-0 noise (SD's schedule keeps abar[999] > 0)")
    parser.add_argument("--grain", type=float, default=0.0,
                        help="std of Gaussian noise added to every training image in model space ([-1, 1]), drawn "
                             "afresh each time: gives the data a thickness, without which DDIM inversion cannot give "
                             "back the noise a sample came from (flat renders lie on a thin set)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = training_start(args)
    prior = EmbeddedPrior.load(args.init, torch.device(device)) if args.init else EmbeddedPrior.random(device, seed=args.seed)
    prior.unet.requires_grad_(True).train()
    prior.text_encoder.requires_grad_(True).train()
    parameters = [*prior.unet.parameters(), *prior.text_encoder.parameters()]
    ema = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    checkpoint = args.out / "checkpoint.safetensors"
    step, losses = load_checkpoint(checkpoint, prior, optimizer) if checkpoint.exists() else (0, [])

    start = time.perf_counter()
    pool = render_pool(args.pool, args.seed, prior.image_size, device)
    bank = render_pool(args.bank, args.seed + 1, prior.image_size, device)
    render_seconds = time.perf_counter() - start
    print(json.dumps({"event": "pool", "train": args.pool, "bank": args.bank, "seconds": round(render_seconds, 1)}), flush=True)
    write_png(args.out / "pool.png", image_grid(pool["images"][:40].permute(0, 2, 3, 1).float() / 255, 10))

    table = prompt_table(prior.text_encoder).to(device)
    abar = prior.alphas_cumprod
    g = torch.Generator(device=device).manual_seed(args.seed + step)
    use_bf16 = device == "cuda"
    train_start, first_step = time.perf_counter(), step
    while step < args.max_steps and time.perf_counter() - train_start < 60 * args.minutes:
        idx = torch.randint(pool["images"].shape[0], (args.batch,), device=device, generator=g)
        x0 = prior.encode(pool["images"][idx].float() / 255)
        if args.grain > 0:
            x0 = x0 + args.grain * torch.randn(x0.shape, device=device, generator=g)
        u = torch.rand(args.batch, 3, device=device, generator=g)
        colour = torch.where(u[:, 0] < 0.3, len(COLOURS), pool["colour"][idx])  # "a castle" covers every colour
        view = torch.where(u[:, 1] < 0.2, len(VIEW_WORDS), pool["view"][idx])
        ids = table[pool["category"][idx], colour, view]
        ids = torch.where(u[:, 2:3] < 0.1, torch.zeros_like(ids), ids)  # unconditional, for CFG
        t = torch.randint(0, abar.shape[0], (args.batch,), device=device, generator=g)
        noise = torch.randn(x0.shape, device=device, generator=g)
        if args.offset_noise > 0:  # per RGB channel, spread over the pixel-unshuffled channels it owns
            offset = torch.randn(args.batch, 3, 1, 1, device=device, generator=g)
            noise = noise + args.offset_noise * offset.repeat_interleave(prior.unshuffle**2, dim=1)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        lr = args.lr * min(1.0, (step + 1) / 500)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            eps = prior.unet(x_t, t, encoder_hidden_states=prior.text_encoder.embed(ids))
        loss = F.mse_loss(eps.float(), noise)
        ema_step(loss, optimizer, parameters, ema, args.ema)
        step += 1
        if step % 200 == 0:
            losses.append(round(loss.item(), 5))
            print(json.dumps({"event": "train", "step": step, "loss": losses[-1], "lr": lr,
                              "seconds": round(time.perf_counter() - train_start, 1)}), flush=True)
    train_seconds = time.perf_counter() - train_start
    save_checkpoint(checkpoint, prior, optimizer, step, losses)
    with torch.no_grad():  # what ships is the weight average
        for p, e in zip(parameters, ema):
            p.copy_(e)

    prior.unet.eval().requires_grad_(False)
    prior.text_encoder.eval().requires_grad_(False)
    weights = prior.save(args.out / "prior")
    shipped = EmbeddedPrior.load(weights, torch.device(device))  # measure what ships (fp16-rounded)
    g_cpu = torch.Generator().manual_seed(123)
    n = args.sample_steps
    grid = [sample(shipped, [describe(cat, col, "front") for col in COLOURS], g_cpu, n) for cat in CATS]
    write_png(args.out / "samples.png", image_grid(torch.cat(grid).permute(0, 2, 3, 1), len(COLOURS)))
    views = [sample(shipped, [describe(cat, None, v) for v in ("front", "side", "back")], g_cpu, n) for cat in CATS]
    write_png(args.out / "samples_views.png", image_grid(torch.cat(views).permute(0, 2, 3, 1), 3))
    metrics = recognisability(shipped, bank, args.eval_views, args.seed, n)
    params = sum(p.numel() for p in parameters)
    card = {
        "steps": step, "steps_this_call": step - first_step, "train_seconds_this_call": round(train_seconds, 1),
        "pool_render_seconds": round(render_seconds, 1), "batch": args.batch, "lr": args.lr, "pool": args.pool,
        "offset_noise": args.offset_noise, "grain": args.grain, "init": str(args.init) if args.init else None,
        "sample_steps": n, "cfg_scale": 4.0,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "parameters": params,
        "weights_bytes": (weights / "model.safetensors").stat().st_size, "final_losses": losses[-5:],
        "recognisability": metrics,
    }
    (args.out / "model_card.json").write_text(json.dumps(card, indent=2))
    print(json.dumps({"event": "done", **card}), flush=True)


if __name__ == "__main__":
    main()
