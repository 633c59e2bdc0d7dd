"""Seeded random streams of a generation: one on the host for scalars (t, delta, cameras, the initial
cloud), one on the device for noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rng:
    host: torch.Generator
    device: torch.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device | str = "cpu") -> "Rng":
        return cls(torch.Generator().manual_seed(seed), torch.Generator(device=device).manual_seed(seed + 1))
