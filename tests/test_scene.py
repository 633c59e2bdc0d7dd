from __future__ import annotations

import math

import torch

from gsdi.config import OptimConfig, SceneConfig
from gsdi.scene import activated, init_params, make_optimizers, means_lr, sh0_to_rgb, update_learning_rates


def test_init_is_a_grey_ball_of_small_gaussians():
    config = SceneConfig(num_points=2000, init_radius=0.4, init_scale=0.03, init_opacity=0.2, sh_degree=2)
    params = init_params(config, torch.Generator().manual_seed(0))
    g = activated(params)
    assert g.means.norm(dim=-1).max() <= 0.4 + 1e-6 and g.means.norm(dim=-1).mean() > 0.25  # fills the ball
    assert torch.allclose(g.scales, torch.full((2000, 3), 0.03))
    assert torch.allclose(g.opacities, torch.full((2000,), 0.2))
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(2000))
    assert torch.allclose(sh0_to_rgb(params["sh0"]), torch.full((2000, 1, 3), 0.5))
    assert g.colors.shape == (2000, 9, 3)


def test_one_adam_per_parameter_and_decaying_means_lr():
    params = init_params(SceneConfig(num_points=10), torch.Generator().manual_seed(0))
    config = OptimConfig()
    optimizers = make_optimizers(params, config)
    assert set(optimizers) == set(params) and all(len(o.param_groups) == 1 for o in optimizers.values())
    assert math.isclose(means_lr(0, 100, config), config.means_lr)
    assert math.isclose(means_lr(99, 100, config), config.means_lr_final)
    update_learning_rates(optimizers, 50, 100, config)
    lr = optimizers["means"].param_groups[0]["lr"]
    assert config.means_lr_final < lr < config.means_lr
