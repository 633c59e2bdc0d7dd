"""The t schedules of a run (docs/method.md, step 1): annealed, SDI's default, where t falls linearly
from T p_max to T p_min; random, SDS's classic choice, t ~ U{T p_min .. T p_max}. Both are offered
for both methods, so that "annealing helps" can be told apart from "inversion helps".
"""

from __future__ import annotations

import torch

from gsdi.config import GenerateConfig, GuidanceConfig
from gsdi.rng import Rng


def timestep(step: int, total: int, config: GuidanceConfig, num_train_timesteps: int, rng: Rng) -> int:
    """t for this step: annealed (SDI's default) or uniform (SDS's default), per config.t_schedule."""
    if config.resolved_t_schedule == "anneal":
        return t_annealed(step, total, num_train_timesteps, config.p_min, config.p_max)
    return t_uniform(num_train_timesteps, config.p_min, config.p_max, rng.host)


def run_timestep(step: int, config: GenerateConfig, num_train_timesteps: int, rng: Rng) -> int:
    """t for a run's score-distillation step: `timestep` over config.steps, or, in the polish after the
    refinement (RefineConfig.polish_steps), annealed from polish_p_max to polish_p_min over its steps."""
    polish, r = step - config.polish_start, config.refine
    if polish >= 0:
        return t_annealed(polish, r.polish_steps, num_train_timesteps, r.polish_p_min, r.polish_p_max)
    return timestep(step, config.steps, config.guidance, num_train_timesteps, rng)


def t_annealed(step: int, total: int, num_train_timesteps: int, p_min: float, p_max: float) -> int:
    """SDI's schedule: p falls linearly from p_max to p_min over the run; t = int(T p)."""
    p = p_max - (p_max - p_min) * step / max(total, 1)
    return min(int(num_train_timesteps * p), num_train_timesteps - 1)


def t_uniform(num_train_timesteps: int, p_min: float, p_max: float, generator: torch.Generator) -> int:
    """SDS's schedule: t ~ U{int(T p_min) .. int(T p_max)}."""
    lo, hi = int(num_train_timesteps * p_min), int(num_train_timesteps * p_max)
    return min(int(torch.randint(lo, hi + 1, (1,), generator=generator)), num_train_timesteps - 1)
