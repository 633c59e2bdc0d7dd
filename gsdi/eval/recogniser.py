"""A recogniser of the world that is not the prior: category, colour and the side facing the camera.

What CLIP R-precision is for text-to-3D papers, for gsdi's world: a small CNN that reads a 64x64
render (RGB in [0, 1], white background) and names the object's category, its colour word and which
side faces the camera (front, side or back: the view word of the camera's azimuth). It is trained
by examples/train_recogniser.py on world renders from the prior's training orbits, blurred, hazed
and noised so that splat renders read like them; the weights ship beside this file
(`recogniser.safetensors`, with its held-out accuracy in `recogniser.json`).

It is a closed-set classifier, like CLIP R-precision: it always names one of the ten categories.
A plain disc on white reads as a tree (a tree's crown is a ball) and a large red disc as a castle,
so a recognised share says a render is nearer that category than any other, not that it is good.

A second recogniser reads patterns too (`load_recogniser(patterns=True)`): the same network at
128x128, the size the world prior's images have, with two more heads, the pattern (plain, stripes,
dots, checks) and its colour. It ships as `pattern_recogniser.safetensors` with its card.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsdi.prompts import VIEW_WORDS
from gsdi.world.objects import CATEGORIES, PALETTE
from gsdi.world.shapes import PATTERNS

SIDES = VIEW_WORDS[:3]  # front, side, back (the world's training orbits never look from overhead)
SIZE = 64  # the plain recogniser's and the critic's input
PATTERN_SIZE = 128  # the pattern recogniser's: the world prior's image size
PATTERN_NAMES = ("plain", *PATTERNS)
# The pattern recogniser's largest training blur (px at 128): a 4-px stripe keeps half its contrast at
# 0.75 px and 6% at 1.5 px, where its label is no longer in the image.
BLUR = 1.5  # the plain recogniser's largest training blur (px at 64)
PATTERN_BLUR = 0.75
WEIGHTS = Path(__file__).parent / "recogniser.safetensors"
PATTERN_WEIGHTS = Path(__file__).parent / "pattern_recogniser.safetensors"


def conv_trunk(width: int, features: int = 256, size: int = SIZE) -> nn.Sequential:
    """[B, 3, size, size] in [-1, 1] -> [B, features]: stages of conv + strided conv down to 4 px
    (four stages at 64 px, five at 128)."""
    stages = {64: (1, 2, 4, 4), 128: (1, 2, 4, 4, 4)}[size]
    layers, channels = [], 3
    for out in (m * width for m in stages):  # each stage halves the side
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU(),
                   nn.Conv2d(out, out, 3, padding=1, stride=2), nn.SiLU()]
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 16, features), nn.SiLU())


class Recogniser(nn.Module):
    """[B, 3, size, size] in [0, 1] -> logits over CATEGORIES [B, 10], PALETTE [B, 10] and SIDES [B, 3];
    with `patterns`, also over PATTERN_NAMES [B, 4] and the pattern's colour in PALETTE [B, 10]
    (meaningful only where the pattern is not plain)."""

    def __init__(self, width: int = 32, size: int = SIZE, patterns: bool = False):
        super().__init__()
        self.size = size
        self.features = conv_trunk(width, size=size)
        heads = {"category": len(CATEGORIES), "colour": len(PALETTE), "side": len(SIDES)}
        if patterns:
            heads |= {"pattern": len(PATTERN_NAMES), "pattern_colour": len(PALETTE)}
        self.heads = nn.ModuleDict({name: nn.Linear(256, n) for name, n in heads.items()})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        B = images.shape[0]
        assert images.shape == (B, 3, self.size, self.size), images.shape
        h = self.features(images * 2 - 1)
        return {name: head(h) for name, head in self.heads.items()}


def load_recogniser(device: torch.device | str = "cpu", patterns: bool = False, folder: Path | str | None = None) -> Recogniser:
    """The shipped, trained recogniser (eval mode, no grad); with `patterns`, the 128-px one that also
    reads patterns; `folder`: the same file from another folder (a train_recogniser.py --out)."""
    from gsdi.eval.training import load_weights

    weights = PATTERN_WEIGHTS if patterns else WEIGHTS
    weights = weights if folder is None else Path(folder) / weights.name
    return load_weights(weights.parent, weights.stem,
                        lambda card: Recogniser(card.get("width", 32), card.get("size", SIZE), card.get("patterns", False)),
                        "examples/train_recogniser.py" + (" --patterns" if patterns else ""), device)


def to_input(images: Tensor, size: int = SIZE) -> Tensor:
    """Views [B, H, W, 3] in [0, 1] (any size) -> [B, 3, size, size], what the world's networks read."""
    x = images.permute(0, 3, 1, 2).float().clamp(0, 1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear")
    return x


@torch.no_grad()
def recognise(model: Recogniser, images: Tensor) -> dict[str, list[str]]:
    """Images [B, H, W, 3] in [0, 1] (any size: resized to the model's) -> the names of category,
    colour, side (and pattern, pattern_colour where the model reads them)."""
    logits = model(to_input(images, model.size).to(next(model.parameters()).device))
    names = {"category": list(CATEGORIES), "colour": list(PALETTE), "side": list(SIDES),
             "pattern": list(PATTERN_NAMES), "pattern_colour": list(PALETTE)}
    return {key: [names[key][i] for i in logits[key].argmax(1).tolist()] for key in logits}


def mirror_and_shift(images: Tensor, generator: torch.Generator, max_shift: int) -> tuple[Tensor, Tensor]:
    """Training augmentation [B, 3, S, S] in [0, 1] -> (images, mirrored [B] bool): half the images
    mirrored left to right, each moved by up to `max_shift` px along each axis, the white ground
    filling in. A reader that has learned where its training renders' pixels lie gains nothing from it.
    Category, colour and pattern labels stay true; the side does not quite (the light is fixed in world
    space, so a mirrored render is lit from the other side), so `mirrored` says whose to leave out."""
    B, S = images.shape[0], images.shape[-1]
    assert images.dim() == 4 and images.shape[1] == 3 and images.shape[2] == S, images.shape
    mirrored = (torch.rand(B, generator=generator) < 0.5).to(images.device)[:, None, None, None]
    out = torch.where(mirrored, images.flip(-1), images)
    m = max_shift
    padded = F.pad(out, (m, m, m, m), value=1.0)
    shifts = torch.randint(-m, m + 1, (B, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, m - dy:m - dy + S, m - dx:m - dx + S] for i, (dy, dx) in enumerate(shifts)]), mirrored.view(B)


def degrade(images: Tensor, generator: torch.Generator, max_blur: float = BLUR) -> Tensor:
    """Training augmentation [B, 3, S, S] in [0, 1]: each image at random blurred (Gaussian, sigma
    0.3 px up to `max_blur`; PATTERN_BLUR for the pattern recogniser), hazed (blended towards white by up to 0.3), its brightness scaled by 0.85-1.15 and
    noised (std up to 0.03): what splat renders look like next to the world's crisp ones."""
    B, device = images.shape[0], images.device

    def u(lo: float, hi: float) -> Tensor:
        return (lo + (hi - lo) * torch.rand(B, generator=generator)).to(device)[:, None, None, None]

    def on(p: float) -> Tensor:
        return (torch.rand(B, generator=generator) < p).to(device, images.dtype)[:, None, None, None]

    sigma = u(0.3, max_blur)
    r = torch.arange(-3, 4, device=device, dtype=images.dtype)
    kernel = torch.exp(-(r[None] ** 2) / (2 * sigma.view(B, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # [B, 7], one separable kernel per image
    x = images.reshape(1, B * 3, *images.shape[2:])
    kx = kernel.repeat_interleave(3, 0)
    blurred = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), kx[:, None, None, :], groups=B * 3)
    blurred = F.conv2d(F.pad(blurred, (0, 0, 3, 3), mode="replicate"), kx[:, None, :, None], groups=B * 3)
    out = torch.lerp(images, blurred.reshape_as(images), on(0.5))
    out = torch.lerp(out, torch.ones_like(out), on(0.5) * u(0.0, 0.3))
    out = out * torch.lerp(torch.ones_like(sigma), u(0.85, 1.15), on(0.5))
    out = out + on(0.5) * u(0.0, 0.03) * torch.randn(out.shape, generator=generator).to(device)
    return out.clamp(0, 1)
