"""The world critic: a small CNN that sees blur, noise, speckle, haze and missing parts.

The world's analogue of what CLIP-IQA ("a sharp photo" vs "a blurry photo") and an Inception feature
space are for text-to-3D papers. Unlike the recogniser (gsdi/eval/recogniser.py), which is trained to
ignore degradations, the critic is trained on *clean* world renders and degraded copies of them:
- a **quality** head, read as the probability that a view is a sharp, whole world render: its
  target is 1 for a clean render and falls with the strength of each degradation (QUALITY_SCALES:
  exp(-strength / scale), multiplied when several are applied; a removed part counts by the share
  of pixels it changes);
- category, colour and side heads on every image, so that its features also tell objects apart.
Its 256 penultimate features are the space of the yardstick's KID (gsdi/eval/evaluate.py).
Trained by examples/train_critic.py; weights beside this file (`critic.safetensors`, its held-out
figures in `critic.json`).

A second critic sees patterns (`load_critic(patterns=True)`, `pattern_critic.safetensors`): the same
network at 128x128, the world prior's size, trained on renders half of which carry a pattern, with
one more degradation: the pattern averaged into its mean colour (gsdi.world.objects.pattern_averaged,
what a method that averages many differently phased patterns converges to), counted like a removed
part by the share of pixels it changes. Blur at 128 px reaches the patterns (a 4-px stripe keeps
half its contrast at 0.75 px). A pattern's phase scrambled between views leaves each view a clean
render: no single-view critic can see it, and the phase-free pattern measure (gsdi/eval/patterns.py)
is the check there.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsdi.eval import degrade
from gsdi.world.objects import CATEGORIES, PALETTE
from gsdi.eval.recogniser import SIDES, SIZE, conv_trunk

WEIGHTS = Path(__file__).parent / "critic.safetensors"
PATTERN_WEIGHTS = Path(__file__).parent / "pattern_critic.safetensors"

# Quality target exp(-strength / scale) per degradation, and the strengths training draws from.
# Fixed before any generation was scored; the validation table (docs/eval/yardstick/) checks them.
QUALITY_SCALES = {"blur": 1.0, "noise": 0.04, "speckle": 0.01, "haze": 0.15, "part": 0.02, "pattern": 0.01}
TRAIN_RANGES = {"blur": (0.0, 3.0), "noise": (0.0, 0.15), "speckle": (0.0, 0.05), "haze": (0.0, 0.6)}
PART_CHANGE = 0.1  # a pixel counts as changed by a removed part when a channel moves by more than this


class Critic(nn.Module):
    """[B, 3, size, size] in [0, 1] -> features [B, 256] and logits: quality [B], CATEGORIES, PALETTE, SIDES."""

    def __init__(self, width: int = 32, feature_rms: float = 1.0, size: int = SIZE):
        super().__init__()
        self.feature_rms = feature_rms  # RMS of the features over clean renders (critic.json): KID's unit
        self.size = size
        self.trunk = conv_trunk(width, size=size)
        self.heads = nn.ModuleDict({"quality": nn.Linear(256, 1), "category": nn.Linear(256, len(CATEGORIES)),
                                    "colour": nn.Linear(256, len(PALETTE)), "side": nn.Linear(256, len(SIDES))})

    def features(self, images: Tensor) -> Tensor:
        B = images.shape[0]
        assert images.shape == (B, 3, self.size, self.size), images.shape
        return self.trunk(images * 2 - 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        h = self.features(images)
        out = {name: head(h) for name, head in self.heads.items()}
        out["quality"] = out["quality"][:, 0]
        return out


def load_critic(device: torch.device | str = "cpu", patterns: bool = False) -> Critic:
    """The shipped, trained critic (eval mode, no grad); with `patterns`, the 128-px one that has seen patterns."""
    from gsdi.eval.training import load_weights

    weights = PATTERN_WEIGHTS if patterns else WEIGHTS
    return load_weights(weights.parent, weights.stem,
                        lambda card: Critic(card.get("width", 32), card.get("feature_rms", 1.0), card.get("size", SIZE)),
                        "examples/train_critic.py" + (" --patterns" if patterns else ""), device)


def quality_target(kind: str, strength: Tensor) -> Tensor:
    """The quality a degradation of `strength` [B] leaves: exp(-strength / QUALITY_SCALES[kind])."""
    return torch.exp(-strength / QUALITY_SCALES[kind])


def changed_share(clean: Tensor, other: Tensor) -> Tensor:
    """Share of pixels [B] where two images [B, 3, H, W] differ by more than PART_CHANGE in a channel."""
    return ((clean - other).abs().amax(1) > PART_CHANGE).flatten(1).float().mean(1)


def training_batch(clean: Tensor, part_removed: Tensor, generator: torch.Generator,
                   averaged: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Degraded copies of clean renders [B, 3, S, S] and their quality targets [B].

    Each image is, at random, left clean (1 in 5), has its part removed (the matching render of
    `part_removed`, 1 in 5), and then gets 0, 1 or 2 of the image degradations at random strengths.
    With `averaged` (the renders with their pattern averaged into its mean colour), 1 in 4 of the
    images whose part stays take that render instead, graded by the share of pixels it changes (a
    plain render's is itself: no change, no loss of quality).
    """
    B, device = clean.shape[0], clean.device
    u = lambda: torch.rand(B, generator=generator).to(device)  # noqa: E731
    images, quality = clean.clone(), torch.ones(B, device=device)
    keep_clean = u() < 0.2
    part = (u() < 0.25) & ~keep_clean
    images[part] = part_removed[part]
    quality[part] = quality_target("part", changed_share(clean[part], part_removed[part]))
    flat = torch.zeros_like(part)
    if averaged is not None:
        flat = (u() < 0.25) & ~keep_clean & ~part
        images[flat] = averaged[flat]
        quality[flat] = quality_target("pattern", changed_share(clean[flat], averaged[flat]))
    count = torch.randint(0, 3, (B,), generator=generator).to(device)
    count[keep_clean] = 0
    count[~keep_clean & ~part & ~flat & (count == 0)] = 1  # a degraded image has at least one degradation
    for round_ in range(2):
        kinds = torch.randint(len(degrade.KINDS), (B,), generator=generator).to(device)
        for k, kind in enumerate(degrade.KINDS):
            sel = (count > round_) & (kinds == k)
            if not sel.any():
                continue
            lo, hi = TRAIN_RANGES[kind]
            strength = lo + (hi - lo) * u()[sel]
            images[sel] = degrade.apply(kind, images[sel], strength, generator)
            quality[sel] = quality[sel] * quality_target(kind, strength)
    return images.clamp(0, 1), quality


def quality_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy of the quality logit against a soft target in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, target)
