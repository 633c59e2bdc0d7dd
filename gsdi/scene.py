"""Gaussian parameters as gsplat's trainer keeps them, their initialisation and their optimizers.

Stored (raw) parameters, all [N, ...]: means [N,3], scales [N,3] (log), quats [N,4] (wxyz, not
normalised), opacities [N] (logit), sh0 [N,1,3], shN [N,K-1,3] with K = (sh_degree+1)^2.
`activated()` gives what a rasterizer takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gsdi.config import GenerateConfig, OptimConfig, SceneConfig
from gsdi.kernels.projection import SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def init_params(config: SceneConfig, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.nn.ParameterDict:
    """N random Gaussians uniform in a ball of `init_radius`: isotropic, grey, `init_opacity`."""
    N, K = config.num_points, (config.sh_degree + 1) ** 2
    direction = torch.randn(N, 3, generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    radius = config.init_radius * torch.rand(N, 1, generator=generator) ** (1.0 / 3.0)
    quats = torch.randn(N, 4, generator=generator)
    params = {
        "means": direction * radius,
        "scales": torch.full((N, 3), math.log(config.init_scale)),
        "quats": quats / quats.norm(dim=-1, keepdim=True),
        "opacities": torch.full((N,), math.log(config.init_opacity / (1.0 - config.init_opacity))),
        "sh0": torch.zeros(N, 1, 3),  # grey: rgb 0.5
        "shN": torch.zeros(N, K - 1, 3),
    }
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(device)) for k, v in params.items()})


@dataclass
class Activated:
    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] unit
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, K, 3] SH coefficients


def activated(params: torch.nn.ParameterDict) -> Activated:
    return Activated(
        means=params["means"],
        quats=params["quats"] / params["quats"].norm(dim=-1, keepdim=True),
        scales=torch.exp(params["scales"]),
        opacities=torch.sigmoid(params["opacities"]),
        colors=torch.cat([params["sh0"], params["shN"]], dim=1),
    )


def sh_degree_of(params: torch.nn.ParameterDict) -> int:
    return int(round(math.sqrt(1 + params["shN"].shape[1]))) - 1


def make_optimizers(params: torch.nn.ParameterDict, config: OptimConfig, lr_scale: float = 1.0) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter with one param group each (what gsplat's strategies expect), at the
    configured learning rates times config.rate_scale and `lr_scale` (the refinement's)."""
    lrs = {
        "means": config.means_lr,
        "scales": config.scales_lr,
        "quats": config.quats_lr,
        "opacities": config.opacities_lr,
        "sh0": config.sh0_lr,
        "shN": config.shN_lr,
    }
    return {
        name: torch.optim.Adam([{"params": params[name], "lr": lrs[name] * config.rate_scale * lr_scale, "name": name}], eps=1e-15)
        for name in params
    }


def optimizer_tensors(optimizers: dict[str, torch.optim.Adam]) -> dict[str, Tensor]:
    """Each Adam's moments and step count, as `optim.{name}.{key}` tensors (a checkpoint's)."""
    tensors = {}
    for name, optimizer in optimizers.items():
        (param,) = optimizer.param_groups[0]["params"]
        tensors.update({f"optim.{name}.{key}": torch.as_tensor(value) for key, value in optimizer.state.get(param, {}).items()})
    return tensors


def load_optimizer_tensors(optimizers: dict[str, torch.optim.Adam], tensors: dict[str, Tensor], device) -> None:
    """Put `optimizer_tensors`' output (within a larger dict) back into optimizers of the same params."""
    for name, optimizer in optimizers.items():
        (param,) = optimizer.param_groups[0]["params"]
        prefix = f"optim.{name}."
        state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        if state:
            optimizer.state[param] = {k: (v if k == "step" else v.to(device)) for k, v in state.items()}


def means_lr(step: int, total: int, config: OptimConfig) -> float:
    """Exponential decay from means_lr to means_lr_final over the run (3DGS's position schedule), times rate_scale."""
    progress = min(max(step / max(total - 1, 1), 0.0), 1.0)
    return config.rate_scale * math.exp((1 - progress) * math.log(config.means_lr) + progress * math.log(config.means_lr_final))


def update_learning_rates(optimizers: dict[str, torch.optim.Adam], step: int, total: int, config: OptimConfig) -> None:
    for group in optimizers["means"].param_groups:
        group["lr"] = means_lr(step, total, config)


def update_run_learning_rates(optimizers: dict[str, torch.optim.Adam], step: int, config: GenerateConfig) -> None:
    """The means' rate after `step` steps of a run: decayed over its score-distillation steps, then anew
    over the polish after the refinement (RefineConfig.polish_steps; the refinement's rates are fixed)."""
    polish = step - config.polish_start
    if polish <= 0:
        update_learning_rates(optimizers, step, config.steps, config.optim)
    else:
        update_learning_rates(optimizers, polish, config.refine.polish_steps, config.optim)
