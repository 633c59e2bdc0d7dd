from __future__ import annotations

import torch

from gsdi.cameras import sample_orbits
from gsdi.config import DensifyConfig, OptimConfig, SceneConfig
from gsdi.densify import Densifier
from gsdi.render import render
from gsdi.scene import init_params, make_optimizers


def run(config: DensifyConfig, steps: int, num_points=300):
    g = torch.Generator().manual_seed(0)
    params = init_params(SceneConfig(num_points=num_points), g)
    optimizers = make_optimizers(params, OptimConfig())
    densifier = Densifier(config, steps, 0.5, params, optimizers)
    target = torch.rand(1, 32, 32, 3, generator=g)
    opacities = []
    for step in range(steps):
        out = render(params, sample_orbits(1, 32, 32, g), (1.0, 1.0, 1.0))
        densifier.pre_backward(params, optimizers, step, out.meta)
        ((out.rgb - target) ** 2).mean().backward()
        for o in optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        densifier.post_backward(params, optimizers, step, out.meta)
        opacities.append(torch.sigmoid(params["opacities"]).max().item())
    return params, opacities


def test_grows_resets_opacity_and_respects_the_cap():
    config = DensifyConfig(grow_quantile=0.0, refine_start_iter=0, refine_every=3, reset_every=5,
                           refine_stop_iter_fraction=1.0, max_gaussians=450)
    params, opacities = run(config, 8)
    assert params["means"].shape[0] == 450  # grew past the cap and was cut back to it
    assert opacities[5] <= 2 * config.prune_opa + 1e-6 < opacities[4]  # our opacity reset at step 5
    assert all(len(params[k]) == 450 for k in params)


def test_disabled_changes_nothing():
    params, _ = run(DensifyConfig(enabled=False, grow_quantile=0.0, refine_start_iter=0, refine_every=2), 5)
    assert params["means"].shape[0] == 300


def test_grows_the_top_quantile_of_gradients():
    """Whatever the gradient scale, one refinement grows about (1 - grow_quantile) of the seen Gaussians."""
    config = DensifyConfig(grow_quantile=0.8, refine_start_iter=0, refine_every=4, reset_every=1000,
                           refine_stop_iter_fraction=1.0, prune_opa=0.0)
    params, _ = run(config, 5, num_points=1000)
    grown = params["means"].shape[0] - 1000
    assert 100 <= grown <= 300, grown


def test_clean_removes_faint_gaussians_after_densification_and_at_the_end():
    config = DensifyConfig(enabled=False, refine_every=4, clean_opa=0.05, clean_start=0.5)
    g = torch.Generator().manual_seed(0)
    params = init_params(SceneConfig(num_points=200), g)
    with torch.no_grad():
        params["opacities"][:50] = -5.0  # opacity 0.007: faint
    optimizers = make_optimizers(params, OptimConfig())
    densifier = Densifier(config, 10, 0.5, params, optimizers)
    densifier.clean(params, optimizers, step=3)  # before clean_start: nothing
    assert params["means"].shape[0] == 200
    densifier.clean(params, optimizers, step=6)  # not a refine step: nothing
    assert params["means"].shape[0] == 200
    densifier.clean(params, optimizers, step=9)  # the last step
    assert params["means"].shape[0] == 150 and torch.sigmoid(params["opacities"]).min() >= 0.05
    assert all(len(params[k]) == len(params["means"]) for k in params)


def test_a_generation_ends_without_faint_gaussians(tmp_path):
    """The haze: no Gaussian fainter than densify.clean_opa is left in the written scene."""
    import gsdi
    from gsdi.formats import read_ply

    result = gsdi.generate("a red castle", out=tmp_path / "castle", steps=12, progress=False, device="cpu", turntable_frames=0,
                           **{"densify.clean_opa": 0.095, "scene.num_points": 300})
    opacities = torch.sigmoid(read_ply(result.ply)["opacities"])
    assert 0 < opacities.shape[0] < 300 and opacities.min() >= 0.095  # the initial 0.1 drifts both ways
