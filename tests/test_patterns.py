"""The phase-free pattern measure: energy of the pattern signal at the patterns' scale, inside the object."""

from __future__ import annotations

import torch

from gsdi.eval import degrade
from gsdi.eval.patterns import band_energy, pattern_contrast, pattern_signal
from gsdi.world import parse
from gsdi.world.objects import PALETTE


def striped_square(phase: float, period: float = 8.0, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """A blue square on white with yellow stripes a third of a period wide, anti-aliased (16 samples a
    pixel across the stripes): views [1, S, S, 3], alpha [1, S, S, 1]."""
    y = torch.arange(size, dtype=torch.float32)[:, None, None] + (torch.arange(16) + 0.5) / 16
    stripe = (((y + phase) / period).frac() < 1 / 3).float().mean(-1).expand(size, size)  # coverage of each pixel
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[32:96, 32:96] = True
    blue, yellow = torch.tensor(PALETTE["blue"]), torch.tensor(PALETTE["yellow"])
    rgb = torch.lerp(blue, yellow, stripe[..., None])
    rgb = torch.where(inside[..., None], rgb, torch.ones(3))
    return rgb[None], inside[None, ..., None].float()


def test_signal_is_zero_on_the_object_colour_and_one_on_the_pattern_colour():
    views = torch.stack([torch.tensor(PALETTE["blue"]), torch.tensor(PALETTE["yellow"])]).view(1, 1, 2, 3)
    assert torch.allclose(pattern_signal(views, "blue", "yellow"), torch.tensor([[[0.0, 1.0]]]), atol=1e-6)


def test_energy_ignores_phase_and_falls_with_blur_and_averaging():
    """Shifting the stripes changes the energy only through the stripes cut by the mask's edge (within 10%)."""
    rgb, alpha = striped_square(0.0)
    energy = float(band_energy(rgb, alpha, "blue", "yellow")[0])
    shifted = [float(band_energy(*striped_square(p), "blue", "yellow")[0]) for p in (1.3, 2.7, 5.1)]
    assert energy > 0.01 and all(abs(e / energy - 1) < 0.1 for e in shifted), (energy, shifted)
    blurred = [float(band_energy(degrade.blur(rgb.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1), alpha, "blue", "yellow")[0])
               for s in (0.5, 1.0, 2.0)]
    assert energy > blurred[0] > blurred[1] > blurred[2], (energy, blurred)
    mean = torch.where(alpha > 0, rgb[alpha[..., 0] > 0].mean(0), rgb)  # the stripes averaged into the square's mean colour
    # what is left is the square's edge against white, reaching past the eroded mask (0.3% here)
    assert float(band_energy(mean, alpha, "blue", "yellow")[0]) < 0.01 * energy


def test_zoom_moves_the_band_with_the_pattern():
    """Stripes shown twice as large read as the world's own stripes when the band follows the zoom
    (within 10%), and lose about half of their energy in the world's band (at 128 px a period of 16 px)."""
    world = float(band_energy(*striped_square(0.0, period=8.0), "blue", "yellow")[0])
    larger = striped_square(0.0, period=16.0)
    assert abs(float(band_energy(*larger, "blue", "yellow", zoom=2.0)[0]) / world - 1) < 0.1
    assert float(band_energy(*larger, "blue", "yellow")[0]) < 0.6 * world


def test_contrast_against_the_world_is_one_for_the_world_itself():
    spec = parse("a blue car with yellow stripes")
    rgb, alpha = striped_square(0.0)
    world_rgb = torch.cat([striped_square(p)[0] for p in (0.0, 4.0)])  # two instances, the same view
    world_alpha = torch.cat([alpha, alpha])
    assert abs(pattern_contrast(rgb, alpha, spec, world_rgb, world_alpha) - 1) < 0.05
