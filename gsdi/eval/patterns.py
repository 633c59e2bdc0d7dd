"""A phase-free pattern measure: how much of a prompt's pattern a set of views shows, against the world.

KID and the critic see a view whole; a method that averages a pattern into its mean colour, or blurs
it, can still look like a clean object of about the right colour. This measure looks at the pattern
alone and ignores where its stripes or dots lie (their phase differs between instances of a prompt
and, for a method that does not keep one trajectory, between views):

1. each pixel's pattern signal: its colour projected on the axis from the object's colour to the
   pattern's colour, (x - c0) . (c1 - c0) / |c1 - c0|^2 (0 on the object's colour, 1 on the
   pattern's);
2. the signal band-passed at the patterns' scale (a difference of Gaussians, BAND pixels at 128 px,
   scaled with the view size), which removes shading and the object's mean colour;
3. its mean square inside the object (alpha > 0.5, eroded by ERODE pixels so that silhouettes and
   the white ground do not count);
4. the ratio of that energy to the same energy of world renders of the prompt (from the same cameras
   where the scene has cameras).

1 means as much pattern contrast at the pattern's scale as the world has, 0 the pattern averaged
away. Phase-free: the mean square of a band-passed signal does not change when the pattern shifts.
It does not say the pattern is the right kind (stripes for dots): the pattern recogniser
(`gsdi/eval/recogniser.py`) reads that. Object edges and shading steps inside the mask add a floor
that plain renders of the prompt's colour show too; examples/validate_pattern_measure.py measures
it, with blurred, averaged and phase-scrambled patterns, before any method is scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gsdi.eval import degrade
from gsdi.world.language import Prompt
from gsdi.world.objects import PALETTE

BAND = (0.7, 2.5)  # the difference of Gaussians' sigmas, pixels at 128 px
ERODE = 2  # pixels at 128 px taken off the object's mask


def pattern_signal(views: Tensor, colour: str, pattern_colour: str) -> Tensor:
    """Views [N, H, W, 3] in [0, 1] -> the pattern signal [N, H, W]: 0 at the object's colour, 1 at the pattern's."""
    assert views.dim() == 4 and views.shape[-1] == 3, views.shape
    c0, c1 = (torch.tensor(PALETTE[c], dtype=views.dtype, device=views.device) for c in (colour, pattern_colour))
    d = c1 - c0
    return ((views - c0) @ d) / (d @ d)


def band_energy(views: Tensor, alpha: Tensor, colour: str, pattern_colour: str, zoom: float = 1.0) -> Tensor:
    """Mean square of the band-passed pattern signal inside each view's eroded object mask: views
    [N, H, W, 3], alpha [N, H, W, 1] -> [N] (0 where a view has no object pixels left). The band
    follows the image size (BAND is in pixels at 128 px) and `zoom`, for views that show the
    world's objects zoom times larger than the world's training orbits do."""
    N, H, W, _ = views.shape
    assert alpha.shape == (N, H, W, 1), (views.shape, alpha.shape)
    scale = H / 128 * zoom
    s = pattern_signal(views, colour, pattern_colour)[:, None].expand(N, 3, H, W)  # degrade.blur takes 3 channels
    band = (degrade.blur(s, BAND[0] * scale) - degrade.blur(s, BAND[1] * scale))[:, 0]
    r = max(1, round(ERODE * scale))
    mask = -F.max_pool2d(-(alpha[..., 0] > 0.5).float()[:, None], 2 * r + 1, 1, r)[:, 0]  # erosion
    return (band.square() * mask).sum((1, 2)) / mask.sum((1, 2)).clamp_min(1)


def pattern_contrast(views: Tensor, alpha: Tensor, spec: Prompt, world_views: Tensor, world_alpha: Tensor) -> float:
    """The views' mean pattern energy over the world's: views [N, H, W, 3] and alpha [N, H, W, 1] of a
    scene; world renders of the prompt [K, H, W, 3] and [K, H, W, 1] (from the scene's cameras where
    there are cameras: eval_world.py passes the instances seen from the same views)."""
    assert spec.pattern is not None and spec.colour is not None, f"needs a coloured, patterned prompt: {spec}"
    assert world_views.shape[1:] == views.shape[1:] and world_alpha.shape[1:] == alpha.shape[1:], (views.shape, world_views.shape)
    mine = band_energy(views, alpha, spec.colour, spec.pattern_colour).mean()
    world = band_energy(world_views, world_alpha, spec.colour, spec.pattern_colour).mean()
    return float(mine / world.clamp_min(1e-12))
