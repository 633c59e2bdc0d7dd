from __future__ import annotations

import json

import pytest

from gsdi.config import GenerateConfig, make_config
from gsdi.presets import PRESETS
from gsdi.errors import GsdiError


def test_presets_and_overrides():
    config = make_config("a castle", "preview", steps=12, **{"guidance.method": "sds"})
    assert config.steps == 12 and config.guidance.method == "sds"
    assert config.guidance.inversion_steps == GenerateConfig().guidance.inversion_steps
    assert make_config("a castle", "long").steps == PRESETS["long"]["steps"] == 1500
    # Perp-Neg: off for the embedded prior, on for Stable Diffusion unless asked otherwise
    assert not make_config("a castle").guidance.perp_neg
    assert make_config("a castle", prior="some/sd-model").guidance.perp_neg
    assert not make_config("a castle", prior="some/sd-model", **{"guidance.perp_neg": False}).guidance.perp_neg
    # An option left out (None, as the CLI passes it) keeps the preset's value.
    assert make_config("a castle", "preview", steps=None).steps == PRESETS["preview"]["steps"] == 300
    assert make_config("a castle", steps=None).steps == GenerateConfig().steps == 1000


def test_the_dataclass_defaults_are_what_gsdi_generate_runs():
    """GenerateConfig() is the default preset; make_config only resolves `auto` (SDS, annealed t, on the
    embedded prior) and Perp-Neg (off there)."""
    default = GenerateConfig(prompt="a castle")
    resolved = make_config("a castle")
    assert PRESETS["default"] == {}
    assert default.guidance.method == "auto" and resolved.guidance.method == "sds"
    assert resolved.guidance.t_schedule == "anneal" and not resolved.guidance.perp_neg
    default.guidance.method, default.guidance.t_schedule = "sds", "anneal"
    assert resolved == default


def test_json_round_trip():
    config = make_config("a castle", "preview", seed=3, **{"camera.radius_range": [1.0, 2.5]})
    back = GenerateConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.camera.radius_range == (1.0, 2.5)


@pytest.mark.parametrize("text", ["30,50", "[30, 50]", "(30,50)"])
def test_a_range_is_set_from_the_command_line(text):
    """--set hands a range over as text: `--set camera.fov_range=30,50`."""
    assert make_config("a castle", **{"camera.fov_range": text}).camera.fov_range == (30.0, 50.0)


def test_the_world_prior_frames_its_views_as_it_was_trained():
    """--prior world draws its random views 1.5x closer (the field of view its renders were made at);
    the pixel prior keeps the world's own framing, and --set still chooses."""
    import math

    from gsdi.config import ORBIT_FOV, WORLD_ZOOM

    lo, hi = make_config("a blue car with yellow stripes", prior="world").camera.fov_range
    assert WORLD_ZOOM == 1.5 and (round(lo, 2), round(hi, 2)) == (27.28, 50.05)
    assert math.tan(math.radians(ORBIT_FOV[1] / 2)) / math.tan(math.radians(hi / 2)) == pytest.approx(WORLD_ZOOM)
    assert make_config("a blue car", prior="embedded").camera.fov_range == ORBIT_FOV
    assert make_config("a blue car", prior="world", **{"camera.fov_range": "30,50"}).camera.fov_range == (30.0, 50.0)


@pytest.mark.parametrize("prompt, preset, overrides, message", [
    ("   ", "default", {}, "prompt is empty"),
    ("a castle", "fast", {}, "unknown preset"),
    ("a castle", "default", {"steps": 0}, "--steps"),
    ("a castle", "default", {"seed": -1}, "--seed"),
    ("a castle", "default", {"guidance.method": "dds"}, "--guidance"),
    ("a castle", "default", {"device": "tpu"}, "--device"),
    ("a castle", "default", {"nonsense": 1}, "unknown config key"),
    ("a castle", "default", {"steps": "many"}, "bad value"),
    ("a castle", "default", {"camera.fov_range": "30"}, "bad value"),
    ("a castle", "default", {"camera.fov_range": "30,fifty"}, "bad value"),
])
def test_bad_values_are_one_line_errors(prompt, preset, overrides, message):
    with pytest.raises(GsdiError, match=message) as info:
        make_config(prompt, preset, **overrides)
    assert "\n" not in str(info.value)


def test_auto_guidance_resolves_by_prior(tiny_sd):
    from gsdi.config import make_config

    embedded = make_config("a red castle")
    assert (embedded.guidance.method, embedded.guidance.t_schedule) == ("sds", "anneal")
    sd = make_config("a castle", prior=str(tiny_sd))
    assert sd.guidance.method == "sdi"
    explicit = make_config("a red castle", **{"guidance.method": "sdi"})
    assert explicit.guidance.method == "sdi" and explicit.guidance.t_schedule == "anneal"
    # the "auto" t schedule is resolved once, in the config, and config.json records what ran
    assert make_config("a red castle", **{"guidance.method": "sds"}).to_dict()["guidance"]["t_schedule"] == "random"


def test_a_stable_diffusion_prior_gets_the_papers_recipe(tiny_sd):
    """With no preset, a Stable Diffusion prior resolves to the documented recipe (README, Defaults per
    prior): the SDI paper's official 3D settings and a step count in the 3DGS peers' range."""
    from gsdi.presets import STABLE_DIFFUSION

    config = make_config("a castle", prior=str(tiny_sd))
    assert config.preset == "stable-diffusion"
    g = config.guidance
    assert (g.method, g.inversion_start, g.inversion_cfg_scale, g.inversion_eta, g.inversion_steps) == ("sdi", 0, -7.5, 0.3, 10)
    assert (g.t_schedule, g.p_max, g.p_min, g.cfg_scale, g.perp_neg) == ("anneal", 0.98, 0.25, 7.5, True)
    assert (g.cfg_form, g.prediction_timestep) == ("reference", "scheduled")  # the reference code's step
    assert (config.steps, config.render.max_resolution, config.scene.num_points) == (1200, 512, 4096)
    assert (config.densify.refine_start_iter, config.densify.max_gaussians, config.densify.opacity_l1) == (100, 100_000, 0.0)
    for key, value in STABLE_DIFFUSION.items():  # every documented value is the resolved one
        section, _, name = key.rpartition(".")
        assert getattr(getattr(config, section) if section else config, name) == value, key
    # The embedded prior keeps its own default; a named preset or option still wins.
    assert make_config("a castle").preset == "default"
    assert make_config("a castle", "preview", prior=str(tiny_sd)).guidance.inversion_start == 300
    assert make_config("a castle", prior=str(tiny_sd), steps=20, **{"guidance.method": "sds"}).guidance.method == "sds"


def test_the_latent_world_prior_runs_the_refined_preset():
    """`--preset auto` with --prior world is `refined`: 400 score-distillation steps at every Adam rate
    (the means' decaying one at every step) 1.25 times the default's, densification every 80 steps,
    then 600 refinement and 200 polish steps; the pixel prior's auto stays `default`, and a named preset
    wins. `short` is the default's run in 700 steps at 1/0.7 the rates."""
    import torch

    from gsdi.scene import init_params, make_optimizers, means_lr

    auto, default = make_config("a red castle", prior="world"), make_config("a red castle", prior="embedded")
    assert (auto.preset, auto.steps, auto.refine.steps, auto.refine.polish_steps, auto.total_steps) == ("refined", 400, 600, 200, 1200)
    assert (default.preset, default.steps, default.refine.steps) == ("default", 1000, 0)
    assert make_config("a red castle", "default", prior="world").total_steps == 1000
    assert (auto.densify.refine_start_iter, auto.densify.refine_every, auto.densify.reset_every) == (40, 80, 400)
    params = init_params(default.scene, torch.Generator().manual_seed(0))
    for preset, scale, steps in (("refined", 1.25, 400), ("short", 1 / 0.7, 700)):
        compressed = make_config("a red castle", preset, prior="world")
        assert compressed.steps == steps
        fast, slow = make_optimizers(params, compressed.optim), make_optimizers(params, default.optim)
        for name in fast:
            assert fast[name].param_groups[0]["lr"] == pytest.approx(slow[name].param_groups[0]["lr"] * scale, rel=1e-12), name
        for k in (0, steps // 2, steps - 1):
            at_default = means_lr(round(k * 1000 / steps), 1000, default.optim)
            assert means_lr(k, steps, compressed.optim) == pytest.approx(at_default * scale, rel=0.02), (preset, k)
    with pytest.raises(GsdiError, match="rate_scale"):
        make_config("a red castle", prior="world", **{"optim.rate_scale": 0})
