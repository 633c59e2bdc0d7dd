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

    def state(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Both streams' states and torch's global ones (gsplat's densification draws from those)."""
        states = {"rng.host": self.host.get_state(), "rng.device": self.device.get_state(), "rng.torch_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            states["rng.torch_cuda"] = torch.cuda.get_rng_state(device)
        return states

    def load_state(self, states: dict[str, torch.Tensor], device: torch.device) -> None:
        """Put back what `state` gave (a dict holding at least its keys)."""
        self.host.set_state(states["rng.host"])
        self.device.set_state(states["rng.device"])
        torch.set_rng_state(states["rng.torch_cpu"])
        if device.type == "cuda" and "rng.torch_cuda" in states:
            torch.cuda.set_rng_state(states["rng.torch_cuda"], device)
