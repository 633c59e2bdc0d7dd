"""Densify and prune with gsplat's DefaultStrategy (pure torch, so it runs on CPU too), plus a cap.

Two changes around the strategy, not inside it: its gradient threshold is set before each
refinement to a quantile of the accumulated image-space gradients (their scale depends on the
prior), and since gsplat 1.5.3's own opacity reset never fires (`step % n == 0 & step > 0` parses as
a chained comparison), we call `reset_opa` ourselves on the configured schedule.

Haze: faint Gaussians around the object are invisible to the prior on a white background, so no
guidance removes them. From `clean_start` on, `opacity_penalty` adds opacity_l1 x mean opacity to
the loss and `clean` removes the ones fainter than `clean_opa` (docs/research-log.md). Nothing is
densified or removed from `total_steps` on (the run's score-distillation steps), in the refinement
and its polish.
"""

from __future__ import annotations

from typing import Any

import torch

from gsdi.config import DensifyConfig
from gsdi.render import PACKED


class Densifier:
    def __init__(self, config: DensifyConfig, total_steps: int, scene_scale: float,
                 params: torch.nn.ParameterDict, optimizers: dict[str, torch.optim.Optimizer]):
        from gsplat.strategy import DefaultStrategy

        self.config, self.total = config, total_steps
        self.refine_stop = int(config.refine_stop_iter_fraction * total_steps)
        self.clean_from = int(config.clean_start * total_steps)  # first step of the haze removal
        self.strategy = DefaultStrategy(
            prune_opa=config.prune_opa,
            grow_scale3d=config.grow_scale3d,
            prune_scale3d=config.prune_scale3d,
            refine_start_iter=config.refine_start_iter,
            refine_stop_iter=self.refine_stop,
            refine_every=config.refine_every,
            reset_every=config.reset_every,
        )
        self.strategy.check_sanity(params, optimizers)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors as `densify.{key}`, JSON-able scalars) of the strategy's state and its growth threshold."""
        tensors = {f"densify.{k}": v for k, v in self.state.items() if torch.is_tensor(v)}
        scalars = {k: v for k, v in self.state.items() if not torch.is_tensor(v)}
        return tensors, {"densify_scalars": scalars, "grow_grad2d": self.strategy.grow_grad2d}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device) -> None:
        """Put `state_dict`'s halves (within larger dicts) back."""
        self.state.update(meta["densify_scalars"])
        self.state.update({k[len("densify."):]: v.to(device) for k, v in tensors.items() if k.startswith("densify.")})
        self.strategy.grow_grad2d = meta["grow_grad2d"]

    def pre_backward(self, params, optimizers, step: int, meta: dict) -> None:
        if self.config.enabled and step < self.total:
            self.strategy.step_pre_backward(params, optimizers, self.state, step, meta)

    def post_backward(self, params, optimizers, step: int, meta: dict) -> None:
        if not self.config.enabled or step >= self.total:
            return
        from gsplat.strategy.ops import remove, reset_opa

        if self._refines(step) and self.state["count"] is not None:
            seen = self.state["count"] > 0
            if seen.any():
                mean_grad = self.state["grad2d"][seen] / self.state["count"][seen]
                self.strategy.grow_grad2d = float(torch.quantile(mean_grad, self.config.grow_quantile))
        self.strategy.step_post_backward(params, optimizers, self.state, step, meta, packed=PACKED)
        if 0 < step < self.refine_stop and step % self.config.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=self.state, value=self.config.prune_opa * 2.0)
        excess = params["means"].shape[0] - self.config.max_gaussians
        if excess > 0:  # keep the most opaque max_gaussians
            weakest = torch.topk(params["opacities"].detach(), excess, largest=False).indices
            mask = torch.zeros(params["means"].shape[0], dtype=torch.bool, device=params["means"].device)
            mask[weakest] = True
            remove(params=params, optimizers=optimizers, state=self.state, mask=mask)

    def opacity_penalty(self, params, step: int) -> torch.Tensor | float:
        """opacity_l1 * mean opacity from clean_start on (0 before): the Gaussians the prior does not need fade."""
        c = self.config
        if c.opacity_l1 <= 0 or step < self.clean_from:
            return 0.0
        return c.opacity_l1 * torch.sigmoid(params["opacities"]).mean()

    def clean(self, params, optimizers, step: int) -> None:
        """From clean_start on: remove Gaussians fainter than clean_opa every refine_every steps and
        after the last step (`step` counts from 0)."""
        c = self.config
        if c.clean_opa <= 0 or not self.clean_from <= step < self.total:
            return
        if (step + 1) % c.refine_every and step + 1 != self.total:
            return
        from gsplat.strategy.ops import remove

        faint = torch.sigmoid(params["opacities"].detach()) < c.clean_opa
        if faint.any() and not faint.all():
            remove(params=params, optimizers=optimizers, state=self.state, mask=faint)

    def _refines(self, step: int) -> bool:
        """Whether DefaultStrategy grows and prunes at this step (its own condition)."""
        s = self.strategy
        return s.refine_start_iter < step < s.refine_stop_iter and step % s.refine_every == 0
