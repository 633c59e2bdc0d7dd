"""What a prompt becomes for each view: the view words and their cut-offs, view prompts, the text
conditioning a prior is given (`TextCond`, `text_cond`) and Perp-Neg's prompts (`perp_neg_text`).

Perp-Neg (Armandpour et al. 2023) against the Janus problem, for every prior (docs/method.md): besides
the view prompt, the UNet sees the prompts of the other views as negatives. A camera between
the front and the side gets as its positive an interpolation of the "front view" and "side view"
embeddings (between the side and the back likewise), and the two view prompts it lies between as
negatives. Each negative direction `eps_neg - eps_u` enters only through its component perpendicular
to the positive direction `eps_pos - eps_u`, with a weight that decays with how close the camera is
to that view:

    eps = eps_u + s * (e_pos + sum_i w_i * perp(e_neg_i, e_pos)),   e_* = eps_* - eps_u.

The weights are the shifted exponential decays a * exp(-b r) + c of the reference implementation
(threestudio's prompt processor; its 3D configurations of SDI use them), negated: r is the
interpolation ratio (1 = completely the first view). Overhead cameras keep the overhead prompt and
get no negatives. The guidance's side of it (the perpendicular parts) is gsdi.priors.base.combine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

VIEW_WORDS = ("front", "side", "back", "overhead")  # what view_word returns; view_prompt appends "{word} view"
OVERHEAD_ELEVATION = 60.0  # degrees: above it a camera is "overhead" (and Perp-Neg gives it no negatives)
FRONT_AZIMUTH, BACK_AZIMUTH = 45.0, 135.0  # |azimuth| below the first is "front", above the second "back"


def view_word(azimuth: float, elevation: float) -> str:
    """The view-dependent prompt word (docs/method.md): overhead, front, back or side."""
    if elevation > OVERHEAD_ELEVATION:
        return "overhead"
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    if abs(azimuth) < FRONT_AZIMUTH:
        return "front"
    if abs(azimuth) > BACK_AZIMUTH:
        return "back"
    return "side"


_VIEW_PHRASE = re.compile(r"\s*,\s*(?:" + "|".join(VIEW_WORDS) + r")\s+view\s*$", re.IGNORECASE)


def without_view(prompt: str) -> str:
    """The prompt less a trailing view phrase ('a red castle, front view' -> 'a red castle')."""
    return _VIEW_PHRASE.sub("", prompt).strip()


def view_prompt(prompt: str, word: str) -> str:
    """'{prompt}, {word} view': the one rule every prior, the world's language and the yardstick use."""
    return f"{prompt}, {word} view"


def view_prompts(prompt: str, view_words: Sequence[str]) -> list[str]:
    """view_prompt per view; a view the prompt already names is replaced per camera."""
    base = without_view(prompt)
    return [view_prompt(base, w) for w in view_words]


@dataclass
class TextCond:
    """Embeddings for CFG: the (view-dependent) prompts and the negative prompt, one row per view;
    with Perp-Neg (perp_neg_text) also the other views' prompts and their weights."""

    cond: Tensor  # [B, L, D]
    uncond: Tensor  # [B, L, D]
    negatives: Tensor | None = None  # [B, n, L, D] Perp-Neg's negative view prompts
    neg_weights: Tensor | None = None  # [B, n] their weights (negative numbers)


def text_cond(prior, prompt: str, negative: str, view_words: list[str] | None, batch: int) -> TextCond:
    """Embeddings for `batch` views from `prior` (a gsdi.priors.Prior): view_prompts(prompt, view_words)
    when view words are given, else the prompt.
    (With Perp-Neg the step calls perp_neg_text instead.)"""
    prompts = view_prompts(prompt, view_words) if view_words is not None else [prompt] * batch
    assert len(prompts) == batch, (len(prompts), batch)
    return TextCond(cond=prior.text_embeddings(prompts), uncond=prior.text_embeddings([negative] * batch))


# (a, b, c) of a * exp(-b r) + c; a * exp(-b) + c = 0 where a weight must vanish at r = 1.
DECAY_FRONT_SIDE = (4.0, 0.5, -2.426)  # the front prompt, seen from between front and side
DECAY_SIDE_FRONT = (4.0, 0.5, -2.426)  # the side prompt, seen from between front and side
DECAY_SIDE_BACK = (1.0, 0.5, -0.606)  # the side prompt, seen from between side and back
DECAY_FRONT_BACK = (1.0, 0.5, 0.967)  # the front prompt, seen from between side and back


def _decay(abc: tuple[float, float, float], r: float) -> float:
    a, b, c = abc
    return a * math.exp(-b * r) + c


def view_mix(azimuth: float, elevation: float) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """The positive as weights of view words, and the negatives as (view word, weight) pairs."""
    if elevation > OVERHEAD_ELEVATION:
        return {"overhead": 1.0}, []
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    if abs(azimuth) < 90.0:
        r = 1.0 - abs(azimuth) / 90.0  # 1: the front, 0: the side
        return ({"front": r, "side": 1.0 - r},
                [("front", -_decay(DECAY_FRONT_SIDE, r)), ("side", -_decay(DECAY_SIDE_FRONT, 1.0 - r))])
    r = 2.0 - abs(azimuth) / 90.0  # 1: the side, 0: the back
    return ({"side": r, "back": 1.0 - r},
            [("side", -_decay(DECAY_SIDE_BACK, r)), ("front", -_decay(DECAY_FRONT_BACK, r))])


def perp_neg_text(prior, prompt: str, negative: str, azimuths: Tensor, elevations: Tensor) -> "TextCond":
    """TextCond from `prior` (a gsdi.priors.Prior) for B cameras (azimuths, elevations [B] degrees) with
    Perp-Neg's negatives [B, 2, L, D]."""
    B = azimuths.shape[0]
    assert elevations.shape == (B,), (azimuths.shape, elevations.shape)
    table = dict(zip(VIEW_WORDS, prior.text_embeddings(view_prompts(prompt, VIEW_WORDS))))  # each [L, D]
    uncond = prior.text_embeddings([negative] * B)
    cond, negatives, weights = [], [], []
    for azimuth, elevation in zip(azimuths.tolist(), elevations.tolist()):
        positive, negs = view_mix(azimuth, elevation)
        cond.append(sum(w * table[word] for word, w in positive.items()))
        if not negs:  # overhead: two dummy negatives with weight 0 keep the batch rectangular
            negs = [("overhead", 0.0), ("overhead", 0.0)]
        negatives.append(torch.stack([table[word] for word, _ in negs]))
        weights.append([w for _, w in negs])
    return TextCond(cond=torch.stack(cond), uncond=uncond, negatives=torch.stack(negatives),
                    neg_weights=torch.tensor(weights, dtype=torch.float32, device=uncond.device))
