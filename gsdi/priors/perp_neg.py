"""Perp-Neg (Armandpour et al. 2023) against the Janus problem, for every prior (docs/method.md).

Besides the view prompt, the UNet sees the prompts of the other views as negatives. A camera between
the front and the side gets as its positive an interpolation of the "front view" and "side view"
embeddings (between the side and the back likewise), and the two view prompts it lies between as
negatives. Each negative direction `eps_neg - eps_u` enters only through its component perpendicular
to the positive direction `eps_pos - eps_u`, with a weight that decays with how close the camera is
to that view:

    eps = eps_u + s * (e_pos + sum_i w_i * perp(e_neg_i, e_pos)),   e_* = eps_* - eps_u.

The weights are the shifted exponential decays a * exp(-b r) + c of the reference implementation
(threestudio's prompt processor; its 3D configurations of SDI use them), negated: r is the
interpolation ratio (1 = completely the first view). Overhead cameras (elevation > 60) keep the
overhead prompt and get no negatives.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gsdi.priors.base import TextCond, combine, perpendicular, view_prompts  # noqa: F401  (combine, perpendicular: Perp-Neg's math)

if TYPE_CHECKING:
    from gsdi.priors.base import Prior

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
    if elevation > 60.0:
        return {"overhead": 1.0}, []
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    if abs(azimuth) < 90.0:
        r = 1.0 - abs(azimuth) / 90.0  # 1: the front, 0: the side
        return ({"front": r, "side": 1.0 - r},
                [("front", -_decay(DECAY_FRONT_SIDE, r)), ("side", -_decay(DECAY_SIDE_FRONT, 1.0 - r))])
    r = 2.0 - abs(azimuth) / 90.0  # 1: the side, 0: the back
    return ({"side": r, "back": 1.0 - r},
            [("side", -_decay(DECAY_SIDE_BACK, r)), ("front", -_decay(DECAY_FRONT_BACK, r))])


def perp_neg_text(prior: "Prior", prompt: str, negative: str, azimuths: Tensor, elevations: Tensor) -> "TextCond":
    """TextCond for B cameras (azimuths, elevations [B] degrees) with Perp-Neg's negatives [B, 2, L, D]."""
    B = azimuths.shape[0]
    assert elevations.shape == (B,), (azimuths.shape, elevations.shape)
    words = ("front", "side", "back", "overhead")
    table = dict(zip(words, prior.text_embeddings(view_prompts(prompt, words))))  # each [L, D]
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
