"""The training loop and weight files shared by the world's small networks (the recogniser, the critic).

Used by examples/train_recogniser.py and examples/train_critic.py (their shared command line is
examples/training_args.py): AdamW with a one-cycle schedule (by steps or by the clock),
a JSON line of the loss every `log_every` steps, and fp16 safetensors with a JSON card beside them,
which `load_weights` reads back for the package.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def fit(model: nn.Module, steps: int, lr: float, step_loss: Callable[[int], torch.Tensor], log_every: int = 500,
        minutes: float | None = None) -> tuple[int, float]:
    """At most `steps` AdamW steps (weight decay 1e-4, one-cycle lr up to `lr`: 10% warm-up, cosine
    down) on step_loss(step); with `minutes`, the schedule runs on the larger of the step's and the
    clock's share of its budget and stops at either. Returns the steps taken and the seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    begin, step, progress = time.time(), 0, 0.0
    while progress < 1:
        warm = min(1.0, progress / 0.1)
        down = 0.5 * (1 + math.cos(math.pi * max(0.0, progress - 0.1) / 0.9))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(warm * down, 1e-3)
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed = time.time() - begin
        progress = max(step / steps, elapsed / (60 * minutes) if minutes else 0.0)
        if step % log_every == 1 or progress >= 1:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), "seconds": round(elapsed, 1)}), flush=True)
    return step, time.time() - begin


def save_weights(model: nn.Module, folder: Path, stem: str, card: dict) -> None:
    """folder/stem.safetensors (fp16) and folder/stem.json (the card)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous().cpu() for k, v in model.state_dict().items()}, str(folder / f"{stem}.safetensors"))
    (folder / f"{stem}.json").write_text(json.dumps(card, indent=2) + "\n")


def load_weights(folder: Path, stem: str, build: Callable[[dict], nn.Module], trainer: str,
                 device: torch.device | str = "cpu") -> nn.Module:
    """The model that save_weights wrote (build(card) makes it from its card), in eval mode without
    grad; GsdiError naming `trainer` when the weights are missing."""
    from safetensors.torch import load_file

    from gsdi.errors import GsdiError

    weights, card_file = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not weights.is_file():
        raise GsdiError(f"no {stem} weights at {weights}; train them with {trainer}")
    model = build(json.loads(card_file.read_text()) if card_file.is_file() else {})
    model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return model.to(device).eval().requires_grad_(False)
